"""The admin-group naming rule, and the one SQL statement that applies it.

Rule: ``"<first 50 characters of the name> Admin"``; when that name is taken,
``"<first 50> <k> Admin"`` with the smallest k >= 1 whose name is free. A group
that already exists is never taken over.

Both the app path (a new organization, one name) and the backfill (a batch of
thousands) call :func:`claim_admin_groups`, so the two can never disagree.

Finding "the smallest free k" naively is quadratic when 100,000 organizations
share a name: every new one probes past all the taken numbers. A per-base
counter (``AdminNameCounter``) remembers the number after the highest one
handed out, with the invariant that every number below it was taken when it was
written, so probing starts there and the cost per row stays flat. The counter is
only a hint: the unique index on ``auth_group.name`` decides every race, and a
name taken meanwhile is simply retried with the next number.
"""

from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import Group
from django.db import connections
from django.db.backends.utils import CursorWrapper
from psycopg import sql

BASE_LENGTH = 50
SUFFIX = "Admin"
COUNTER_TABLE = "organizations_adminnamecounter"

# Spare numbers probed per base beyond the rows wanted, round by round: the
# first round probes just enough for a table where few names are taken; later
# rounds widen geometrically, so a base with many taken numbers and no counter
# yet costs a handful of statements, not one per taken name. A round that lost
# names to concurrent transactions (it waited for them to commit first, so
# each round makes progress) is tried again at the same width.
ROUND_SLACK = (0, 8, 64, 512, 4096, 32768, 262144)
# Rounds at the most: widening takes seven, the rest are for lost races.
MAX_ROUNDS = 64
# How far lost races alone may widen a round (an index into ROUND_SLACK: 512).
RACE_WIDTH = 3

# Namespace of the advisory locks that serialize app-path creations per base.
ADVISORY_LOCK_CLASS = 0x0AD1


class NamingError(RuntimeError):
    """Free names could not be found within the probing budget."""


def name_base(name: str) -> str:
    return name[:BASE_LENGTH]


def admin_group_name(name: str, number: int = 0) -> str:
    """The group name the rule gives for `name` and the suffix `number`."""
    base = name_base(name)
    if number == 0:
        return f"{base} {SUFFIX}"
    return f"{base} {number} {SUFFIX}"


def number_in(group_name: str, name: str) -> int | None:
    """The k that the rule used to make `group_name` for `name`, if it did."""
    base = name_base(name)
    if group_name == f"{base} {SUFFIX}":
        return 0
    prefix, suffix = f"{base} ", f" {SUFFIX}"
    if not (group_name.startswith(prefix) and group_name.endswith(suffix)):
        return None
    middle = group_name[len(prefix) : len(group_name) - len(suffix)]
    if middle.isascii() and middle.isdigit() and not middle.startswith("0"):
        return int(middle)
    return None


def claimants(group_name: str) -> list[tuple[str, int]]:
    """Every (base, k) whose rule name is `group_name`: freeing it frees each of them.

    "Acme 1 Admin" is k=0 of the base "Acme 1" and k=1 of the base "Acme".
    Parsed from the group's own name, never from an organization's (which may
    have been renamed since).
    """
    if not group_name.endswith(f" {SUFFIX}"):
        return []
    prefix = group_name[: -len(SUFFIX) - 1]
    found = [(prefix, 0)] if len(prefix) <= BASE_LENGTH else []
    base, _, digits = prefix.rpartition(" ")
    if base and len(base) <= BASE_LENGTH and number_in(group_name, base) is not None:
        found.append((base, int(digits)))
    return found


def lock_bases(cursor: CursorWrapper, bases: Sequence[str]) -> None:
    """Serialize with app-path claims of these bases until commit, in a stable order."""
    for base in sorted(set(bases)):
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [ADVISORY_LOCK_CLASS, base]
        )


