"""The write log is kept while its job may be reverted, and dropped once it never can be."""

import pytest
from django.core.management import call_command

from backfill.engine import service
from backfill.engine.lifecycle import Action, actions_for, refusal
from backfill.engine.options import JobOptions
from backfill.models import Event, JobStatus, Write
from organizations.models import Organization
from tests.data import seed
from tests.processes import manage

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_newer_job_succeeding_drops_the_older_log_and_keeps_its_own(local_queue, drain):
    seed(300)
    first = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=100)))
    assert Write.objects.filter(job=first).exists()
    Organization.objects.bulk_create(Organization(name=f"Old server {i}") for i in range(20))
    second = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=100)))
    assert second.status == JobStatus.SUCCEEDED
    assert not Write.objects.filter(job=first).exists()
    assert Event.objects.filter(job=first, action="prune").exists()
    assert Write.objects.filter(job=second).exists()  # the latest may still be reverted
    assert service.reconcile().pruned == 0


@pytest.mark.usefixtures("back_to_expanded_state")
def test_after_the_contract_prune_drops_the_log_and_revert_stays_refused(local_queue, drain):
    seed(300)
    job = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=100)))
    call_command("migrate", "organizations", "0006", verbosity=0)  # the contract
    result = manage("backfill", "prune", "admin_groups")
    assert result.returncode == 0, result.stderr
    assert f"job #{job.pk}" in result.stdout
    assert "NOT NULL" in result.stdout
    assert not Write.objects.filter(job=job).exists()
    call_command("migrate", "organizations", "0005", verbosity=0)  # the contract reversed
    assert Action.REVERT not in actions_for(job)
    assert "write log was dropped" in (refusal(job, Action.REVERT) or "")


@pytest.mark.usefixtures("back_to_expanded_state")
def test_the_sweeper_drops_the_log_once_the_contract_applied(local_queue, drain):
    seed(300)
    job = drain(service.start("admin_groups", "test", JobOptions.build(batch_size=100)))
    assert service.reconcile().pruned == 0  # still revertible: kept
    assert Write.objects.filter(job=job).exists()
    call_command("migrate", "organizations", "0006", verbosity=0)
    assert service.reconcile().pruned == 1
    assert not Write.objects.filter(job=job).exists()
