"""A table shaped like a hostile real one, for the naming step's worst day.

    .venv/bin/python -m benchmarks.hostile --rows 1000000     # seeds backfill_bench_<rows>_hostile

Of the organizations, in random id order:

- 20% are all called "Acme", the hot name;
- 2% are "Acme 1" ... "Acme 40": their own first names ("Acme 7 Admin") are
  numbered names of "Acme", so the two bases compete for the same groups;
- 5% have names over 50 characters that collide after truncation: Latin,
  Cyrillic, emoji, a ZWJ family emoji cut inside at character 50, bases
  ending in " 1" (themselves k = 1 of a shorter base) or in a space;
- 5% are unique names in non-Latin scripts;
- 3% carry quotes, backslashes, percent signs, SQL and HTML, in small clusters;
- 10% are small clusters (about four organizations a name);
- the rest are unique.

About 3.3% as many groups as rows exist already: "Acme Admin", "Acme 1 Admin",
"Acme 3 Admin", "Acme 7 Admin", "Acme 500 Admin", and the k = 0, 1, 2 names of
about 1.7% of the other names (so a batch meets occupied numbers everywhere).
The organizations app is left expanded, with its naming triggers (0008), as a
live database would be during the backfill.
"""

import argparse

import psycopg

from backfill.management.arguments import positive_int
from benchmarks.databases import manage, recreate, url, vacuum_analyze
from benchmarks.templates import PREFIX, Template
from benchmarks.verify import digest

HOSTILE = "hostile"
# organizations.naming.BASE_LENGTH, not imported: this process runs without Django.
BASE_LENGTH = 50
HOT_NAME = "Acme"
ACME_NUMBERS = 40
OCCUPIED_ACME = (0, 1, 3, 7, 500)
# Share of the other distinct bases whose k = 0, 1, 2 names are taken.
OCCUPIED_SHARE = 0.017

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


def long_bases() -> list[str]:
    """Prefixes of at least 50 characters: everything after them is cut off."""
    latin = "Consolidated Northern Shipping and Logistics Holdi"
    cyrillic = "Объединённая северная судоходная логистическая ком"
    emoji = "\U0001f3e2\U0001f680 Rocket Ventures \U0001f31f Global Partners Limited \U0001f30d\U0001f308\U0001f3e6!!"
    family = "Family Office of the Brothers Karamazov Holding " + FAMILY  # cut after its 1st ZWJ
    ends_one = "Universal Exports Incorporated of Greater London 1"  # k = 1 of a 48-char base
    ends_space = "International Business Machines Corporation of Mo "
    prefixes = (latin, cyrillic, emoji, family, ends_one, ends_space)
    assert all(len(text) >= BASE_LENGTH for text in prefixes)
    return [text + " branch" for text in prefixes]


NASTY = [
    'O\'Brien & Sons "Quoted"',
    "Back\\slash \\\\ Trading",
    "100% Organic %s %(name)s {}",
    "Robert'); DROP TABLE auth_group;--",
    "<script>alert('x')</script> Ltd",
    "Tab\tand\nnewline Co",
]

SEED_SQL = """
INSERT INTO organizations_organization (name, created_at, updated_at)
SELECT name, now(), now() FROM (
    SELECT CASE
        WHEN s.u < 0.20 THEN %(hot)s
        WHEN s.u < 0.22 THEN %(hot)s || ' ' || (1 + s.i %% %(acme_numbers)s)
        WHEN s.u < 0.27 THEN (%(long)s::text[])[1 + s.i %% cardinality(%(long)s::text[])]
                             || ' #' || s.i
        WHEN s.u < 0.32 THEN (ARRAY['Организация ', '株式会社 ', 'شركة ', 'कंपनी ', 'Εταιρεία '])
                             [1 + s.i %% 5] || s.i
        WHEN s.u < 0.35 THEN (%(nasty)s::text[])[1 + s.i %% cardinality(%(nasty)s::text[])]
                             || ' ' || (s.i %% 97)
        WHEN s.u < 0.45 THEN 'Team ' || (s.i %% greatest(1, %(rows)s / 40))
        ELSE 'Organization ' || s.i || ' ' || substr(md5(s.i::text), 1, 6)
    END AS name
    FROM (SELECT g AS i, random() AS u FROM generate_series(1, %(rows)s) g) s
    ORDER BY random()
) named
"""

EXISTING_SQL = """
INSERT INTO auth_group (name)
SELECT DISTINCT name FROM (
    SELECT %(hot)s || CASE WHEN k = 0 THEN '' ELSE ' ' || k END || ' Admin' AS name
    FROM unnest(%(acme)s::int[]) AS k
    UNION ALL
    SELECT b.base || CASE WHEN k = 0 THEN '' ELSE ' ' || k END || ' Admin'
    FROM (
        SELECT base FROM (
            SELECT DISTINCT left(name, 50) AS base FROM organizations_organization
            WHERE name <> %(hot)s
        ) d
        WHERE random() < %(share)s
    ) b CROSS JOIN generate_series(0, 2) AS k
) taken
ON CONFLICT (name) DO NOTHING
"""


def seed(rows: int) -> Template:
    db = recreate(f"{PREFIX}_{rows}_{HOSTILE}")
    manage(db, "migrate", "-v0")
    manage(db, "migrate", "organizations", "0005", "-v0")
    with psycopg.connect(url(db)) as conn:
        conn.execute("SELECT setseed(0.42)")
        parameters = {
            "hot": HOT_NAME,
            "acme_numbers": ACME_NUMBERS,
            "long": long_bases(),
            "nasty": NASTY,
            "rows": rows,
        }
        conn.execute(SEED_SQL, parameters)
        conn.execute(
            EXISTING_SQL,
            {"hot": HOT_NAME, "acme": list(OCCUPIED_ACME), "share": OCCUPIED_SHARE},
        )
    # The naming triggers and the freed-names table, as the live app has them.
    manage(db, "migrate", "organizations", "0008", "-v0")
    vacuum_analyze(db)
    with psycopg.connect(url(db)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM auth_group")
        floor = int(cursor.fetchone()[0])  # type: ignore[index]
        return Template(db, rows, floor, digest(cursor, floor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, default=1_000_000)
    options = parser.parse_args()
    template = seed(options.rows)
    print(f"{template.db}: {options.rows:,} organizations, {template.group_floor:,} groups")


if __name__ == "__main__":
    main()
