"""What a DDL statement locks, read from its text.

The gap waiter (gaps.py) must know, before a statement runs, which table it
will lock and in which mode, to look for sessions holding a conflicting lock
without queueing behind them. Django's schema editor and
django-pg-migration-tools write a small set of statement shapes; these
patterns cover them, and anything else runs as it is.
"""

import re
from dataclasses import dataclass

# The held modes each requested mode must wait for (PostgreSQL's conflict table).
ALL_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
CONFLICTS = {
    "AccessExclusiveLock": ALL_MODES,
    "ShareRowExclusiveLock": ALL_MODES[2:],
    "ShareLock": (ALL_MODES[2], ALL_MODES[3], *ALL_MODES[5:]),
}


@dataclass(frozen=True)
class Target:
    """What a statement must lock: a table (as written) or the table of an index."""

    mode: str
    table: str | None = None
    index: str | None = None


NAME = r'(?P<{}>"(?:[^"]|"")+"|[\w.$]+)'
PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"ALTER TABLE (?:IF EXISTS )?(?:ONLY )?" + NAME.format("table"), re.I), ""),
    (
        re.compile(
            r"CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?\S+ ON (?:ONLY )?" + NAME.format("table"),
            re.I,
        ),
        "ShareLock",
    ),
    (
        re.compile(
            r"CREATE (?:OR REPLACE )?(?:CONSTRAINT )?TRIGGER .+? ON " + NAME.format("table"), re.I
        ),
        "ShareRowExclusiveLock",
    ),
    (
        re.compile(r"DROP TRIGGER (?:IF EXISTS )?\S+ ON " + NAME.format("table"), re.I),
        "AccessExclusiveLock",
    ),
    (re.compile(r"DROP INDEX (?:IF EXISTS )?" + NAME.format("index"), re.I), "AccessExclusiveLock"),
    (
        re.compile(r"ALTER INDEX \S+ ATTACH PARTITION " + NAME.format("index"), re.I),
        "AccessExclusiveLock",
    ),
]
# Statements whose waits block no reader or writer: a concurrent index build
# waits for older transactions, a validation scans under SHARE UPDATE
# EXCLUSIVE. They may wait the whole budget (a lock timeout would leave an
# INVALID index behind, for the next run to drop and build again).
WAITS_HARMLESSLY = re.compile(r"CONCURRENTLY|VALIDATE CONSTRAINT", re.I)


def target_of(statement: str) -> Target | None:
    """The table a DDL statement locks against the app's reads or writes; None if none."""
    text = " ".join(statement.split())
    if WAITS_HARMLESSLY.search(text):
        return None
    for pattern, mode in PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        names = match.groupdict()
        if not mode:  # ALTER TABLE: a foreign key takes less than the rest
            mode = (
                "ShareRowExclusiveLock" if "FOREIGN KEY" in text.upper() else "AccessExclusiveLock"
            )
        return Target(mode, table=names.get("table"), index=names.get("index"))
    return None
