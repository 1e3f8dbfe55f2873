"""Research SQL gives researchers the right answers (DESIGN.md "Disclosure control": row-level
principals get exact queries, only the result's small statistical cells suppressed). Each query of
`research_queries.py` runs through the real ADBC client with a controlled-tier passport (egress
rows) and through DuckDB on the same Parquet files: every cell must equal DuckDB's, except
statistical cells whose own participant count is 1..20, which must be NULL.
"""

from __future__ import annotations

import datetime
import decimal
import math

import pytest

from helpers import Caller, duck_query
from research_queries import GENERATED, GIBLEED, Query

T = 20


def normalize(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.datetime):
        return v.replace(tzinfo=None)
    return v


def same(a, b) -> bool:
    a, b = normalize(a), normalize(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def expected_rows(q: Query, duck) -> list[dict]:
    """DuckDB's answer with the cells a row-level principal must not see set to None."""
    rows = duck_query(duck, q.sql).to_pylist()
    participants = {}
    if q.participants:
        for r in duck_query(duck, q.participants).to_pylist():
            participants[tuple(normalize(r[k]) for k in q.keys)] = r["p"]
    out = []
    for r in rows:
        r = dict(r)
        for c in q.counts:
            if r[c] is not None and 1 <= r[c] <= T:
                r[c] = None
        if q.stats:
            p = participants.get(tuple(normalize(r[k]) for k in q.keys))
            assert p is not None, f"{q.name}: no participant count for {r}"
            if 1 <= p <= T:
                for c in q.stats:
                    r[c] = None
        out.append(r)
    return out


def check(q: Query, caller: Caller, duck) -> None:
    table = caller.table(q.sql)
    got = table.to_pylist()
    want = expected_rows(q, duck)
    # Complementary suppression may withhold a few more cells of a line that holds a suppressed
    # one (the report counts them); every other cell is exact.
    md = table.schema.metadata or {}
    complementary = int(md.get(b"strata.suppressed.complementary", b"0"))
    assert int(md.get(b"strata.suppressed.differencing", b"0")) == 0, "a row-level result was differenced"
    extra = 0
    assert len(got) == len(want), f"{q.name}: {len(got)} rows, DuckDB {len(want)}"
    key = lambda r: tuple(str(normalize(r[k])) for k in q.keys)  # noqa: E731
    if q.keys:
        got.sort(key=key)
        want.sort(key=key)
    for g, w in zip(got, want):
        assert list(g) == list(w), f"{q.name}: columns {list(g)} vs {list(w)}"
        for c in w:
            if g[c] is None and w[c] is not None and c in q.counts + q.stats:
                extra += 1
                continue
            assert same(g[c], w[c]), f"{q.name}: {c} = {g[c]!r}, expected {w[c]!r} (row {w})"
    assert extra == complementary, f"{q.name}: {extra} cells withheld, {complementary} reported as complementary"
    # Few: a line gives up its next-smallest cells, not the table.
    assert extra <= max(2, len(want) // 10), f"{q.name}: {extra} of {len(want)} rows withheld"


@pytest.fixture(scope="module")
def researcher(gen_passport_server, mint_token):
    return Caller(gen_passport_server, mint_token, "researcher")


@pytest.fixture(scope="module")
def gibleed_researcher(gibleed_passport_server, mint_token):
    return Caller(gibleed_passport_server, mint_token, "gibleed-researcher")


@pytest.mark.parametrize("q", GENERATED, ids=[q.name for q in GENERATED])
def test_generated(q, researcher, gen_duck):
    check(q, researcher, gen_duck)


@pytest.mark.parametrize("q", GIBLEED, ids=[q.name for q in GIBLEED])
def test_gibleed(q, gibleed_researcher, gibleed_duck):
    check(q, gibleed_researcher, gibleed_duck)


def test_the_suite_meets_small_cells(gen_duck):
    """Some cells of the suite are small: the suppression half of the rule is exercised."""
    small = 0
    for q in GENERATED:
        for r in duck_query(gen_duck, q.sql).to_pylist():
            small += sum(1 for c in q.counts if r[c] is not None and 1 <= r[c] <= T)
    assert small >= 5, small


def test_the_suite_is_large_enough():
    assert len(GENERATED) + len(GIBLEED) >= 25


def test_repeating_a_query_gives_up_the_same_cells(researcher):
    """Complementary suppression decides on the result's participant sets, not on the order the
    partitions delivered its rows: asking again never releases a cell withheld the first time
    (which would give the union of two releases)."""
    q = next(q for q in GENERATED if q.name == "visits_per_year_and_type")
    key = lambda r: (r["y"], r["type"])  # noqa: E731
    answers = [sorted(researcher.rows(q.sql), key=key) for _ in range(6)]
    assert all(a == answers[0] for a in answers[1:])
    assert any(r["persons"] is None for r in answers[0]) and any(r["persons"] is not None for r in answers[0])
