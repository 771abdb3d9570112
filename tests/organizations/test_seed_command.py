import pytest
from django.core.management import call_command
from django.db.models import Count

from organizations.models import Organization
from tests.processes import manage

pytestmark = pytest.mark.django_db


def test_seed_inserts_legacy_rows_without_admin_groups_and_repeats_names():
    call_command("seed_organizations", "--count", "5000", "--duplicate-share", "0.3", verbosity=0)
    assert Organization.objects.count() == 5000
    assert not Organization.objects.filter(admin__isnull=False).exists()
    repeated = Organization.objects.values("name").annotate(n=Count("id")).filter(n__gt=1).count()
    assert repeated > 10


def test_the_same_seed_gives_the_same_names():
    call_command("seed_organizations", "--count", "300", "--seed", "7", verbosity=0)
    first = list(Organization.objects.values_list("name", flat=True))
    Organization.objects.all().delete()
    call_command("seed_organizations", "--count", "300", "--seed", "7", verbosity=0)
    assert list(Organization.objects.values_list("name", flat=True)) == first


@pytest.mark.parametrize(
    "args",
    [
        ["--count", "0"],
        ["--count", "-5"],
        ["--count", "abc"],
        ["--count", "10", "--duplicate-share", "1.5"],
        ["--count", "10", "--duplicate-share", "nan!"],
        ["--count", "10", "--existing-groups", "-1"],
        [],
    ],
)
def test_bad_values_exit_2_with_a_one_line_error(args):
    result = manage("seed_organizations", *args)
    assert result.returncode == 2
    assert "error:" in result.stderr.splitlines()[-1]