# One round of claims, set-based. Ranks and counts per base come from Python,
# so every row estimate the planner sees is exact (a misestimate here once made
# it JIT-compile each batch or hash all of auth_group). For each base it reads
# the counter and proposes, from there, one number per row wanted plus `slack`
# spare ones; probes the unique index of auth_group for each (OFFSET 0 keeps it
# an index lookup); pairs the n-th row of a base with its n-th free name; keeps
# one row per name (two bases can produce the same name: "Acme" k=1 and
# "Acme 1" k=0); inserts in name order (a stable lock order between concurrent
# batches); lets the unique index turn away names a concurrent transaction
# took; and moves the counter up. Rows that got nothing go to a wider round.
CLAIM_ROUND_SQL = """
WITH todo AS (
    SELECT t.key, t.base, t.rank
    FROM unnest({keys}::bigint[], {bases}::text[], {ranks}::int[]) AS t(key, base, rank)
),
need AS (
    SELECT n.base, n.wanted
    FROM unnest({need_bases}::text[], {need_counts}::int[]) AS n(base, wanted)
),
candidate AS (
    SELECT todo.base,
           COALESCE((SELECT c.next_number FROM {counter} c WHERE c.base = todo.base), 0)
           + todo.rank - 1 AS number
    FROM todo
    UNION ALL
    SELECT need.base,
           COALESCE((SELECT c.next_number FROM {counter} c WHERE c.base = need.base), 0)
           + need.wanted + s.spare
    FROM need CROSS JOIN generate_series(0, {slack} - 1) AS s(spare)
),
named AS (
    SELECT c.base, c.number,
           CASE WHEN c.number = 0 THEN c.base || ' ' || {suffix}
                ELSE c.base || ' ' || c.number || ' ' || {suffix} END AS name
    FROM candidate c
),
free AS (
    SELECT named.base, named.number, named.name,
           row_number() OVER (PARTITION BY named.base ORDER BY named.number) AS rank
    FROM named
    WHERE NOT EXISTS (SELECT 1 FROM {groups} g WHERE g.name = named.name OFFSET 0)
),
proposed AS (
    SELECT DISTINCT ON (free.name) todo.key, free.base, free.number, free.name
    FROM todo JOIN free ON free.base = todo.base AND free.rank = todo.rank
    ORDER BY free.name, todo.key
),
inserted AS (
    INSERT INTO {groups} (name)
    SELECT name FROM proposed ORDER BY name
    ON CONFLICT (name) DO NOTHING
    RETURNING id, name
),
claimed AS (
    SELECT p.key, p.base, p.number, i.id AS group_id
    FROM proposed p JOIN inserted i ON i.name = p.name
),
advanced AS (
    INSERT INTO {counter} (base, next_number)
    SELECT base, max(number) + 1 FROM claimed
    GROUP BY base HAVING max(number) >= 1
    ORDER BY base
    ON CONFLICT (base) DO UPDATE
        SET next_number = GREATEST({counter}.next_number, EXCLUDED.next_number)
)
SELECT p.key, c.group_id
FROM proposed p LEFT JOIN claimed c ON c.key = p.key
"""


def claim_round_sql() -> str:
    """The round statement with its table names quoted; values stay parameters."""
    placeholders = ("need_bases", "need_counts", "keys", "bases", "ranks", "slack", "suffix")
    return (
        sql.SQL(CLAIM_ROUND_SQL)
        .format(
            groups=sql.Identifier(Group._meta.db_table),
            counter=sql.Identifier(COUNTER_TABLE),
            **{name: sql.Placeholder(name) for name in placeholders},
        )
        .as_string()
    )


def claim_round_params(remaining: dict[int, str], slack: int) -> dict[str, Any]:
    """Ranks within each base (in key order) and counts per base, computed here."""
    counts: Counter[str] = Counter()
    ranks = []
    for base in remaining.values():
        counts[base] += 1
        ranks.append(counts[base])
    return {
        "need_bases": list(counts),
        "need_counts": list(counts.values()),
        "keys": list(remaining),
        "bases": list(remaining.values()),
        "ranks": ranks,
        "slack": slack,
        "suffix": SUFFIX,
    }


def claim_admin_groups(
    cursor: CursorWrapper, keys: Sequence[int], names: Sequence[str]
) -> dict[int, int]:
    """Create one admin group per key, named by the rule; return key -> group id.

    Runs inside the caller's transaction: the groups commit or roll back with
    whatever the caller links them to. Keys must be distinct and given in the
    order that should get the lower numbers (ascending primary keys).
    """
    remaining = dict(zip(keys, (name_base(n) for n in names), strict=True))
    claimed: dict[int, int] = {}
    statement = claim_round_sql()
    widening = 0
    for _ in range(MAX_ROUNDS):
        if not remaining:
            return claimed
        wanted = len(remaining)
        cursor.execute(statement, claim_round_params(remaining, ROUND_SLACK[widening]))
        rows = cursor.fetchall()
        for key, group_id in rows:
            if group_id is not None:
                claimed[key] = group_id
                del remaining[key]
        # Rows that got no proposal found too few free names in the window:
        # widen it, as far as needed. Rows that only lost a race widen too, to
        # step past the winner's numbers, but never beyond RACE_WIDTH: a busy
        # base must not turn into rounds of hundreds of thousands of probes.
        if len(rows) < wanted:
            widening = min(widening + 1, len(ROUND_SLACK) - 1)
        elif remaining:
            widening = max(widening, min(widening + 1, RACE_WIDTH))
    raise NamingError(f"no free admin group name found for {len(remaining)} rows")


def claim_admin_group(name: str, using: str = "default") -> int:
    """Create the admin group for one new organization; return its id.

    Must run inside a transaction. Creations with the same base wait for each
    other on an advisory lock held until commit, so a burst of "Acme" signups
    gets 0, 1, 2... in one round each instead of all chasing the same number.
    """
    with connections[using].cursor() as cursor:
        lock_bases(cursor, [name_base(name)])
        return claim_admin_groups(cursor, [0], [name])[0]
