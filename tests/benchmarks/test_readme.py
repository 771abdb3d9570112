"""The suite rewrites only its own table in the README, between the markers."""

from benchmarks import readme
from tests.benchmarks.builders import results, run


def test_only_the_lines_between_the_markers_are_rewritten() -> None:
    found = results(run("A", 5, 5), run("B", 5, 5), run("S2", 9.0, 6.0))
    text = f"# Title\n\nby hand\n{readme.START}\nold table\n{readme.END}\nafter, by hand\n"
    updated = readme.updated(text, found)
    assert updated.startswith("# Title\n\nby hand\n")
    assert updated.endswith(f"{readme.END}\nafter, by hand\n")
    assert "old table" not in updated
    assert readme.table(found) in updated
    assert readme.updated(updated, found) == updated


def test_a_readme_without_the_markers_is_left_as_it_is() -> None:
    found = results(run("A", 5, 5), run("B", 5, 5), run("S2", 9.0, 6.0))
    assert readme.updated("# Title\n", found) == "# Title\n"
