"""Each pytest-xdist worker gets a broker database of its own, or the run stops: two
workers sharing one would purge and sweep each other's messages."""

import os
import re
import subprocess
import sys

from tests.processes import ROOT


def settings_of(worker: str, dbs: str) -> subprocess.CompletedProcess[str]:
    """tests/settings.py loaded as xdist worker `worker` with TEST_REDIS_DBS=`dbs`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_REDIS")}
    env.update(PYTEST_XDIST_WORKER=worker, TEST_REDIS_DBS=dbs, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", "from tests import settings; print(settings.REDIS_URL)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_worker_takes_the_database_at_its_index():
    result = settings_of("gw1", "15,14")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/14")


def test_a_worker_beyond_the_list_is_refused_rather_than_sharing_a_database():
    result = settings_of("gw2", "15,14")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "worker gw2 has no Redis database of its own" in last, result.stderr
    assert "TEST_REDIS_DBS=15,14" in last


def make_variable(name: str) -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    found = re.search(rf"^{name} \?= (.+)$", makefile, re.MULTILINE)
    assert found, name
    return set(found.group(1).split(","))


def test_the_suite_and_the_pg18_run_of_make_test_use_disjoint_databases():
    suite = make_variable("SUITE_REDIS_DBS")
    pg18 = make_variable("PG18_REDIS_DBS")
    assert len(suite) == 6
    assert not suite & pg18
