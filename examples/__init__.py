"""Small tables of other shapes, backfilled by the same engine: UUID keys, a
sequence with a gap, a range-partitioned table, and a composite key (refused).
Installed by `examples.settings` (the tests and the benchmarks use it), not by
the project."""
