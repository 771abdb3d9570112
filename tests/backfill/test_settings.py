"""A wrong BACKFILL_* setting is refused at startup with its name, not inside a batch."""

import dataclasses
import subprocess
import sys

import pytest
from django.core.checks import Error, Warning

from backfill import conf
from tests.processes import ROOT, worker_environment
from workers.checks import refuse_wrong_settings


def test_the_defaults_pass_and_are_typed():
    assert conf.check_settings() == []
    assert isinstance(conf.current().lease_seconds, int)
    for spec in dataclasses.fields(conf.Settings):
        if spec.type in (int, float, bool):
            assert type(getattr(conf.current(), spec.name)) is spec.type, spec.name


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("BACKFILL_LEASE_SECONDS", "45", "BACKFILL_LEASE_SECONDS must be an integer, got '45'"),
        ("BACKFILL_LEASE_SECONDS", True, "BACKFILL_LEASE_SECONDS must be an integer, got True"),
        ("BACKFILL_PACE", 1, "BACKFILL_PACE must be True or False, got 1"),
        ("BACKFILL_TASK_SECONDS", "15", "BACKFILL_TASK_SECONDS must be a number"),
        ("BACKFILL_MAX_ATTEMPTS", -1, "BACKFILL_MAX_ATTEMPTS must not be negative"),
        ("BACKFILL_MIN_BATCH_SIZE", 200_000, "at most BACKFILL_MAX_BATCH_SIZE"),
        ("BACKFILL_LOCK_TIMEOUT_MS", 0, "BACKFILL_LOCK_TIMEOUT_MS must be at least 1"),
        ("BACKFILL_STATEMENT_TIMEOUT_MS", 0, "BACKFILL_STATEMENT_TIMEOUT_MS must be at least 1"),
        ("BACKFILL_DDL_LOCK_TIMEOUT_MS", 0, "BACKFILL_DDL_LOCK_TIMEOUT_MS must be at least 1"),
    ],
)
def test_a_wrong_setting_is_an_error_naming_it(settings, name, value, says):
    setattr(settings, name, value)
    found = conf.check_settings()
    assert [type(message) for message in found] == [Error]
    assert says in found[0].msg


def test_a_misspelt_setting_is_a_warning(settings):
    settings.BACKFILL_LEASE_SECONDSS = 45
    found = conf.check_settings()
    assert [(type(message), message.id) for message in found] == [(Warning, "backfill.W002")]
    assert "BACKFILL_LEASE_SECONDSS" in found[0].msg


def test_a_worker_refuses_to_start_with_a_wrong_setting(settings):
    settings.BACKFILL_LOCK_TIMEOUT_MS = 0
    with pytest.raises(SystemExit, match="BACKFILL_LOCK_TIMEOUT_MS must be at least 1"):
        refuse_wrong_settings()


def test_a_real_worker_exits_at_start_with_a_wrong_setting():
    env = {**worker_environment(), "DJANGO_SETTINGS_MODULE": "tests.settings_no_lock_timeout"}
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "project", "worker", "-c", "1", "-l", "INFO"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode != 0
    assert "BACKFILL_LOCK_TIMEOUT_MS must be at least 1" in worker.stdout + worker.stderr
