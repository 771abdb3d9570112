"""The naming rule as pure functions: no database."""

import pytest

from organizations.naming import admin_group_name, name_base, number_in


def test_first_name_is_the_name_followed_by_admin():
    assert admin_group_name("Acme") == "Acme Admin"


def test_numbered_names_put_the_number_before_admin():
    assert admin_group_name("Acme", 1) == "Acme 1 Admin"
    assert admin_group_name("Acme", 12) == "Acme 12 Admin"


def test_names_longer_than_50_characters_are_cut_before_the_suffix():
    name = "x" * 49 + "yz" + "tail"
    assert admin_group_name(name) == "x" * 49 + "y Admin"
    assert admin_group_name(name, 3) == "x" * 49 + "y 3 Admin"


def test_the_cut_counts_characters_not_bytes_in_non_latin_scripts():
    name = "株" * 60
    assert name_base(name) == "株" * 50
    assert admin_group_name(name) == "株" * 50 + " Admin"
    emoji = "🚀" * 51
    assert admin_group_name(emoji) == "🚀" * 50 + " Admin"


def test_a_name_that_already_ends_in_a_number_keeps_it():
    assert admin_group_name("Acme 1") == "Acme 1 Admin"
    assert admin_group_name("Acme 1", 1) == "Acme 1 1 Admin"


def test_the_longest_group_name_fits_auth_group():
    assert len(admin_group_name("n" * 255, 10**9)) <= 150


@pytest.mark.parametrize(
    ("group_name", "name", "number"),
    [
        ("Acme Admin", "Acme", 0),
        ("Acme 7 Admin", "Acme", 7),
        ("Acme 1 Admin", "Acme 1", 0),
        ("Acme 07 Admin", "Acme", None),
        ("Other Admin", "Acme", None),
        ("Acme x Admin", "Acme", None),
        ("Acme ٣ Admin", "Acme", None),
    ],
)
def test_number_in_recovers_the_number_the_rule_used(group_name, name, number):
    assert number_in(group_name, name) == number
