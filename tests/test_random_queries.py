"""Random queries against the live server, with two oracles (DESIGN.md "Operations", fuzzing):

- **Disclosure**: grouped counts and means (COUNT(*), COUNT(DISTINCT person), AVG of a number)
  with random filters and groupings, through the real ADBC client. DuckDB on the same Parquet
  files gives each group's true participant count, and the participants behind a mean's nonzero
  terms (a cell of its own: planner/src/disclosure/branches.rs). A row-level principal
  (controlled, egress rows) gets no statistical cell of a group with 1..20 participants, no mean
  of 1..20 nonzero terms, and every other cell exact (bar the complementary and dominance cells
  the report counts); an aggregates-only principal (egress aggregates) gets no cell of such a
  group (nor such a mean), and counts rounded up to a multiple of the base its report names (20). HAVING and LIMIT probes, MIN/MAX
  and cross-query differencing are the adversarial suites' (test_redteam.py, test_disclosure.py).
- **Ternary logic partitioning** (SQLancer's TLP): for a random predicate p, the per-person
  counts of the rows where p, NOT p and p IS NULL hold add up to the unfiltered per-person count,
  which equals DuckDB's.

The generator is seeded: a failure names its seed and query and replays the same way.
`STRATA_RANDOM_QUERIES` sets how many queries each test draws (default: the suite's share).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import pytest

from helpers import Caller, duck_query, status_text

T = 20
SEED = 20261207
QUERIES = int(os.environ.get("STRATA_RANDOM_QUERIES", "40"))


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "concept", "int", "number", "date", "text"
    group: str | None = None  # an expression to group by, when the column makes a good group


TABLES: dict[str, list[Column]] = {
    "person": [
        Column("gender_concept_id", "concept", "gender_concept_id"),
        Column("race_concept_id", "concept", "race_concept_id"),
        Column("ethnicity_concept_id", "concept", "ethnicity_concept_id"),
        Column("year_of_birth", "int", "year_of_birth - year_of_birth % 10"),
    ],
    "condition_occurrence": [
        Column("condition_concept_id", "concept", "condition_concept_id"),
        Column("condition_start_date", "date", "EXTRACT(YEAR FROM condition_start_date)"),
        Column("condition_end_date", "date"),
        Column("condition_type_concept_id", "concept", "condition_type_concept_id"),
    ],
    "drug_exposure": [
        Column("drug_concept_id", "concept", "drug_concept_id"),
        Column("drug_exposure_start_date", "date", "EXTRACT(YEAR FROM drug_exposure_start_date)"),
        Column("quantity", "number"),
        Column("days_supply", "int"),
        Column("refills", "int"),
    ],
    "measurement": [
        Column("measurement_concept_id", "concept", "measurement_concept_id"),
        Column("measurement_date", "date", "EXTRACT(YEAR FROM measurement_date)"),
        Column("value_as_number", "number"),
        Column("unit_concept_id", "concept", "unit_concept_id"),
    ],
    "visit_occurrence": [
        Column("visit_concept_id", "concept", "visit_concept_id"),
        Column("visit_start_date", "date", "EXTRACT(YEAR FROM visit_start_date)"),
        Column("visit_end_date", "date"),
    ],
}
PERSON_GROUPS = [c.group for c in TABLES["person"] if c.group]


class Generator:
    """Random predicates and groupings, with literals drawn from the data itself (so filters
    select something and small groups occur)."""

    def __init__(self, duck, seed: int):
        self.duck = duck
        self.rng = random.Random(seed)
        self._values: dict[tuple[str, str], list] = {}

    def values(self, table: str, column: Column) -> list:
        key = (table, column.name)
        if key not in self._values:
            rows = duck_query(
                self.duck,
                f"SELECT DISTINCT {column.name} AS v FROM {table} WHERE {column.name} IS NOT NULL "
                f"ORDER BY 1 LIMIT 500",
            ).to_pylist()
            self._values[key] = [r["v"] for r in rows]
        return self._values[key]

    def literal(self, table: str, column: Column) -> str:
        values = self.values(table, column)
        if not values:
            return "NULL"
        v = self.rng.choice(values)
        if column.kind == "date":
            return f"DATE '{v.isoformat()}'"
        if column.kind == "number":
            return f"{float(v):.3f}"
        if column.kind == "text":
            return "'" + str(v).replace("'", "''") + "'"
        return str(v)

    def comparison(self, table: str) -> str:
        column = self.rng.choice(TABLES[table])
        c = column.name
        shape = self.rng.randrange(6)
        if shape == 0:
            return f"{c} IS NULL"
        if shape == 1:
            a, b = sorted([self.literal(table, column), self.literal(table, column)])
            return f"{c} BETWEEN {a} AND {b}"
        if shape == 2:
            return f"{c} IN ({self.literal(table, column)}, {self.literal(table, column)})"
        op = self.rng.choice(["=", "<>", "<", "<=", ">", ">="])
        return f"{c} {op} {self.literal(table, column)}"

    def predicate(self, table: str, depth: int = 0) -> str:
        roll = self.rng.random()
        if depth < 2 and roll < 0.3:
            op = self.rng.choice(["AND", "OR"])
            return f"({self.predicate(table, depth + 1)} {op} {self.predicate(table, depth + 1)})"
        if depth < 2 and roll < 0.4:
            return f"NOT ({self.predicate(table, depth + 1)})"
        return self.comparison(table)

    def grouped(self) -> tuple[str, str, list[str], str]:
        """A grouped count over a table: (statement, participants statement, key columns,
        from-and-where clause)."""
        table = self.rng.choice(list(TABLES))
        own = [c.group for c in TABLES[table] if c.group]
        joined = table != "person" and self.rng.random() < 0.4
        pool = own + (PERSON_GROUPS if joined else [])
        keys = self.rng.sample(pool, k=self.rng.choice([1, 1, 2]))
        source = f"{table} t JOIN person p ON p.person_id = t.person_id" if joined else f"{table} t"
        where = f" WHERE {self.predicate(table)}" if self.rng.random() < 0.7 else ""
        # Group expressions and predicates name columns of one side only: unambiguous.
        select_keys = ", ".join(f"{k} AS k{i}" for i, k in enumerate(keys))
        group_by = ", ".join(str(i + 1) for i in range(len(keys)))
        person = "t.person_id"
        # A magnitude cell (dominance applies to it) when the table has a number to average.
        # Its nonzero terms are a cell of their own (a mean of mostly zeros depends only on the
        # few participants with a value: planner/src/disclosure/branches.rs).
        numbers = [c.name for c in TABLES[table] if c.kind in ("int", "number")]
        x = f"t.{self.rng.choice(numbers)}" if numbers else None
        mean = f"AVG(CAST({x} AS DOUBLE))" if x else "NULL"
        nonzero = f"COUNT(DISTINCT CASE WHEN {x} <> 0 THEN {person} END)" if x else "0"
        sql = (
            f"SELECT {select_keys}, COUNT(*) AS n_rows, COUNT(DISTINCT {person}) AS n_persons, "
            f"{mean} AS mean FROM {source}{where} GROUP BY {group_by}"
        )
        participants = (
            f"SELECT {select_keys}, COUNT(DISTINCT {person}) AS p, COUNT(*) AS r, {mean} AS m, "
            f"{nonzero} AS nz "
            f"FROM {source}{where} GROUP BY {group_by}"
        )
        return sql, participants, [f"k{i}" for i in range(len(keys))], f"FROM {source}{where}"


def keyed(rows: list[dict], keys: list[str]) -> dict[tuple, dict]:
    out = {}
    for r in rows:
        k = tuple(None if r[c] is None else float(r[c]) for c in keys)
        assert k not in out, f"two rows for group {k}"
        out[k] = r
    return out


def draw(gen_duck, seed: int, n: int):
    g = Generator(gen_duck, seed)
    return [g.grouped() for _ in range(n)]


@pytest.fixture(scope="module")
def researcher(gen_passport_server, mint_token):
    return Caller(gen_passport_server, mint_token, "random-researcher")


@pytest.fixture(scope="module")
def dashboard(gen_passport_server, mint_token):
    return Caller(gen_passport_server, mint_token, "random-dashboard", egress="aggregates")


def test_row_level_results_hide_every_small_group_and_nothing_else(researcher, gen_duck):
    small_groups = answered = 0
    for i, (sql, participants, keys, _) in enumerate(draw(gen_duck, SEED, QUERIES)):
        context = f"query {i} (seed {SEED}): {sql}"
        table = researcher.table(sql)
        md = table.schema.metadata or {}
        allowed_extra = int(md.get(b"strata.suppressed.complementary", b"0")) + int(
            md.get(b"strata.suppressed.dominance", b"0")
        )
        got = keyed(table.to_pylist(), keys)
        truth = keyed(duck_query(gen_duck, participants).to_pylist(), keys)
        assert set(got) == set(truth), f"{context}: groups differ from DuckDB's"
        extra = 0
        for k, row in got.items():
            p, r = truth[k]["p"], truth[k]["r"]
            if 1 <= p <= T:
                small_groups += 1
                assert row["n_rows"] is None and row["n_persons"] is None and row["mean"] is None, (
                    f"{context}: group {k} of {p} participants released {row}"
                )
                continue
            for cell, want in (("n_rows", r), ("n_persons", p)):
                if row[cell] is None:
                    extra += 1
                else:
                    assert row[cell] == want, f"{context}: group {k} {cell} = {row[cell]}, DuckDB {want}"
            m, nz = truth[k]["m"], truth[k]["nz"]
            if 1 <= nz <= T:
                assert row["mean"] is None, f"{context}: group {k} mean of {nz} nonzero terms released {row}"
            elif row["mean"] is None:
                extra += m is not None
            else:
                assert m is not None and math.isclose(row["mean"], m, rel_tol=1e-9), (
                    f"{context}: group {k} mean = {row['mean']}, DuckDB {m}"
                )
        assert extra <= allowed_extra, f"{context}: {extra} large cells withheld, {allowed_extra} reported"
        answered += 1
    print(f"row-level: {answered} queries, {small_groups} small groups hidden")
    assert answered == QUERIES
    # The draw meets small groups, or the suppression half of the oracle never ran.
    assert small_groups >= max(1, QUERIES // 4), small_groups


def test_aggregates_only_results_release_no_small_group_and_round_counts(dashboard, gen_duck):
    released = refused = 0
    for i, (sql, participants, keys, _) in enumerate(draw(gen_duck, SEED + 1, QUERIES)):
        context = f"query {i} (seed {SEED + 1}): {sql}"
        try:
            table = dashboard.table(sql)
        except Exception as e:  # a refusal releases nothing; the share is checked below
            assert "permissiondenied" in status_text(e), f"{context}: {e}"
            refused += 1
            continue
        base = int((table.schema.metadata or {}).get(b"strata.rounding", b"0"))
        assert base == T or table.num_rows == 0, f"{context}: rounding base {base}"
        truth = keyed(duck_query(gen_duck, participants).to_pylist(), keys)
        for k, row in keyed(table.to_pylist(), keys).items():
            if row["n_rows"] is None and row["n_persons"] is None and row["mean"] is None:
                continue
            assert k in truth, f"{context}: a group DuckDB does not have: {k}"
            p, r = truth[k]["p"], truth[k]["r"]
            assert p > T, f"{context}: group {k} of {p} participants released {row}"
            nz = truth[k]["nz"]
            assert row["mean"] is None or not 1 <= nz <= T, f"{context}: mean of {nz} nonzero terms {row}"
            for cell, want in (("n_rows", r), ("n_persons", p)):
                v = row[cell]
                if v is None:
                    continue
                released += 1
                assert v % base == 0 and want <= v < want + base, f"{context}: {cell} {v} for {want}"
    print(f"aggregates-only: {released} counts released, {refused} of {QUERIES} queries refused")
    assert refused <= QUERIES // 4, f"{refused} of {QUERIES} refused"
    assert released >= QUERIES, released


def test_ternary_partitions_add_up_to_the_whole_and_to_duckdb(researcher, gen_duck):
    g = Generator(gen_duck, SEED + 2)
    checked = 0
    for i in range(max(4, QUERIES // 4)):
        table = g.rng.choice(list(TABLES))
        p = g.predicate(table)
        context = f"partition {i} (seed {SEED + 2}) of {table} by {p}"
        per_person = "SELECT person_id, COUNT(*) AS c FROM {t}{w} GROUP BY person_id"
        whole = {
            r["person_id"]: r["c"] for r in researcher.rows(per_person.format(t=table, w=""))
        }
        oracle = {
            r["person_id"]: r["c"]
            for r in duck_query(gen_duck, per_person.format(t=table, w="")).to_pylist()
        }
        assert whole == oracle, f"{context}: the unfiltered per-person counts differ from DuckDB's"
        parts: dict[int, int] = {}
        for w in (f"({p})", f"NOT ({p})", f"({p}) IS NULL"):
            for r in researcher.rows(per_person.format(t=table, w=f" WHERE {w}")):
                parts[r["person_id"]] = parts.get(r["person_id"], 0) + r["c"]
        assert parts == whole, f"{context}: partitions add up to {sum(parts.values())}, not {sum(whole.values())}"
        checked += 1
        print(f"{context}: {sum(whole.values())} rows in {len(whole)} persons")
    assert checked >= 4


def test_the_generator_is_deterministic(gen_duck):
    """A failure's seed replays it."""
    assert draw(gen_duck, SEED, 5) == draw(gen_duck, SEED, 5)
    assert draw(gen_duck, SEED, 5) != draw(gen_duck, SEED + 1, 5)
