"""The admin-group naming rule, and the one SQL statement that applies it.

Rule: ``"<first 50 characters of the name> Admin"``; when that name is taken,
``"<first 50> <k> Admin"`` with the smallest k >= 1 whose name is free. A group
that already exists is never taken over.

Both the app path (a new organization, one name) and the backfill (a batch of
thousands) call :func:`claim_admin_groups`, so the two can never disagree.

Finding "the smallest free k" must not cost more as a base grows. Two tables
make it a lookup: a per-base counter (``AdminNameCounter``, never lowered) and
the numbers given back below it (``FreedAdminName``), kept exact by triggers on
``auth_group`` in whichever transaction frees or takes a name. Every number
below the counter is taken or listed, so the smallest free number is the
smallest listed one, or else the first free one from the counter up (where
groups made by hand or other bases' names may sit). The unique index on
``auth_group.name`` still decides every race; a name lost to a concurrent
transaction is simply retried.
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
FREED_TABLE = "organizations_freedadminname"
# Longest number the triggers list as freed: beyond it no counter ever goes.
MAX_DIGITS = 9

# Spare numbers probed per base beyond the rows wanted, round by round. The
# first round probes exactly the rows' numbers: the listed freed ones, then the
# counter's. Only names taken above the counter (groups made by hand, other
# bases' names such as "Acme 1"'s own "Acme 1 Admin") need more; each round
# starts where the last one found everything taken and widens geometrically,
# so even a run of millions of taken names costs a handful of statements.
ROUND_SLACK = (0, 8, 64, 512, 4096, 32768, 262144)
# Rounds at the most: with the widest round, over 16 million taken names.
MAX_ROUNDS = 64

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
    base, space, digits = prefix.rpartition(" ")
    numbered = bool(space) and len(base) <= BASE_LENGTH and len(digits) <= MAX_DIGITS
    if numbered and number_in(group_name, base):
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
# it JIT-compile each batch or hash all of auth_group). For each base it takes
# the smallest freed numbers and the window of numbers from the counter up (one
# per row wanted plus `slack` spare ones); probes the unique index of
# auth_group for each (OFFSET 0 keeps it an index lookup); pairs the n-th row of
# a base with its n-th free number, smallest first; keeps one row per name (two
# bases can produce the same name: "Acme" k=1 and "Acme 1" k=0, the lower key
# wins); holds back a name that another base of the batch may want but found
# too few free numbers for ("Acme 1 Admin" while "Acme" looks further in the
# next round; the few short bases are materialized and joined: as a
# correlated EXISTS the planner rescanned every free name for each row once
# a batch neared a million rows), so rows take names in key order across
# bases; inserts in name order (a stable lock order between concurrent
# batches); lets the unique
# index turn away names a concurrent transaction took. The counter moves up to
# the first number of the window left free (unpaired or held back), or past
# the window when it had none: everything below was taken, by others or by
# this round, so the next round starts beyond it. The triggers on auth_group strike
# the names taken here off the freed list. Rows that got nothing go to a wider
# round.
CLAIM_ROUND_SQL = """
WITH todo AS (
    SELECT t.key, t.base, t.rank
    FROM unnest({keys}::bigint[], {bases}::text[], {ranks}::int[]) AS t(key, base, rank)
),
need AS (
    SELECT n.base, n.wanted,
           COALESCE((SELECT c.next_number FROM {counter} c WHERE c.base = n.base), 0) AS start
    FROM unnest({need_bases}::text[], {need_counts}::int[]) AS n(base, wanted)
),
candidate AS (
    SELECT todo.base,
           COALESCE((SELECT c.next_number FROM {counter} c WHERE c.base = todo.base), 0)
           + todo.rank - 1 AS number
    FROM todo
    UNION ALL
    SELECT need.base, need.start + need.wanted + s.spare
    FROM need CROSS JOIN generate_series(0, {slack} - 1) AS s(spare)
    UNION ALL
    SELECT need.base, f.number
    FROM need CROSS JOIN LATERAL (
        SELECT f.number FROM {freed} f
        WHERE f.base = need.base AND f.number < need.start
        ORDER BY f.number LIMIT need.wanted + {slack}
    ) AS f
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
short AS MATERIALIZED (
    SELECT need.base
    FROM need LEFT JOIN (SELECT base, count(*) AS found FROM free GROUP BY base) AS f
        ON f.base = need.base
    WHERE COALESCE(f.found, 0) < need.wanted
),
paired AS (
    SELECT todo.key, free.base, free.number, free.name, short.base IS NOT NULL AS deferred
    FROM todo JOIN free ON free.base = todo.base AND free.rank = todo.rank
    LEFT JOIN short
        ON short.base = CASE WHEN free.number > 0 THEN free.base || ' ' || free.number
            ELSE substring(free.base FROM '^(.*) [1-9][0-9]{{0,8}}$') END
),
proposed AS (
    SELECT DISTINCT ON (paired.name) paired.key, paired.base, paired.number, paired.name
    FROM paired
    WHERE NOT paired.deferred
    ORDER BY paired.name, paired.key
),
inserted AS (
    INSERT INTO {groups} (name)
    SELECT name FROM proposed ORDER BY name
    ON CONFLICT (name) DO NOTHING
    RETURNING id, name
),
claimed AS MATERIALIZED (
    SELECT p.key, p.base, p.number, i.id AS group_id
    FROM proposed p JOIN inserted i ON i.name = p.name
),
moved AS MATERIALIZED (
    SELECT need.base, need.start,
           COALESCE(u.first_left, need.start + need.wanted + {slack}) AS next_number
    FROM need LEFT JOIN (
        SELECT free.base, min(free.number) AS first_left
        FROM free
        JOIN need n ON n.base = free.base
        LEFT JOIN paired p ON p.base = free.base AND p.number = free.number
        WHERE free.number >= n.start AND (free.rank > n.wanted OR p.deferred)
        GROUP BY free.base
    ) AS u ON u.base = need.base
),
advanced AS (
    INSERT INTO {counter} (base, next_number)
    SELECT base, next_number FROM moved
    WHERE next_number > start AND next_number > 1
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
            freed=sql.Identifier(FREED_TABLE),
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
        # the next round starts past it (the counter moved) and looks wider.
        # Rows that only lost a race try again as wide, past the winner's names.
        if len(rows) < wanted:
            widening = min(widening + 1, len(ROUND_SLACK) - 1)
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
