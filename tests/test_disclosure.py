"""Disclosure control (DESIGN.md "Disclosure control"): no participant count from 1 to 20 leaves
the server, directly or derivably. Adversarial queries through the real ADBC driver, over the
generated dataset with planted rare groups (1, 5, 19, 20, 21 and 40 participants) and over
GiBleed, with DuckDB on the same Parquet files computing the truth.

Every test uses its own passport subject: the release ledger remembers, per principal, what was
released, so tests must not see each other's answers.
"""

from __future__ import annotations

import random

import pytest

from helpers import Caller, duck_query

T = 20
PLANTED = {4043241: 1, 441267: 5, 374919: 19, 76685: 20, 257628: 21, 4310024: 40}
PLANTED_IDS = ",".join(map(str, PLANTED))


def ceil20(n):
    return None if n is None else -(-n // 20) * 20


@pytest.fixture()
def caller(gen_passport_server, mint_token, request):
    return Caller(gen_passport_server, mint_token, f"dc-{request.node.name}")


@pytest.fixture()
def dashboard(gen_passport_server, mint_token, request):
    return Caller(gen_passport_server, mint_token, f"dash-{request.node.name}", egress="aggregates")


@pytest.fixture(scope="module")
def someone(gen_duck) -> int:
    """A participant with several conditions."""
    return truth(
        gen_duck,
        "SELECT person_id AS p FROM condition_occurrence GROUP BY 1 HAVING COUNT(DISTINCT condition_concept_id) >= 3 ORDER BY 1 LIMIT 1",
    )[0]["p"]


def truth(duck, sql):
    return duck_query(duck, sql).to_pylist()


# --------------------------------------------------------------------------------------------------
# Primary suppression
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("concept,persons", sorted(PLANTED.items()))
def test_direct_counts_of_planted_groups(gen_passport_server, mint_token, gen_duck, concept, persons):
    c = Caller(gen_passport_server, mint_token, f"direct-{concept}")
    got = c.value(f"SELECT COUNT(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id = {concept}")
    rows = c.value(f"SELECT COUNT(*) FROM condition_occurrence WHERE condition_concept_id = {concept}")
    true_rows = truth(gen_duck, f"SELECT COUNT(*) AS n FROM condition_occurrence WHERE condition_concept_id = {concept}")[0]["n"]
    if persons <= T:
        # Suppressed whatever the row count: one person with many rows is one participant.
        assert got is None and rows is None
    else:
        assert got == persons and rows == true_rows


def test_group_by_suppresses_small_groups_and_keeps_keys(caller, gen_duck):
    t = caller.table(
        f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS persons, COUNT(*) AS n, "
        f"AVG(condition_occurrence_id) AS a, MIN(condition_start_date) AS first, MAX(condition_start_date) AS last "
        f"FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1"
    )
    got = {r["c"]: r for r in t.to_pylist()}
    assert set(got) == set(PLANTED), "group keys are kept, suppressed or not"
    for concept, persons in PLANTED.items():
        r = got[concept]
        if persons <= T:
            assert all(r[k] is None for k in ("persons", "n", "a", "first", "last")), r
        else:
            assert r["persons"] == persons and r["n"] is not None and r["first"] is not None
    md = t.schema.metadata
    assert md[b"strata.threshold"] == b"20" and md[b"strata.rounding"] == b"1"
    assert int(md[b"strata.suppressed_cells"]) == 5 * sum(1 for p in PLANTED.values() if p <= T)


def test_join_fan_out_does_not_inflate_participants(caller):
    n = caller.value(
        "SELECT COUNT(*) FROM condition_occurrence c JOIN measurement m ON m.person_id = c.person_id "
        "JOIN observation o ON o.person_id = c.person_id WHERE c.condition_concept_id = 441267"
    )
    assert n is None


def test_union_all_duplication_does_not_inflate_participants(caller):
    parts = " UNION ALL ".join(
        ["SELECT person_id FROM condition_occurrence WHERE condition_concept_id = 374919"] * 6
    )
    assert caller.value(f"SELECT COUNT(*) FROM ({parts}) t") is None
    assert caller.value(f"SELECT COUNT(DISTINCT person_id) FROM ({parts}) t") is None


def test_self_join_does_not_inflate_participants(caller):
    n = caller.value(
        "SELECT COUNT(*) FROM condition_occurrence a JOIN condition_occurrence b "
        "ON a.person_id = b.person_id WHERE a.condition_concept_id = 76685"
    )
    assert n is None


# A join equating person keys keeps one side's person id as the rows' lineage (the padded
# side's adds no one). Each shape below joins the whole population with a handful of
# participants: what is counted of the handful must stay hidden, for both kinds of principal.
FEW = "(SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_concept_id = 374919)"  # 19


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT COUNT(DISTINCT f.person_id) FROM person p LEFT JOIN {FEW} f ON f.person_id = p.person_id",
        f"SELECT COUNT(f.person_id) FROM person p LEFT JOIN {FEW} f ON f.person_id = p.person_id",
        f"SELECT COUNT(DISTINCT f.person_id) FROM {FEW} f RIGHT JOIN person p ON p.person_id = f.person_id",
        f"SELECT COUNT(DISTINCT p.person_id) FROM person p JOIN {FEW} f ON f.person_id = p.person_id",
        f"SELECT COUNT(*) FROM {FEW} f JOIN person p ON p.person_id = f.person_id",
        f"SELECT COUNT(DISTINCT p.person_id) FROM {FEW} f RIGHT JOIN person p ON p.person_id = f.person_id "
        "WHERE f.person_id IS NOT NULL",
        f"SELECT SUM(p.year_of_birth) FROM person p LEFT JOIN {FEW} f ON f.person_id = p.person_id "
        "WHERE f.person_id IS NOT NULL",
        f"SELECT COUNT(DISTINCT p.person_id) FROM person p JOIN {FEW} f "
        "ON CAST(f.person_id AS VARCHAR) = CAST(p.person_id AS VARCHAR)",
        f"SELECT COUNT(DISTINCT p.person_id) FROM person p JOIN {FEW} f "
        "ON CAST(f.person_id AS REAL) = CAST(p.person_id AS REAL)",
        f"SELECT COUNT(DISTINCT COALESCE(f.person_id, p.person_id)) - COUNT(DISTINCT p.person_id) "
        f"+ COUNT(DISTINCT f.person_id) FROM person p FULL JOIN {FEW} f ON f.person_id = p.person_id",
    ],
    ids=["left-count-distinct", "left-count", "right-count-distinct", "inner-kept-side", "inner-count",
         "right-not-null", "left-sum", "text-keys", "float-keys", "full-join-arithmetic"],
)
@pytest.mark.parametrize("who", ["caller", "dashboard"])
def test_joins_on_person_keys_hide_the_few(who, request, sql):
    principal = request.getfixturevalue(who)
    if who == "dashboard" and "COALESCE" in sql:
        # Arithmetic on person keys is refused to aggregates-only principals outright.
        principal.refused(sql)
        return
    got = principal.value(sql)
    assert got is None, f"{who}: {got}"


def test_joins_on_person_keys_count_the_many_exactly(caller, gen_duck):
    sql = (
        "SELECT CASE WHEN t.person_id IS NULL THEN 'other' ELSE 'diabetes' END AS cohort, "
        "COUNT(DISTINCT a.person_id) AS persons, COUNT(t.person_id) AS rows_in_cohort "
        "FROM activity_summary a LEFT JOIN (SELECT DISTINCT person_id FROM condition_occurrence "
        "WHERE condition_concept_id = 201826) t ON t.person_id = a.person_id GROUP BY 1 ORDER BY 1"
    )
    want = truth(gen_duck, sql)
    assert all(r["persons"] > 20 for r in want)
    assert caller.rows(sql) == want


def test_vocabulary_only_aggregates_are_not_suppressed(caller, gen_duck):
    got = caller.value("SELECT COUNT(*) FROM concept WHERE concept_id = 201826")
    assert got == 1


def test_semi_join_counts_the_participants_who_decided(caller, someone):
    """Counting concept rows picked by one participant's conditions is a count of one
    participant (DESIGN.md's own example)."""
    assert caller.value(
        "SELECT COUNT(*) FROM concept WHERE concept_id IN "
        f"(SELECT condition_concept_id FROM condition_occurrence WHERE person_id = {someone})"
    ) is None
    assert caller.value(
        "SELECT COUNT(*) FROM concept WHERE EXISTS (SELECT 1 FROM condition_occurrence c "
        f"WHERE c.person_id = {someone} AND c.condition_concept_id = concept.concept_id)"
    ) is None


def test_filter_and_null_arguments_limit_contributors(caller, someone):
    """An aggregate's contributors are the rows its FILTER keeps and whose argument is not
    NULL: a CASE that blanks everyone else makes a one-participant statistic."""
    assert caller.value(
        f"SELECT COUNT(CASE WHEN person_id = {someone} THEN 1 END) FROM condition_occurrence"
    ) is None
    assert caller.value(
        f"SELECT SUM(condition_occurrence_id) FILTER (WHERE person_id = {someone}) FROM condition_occurrence"
    ) is None
    assert caller.value(
        f"SELECT MAX(CASE WHEN person_id = {someone} THEN condition_start_date END) FROM condition_occurrence"
    ) is None


def test_aggregates_only_having_order_limit_see_protected_values(dashboard):
    """For an aggregates-only principal every use of a cell inside the query sees its protected
    value: HAVING, ORDER BY and LIMIT cannot probe the small groups."""
    caller = dashboard
    rows = caller.rows(
        f"SELECT condition_concept_id FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) "
        "GROUP BY 1 HAVING COUNT(DISTINCT person_id) BETWEEN 1 AND 20"
    )
    assert rows == []
    rows = caller.rows(
        f"SELECT condition_concept_id FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) "
        "GROUP BY 1 HAVING COUNT(DISTINCT person_id) = 5"
    )
    assert rows == []
    # Ordering by a protected value cannot rank the small groups among themselves.
    rows = caller.rows(
        f"SELECT condition_concept_id AS c, COUNT(*) AS n FROM condition_occurrence "
        f"WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1 ORDER BY n DESC NULLS LAST"
    )
    assert [r["n"] for r in rows][-4:] == [None] * 4


def test_row_level_having_order_limit_see_true_values(caller, gen_duck):
    """A row-level principal's query is exact inside: HAVING selects by true counts, ORDER BY and
    LIMIT rank by them; only the result's own small cells are suppressed."""
    sql = (
        f"SELECT condition_concept_id AS c FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) "
        "GROUP BY 1 HAVING COUNT(DISTINCT person_id) BETWEEN 1 AND 20 ORDER BY 1"
    )
    assert caller.rows(sql) == truth(gen_duck, sql)
    top = (
        f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n FROM condition_occurrence "
        f"WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1 ORDER BY n DESC LIMIT 3"
    )
    got, want = caller.rows(top), truth(gen_duck, top)
    assert [r["c"] for r in got] == [r["c"] for r in want]
    assert [r["n"] for r in got] == [r["n"] if r["n"] > T else None for r in want]


@pytest.mark.parametrize("who", ["caller", "dashboard"])
def test_per_person_intermediates_are_exact(who, request, gen_duck):
    """Per-person groups are one participant's own rows: the outer aggregate over them sees true
    values for every principal, and is itself a protected cell."""
    c = request.getfixturevalue(who)
    sql = "SELECT MAX(n) AS m FROM (SELECT person_id, COUNT(*) AS n FROM condition_occurrence GROUP BY 1) t"
    assert c.value(sql) == truth(gen_duck, sql)[0]["m"]
    # The outer count's own participants are the five.
    assert c.value(
        "SELECT COUNT(*) FROM (SELECT person_id FROM condition_occurrence "
        "WHERE condition_concept_id = 441267 GROUP BY person_id) t"
    ) is None


def test_window_aggregates_are_protected(caller, gen_duck):
    # A window over one participant's rows is that participant's row-level data: exact.
    sql = (
        "SELECT person_id, condition_occurrence_id, COUNT(*) OVER (PARTITION BY person_id) AS n "
        "FROM condition_occurrence WHERE condition_concept_id = 4310024 ORDER BY 2"
    )
    assert caller.rows(sql) == truth(gen_duck, sql)
    # A window over many participants is a statistical cell: small partitions are suppressed.
    rows = caller.rows(
        f"SELECT condition_concept_id AS c, COUNT(*) OVER (PARTITION BY condition_concept_id) AS n "
        f"FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS})"
    )
    for r in rows:
        assert (r["n"] is None) == (PLANTED[r["c"]] <= T), r


# --------------------------------------------------------------------------------------------------
# Complementary suppression, within a result and across queries
# --------------------------------------------------------------------------------------------------


def check_line(total, parts):
    """One line (a total and its disjoint parts): no suppressed part can be solved."""
    suppressed = [p for p in parts if p["shown"] is None]
    if total["shown"] is None or not suppressed:
        return
    assert len(suppressed) >= 2, f"a suppressed cell alone in its line: {parts}"
    assert sum(p["true"] for p in suppressed) >= T + 1, f"suppressed mass too small: {parts}"


def test_union_of_total_and_parts(caller, gen_duck):
    ids = "441267, 257628, 4310024"
    rows = caller.rows(
        f"SELECT 'all' AS k, COUNT(DISTINCT person_id) AS n FROM condition_occurrence WHERE condition_concept_id IN ({ids}) "
        f"UNION ALL SELECT CAST(condition_concept_id AS VARCHAR), COUNT(DISTINCT person_id) FROM condition_occurrence "
        f"WHERE condition_concept_id IN ({ids}) GROUP BY 1"
    )
    shown = {r["k"]: r["n"] for r in rows}
    true = {
        str(r["c"]): r["n"]
        for r in truth(gen_duck, f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n FROM condition_occurrence WHERE condition_concept_id IN ({ids}) GROUP BY 1")
    }
    parts = [{"shown": shown[k], "true": v} for k, v in true.items()]
    check_line({"shown": shown["all"]}, parts)
    assert shown["441267"] is None  # primary
    # 5 + 21 participants: the 21 is withheld with the 5 (or the total is).
    assert shown["257628"] is None or shown["all"] is None


def test_rollup_margins(caller, gen_duck):
    rows = caller.rows(
        "SELECT race_concept_id AS r, ethnicity_concept_id AS e, COUNT(*) AS n "
        "FROM person GROUP BY ROLLUP(race_concept_id, ethnicity_concept_id)"
    )
    true = {
        (t["r"], t["e"]): t["n"]
        for t in truth(gen_duck, "SELECT race_concept_id AS r, ethnicity_concept_id AS e, COUNT(*) AS n FROM person GROUP BY ROLLUP(1, 2)")
    }
    shown = {(x["r"], x["e"]): x["n"] for x in rows}
    assert set(shown) == set(true)
    for key, n in shown.items():
        if n is not None:
            assert n == true[key]
        if 1 <= true[key] <= T:
            assert n is None
    assert any(1 <= v <= T for v in true.values()), "the data has no small cell: the test proves nothing"
    # Each race line (its ethnicity parts and the race total) and the grand line.
    races = {r for (r, e) in true if r is not None}
    for r in races:
        parts = [{"shown": shown[(r, e)], "true": true[(r, e)]} for (rr, e) in true if rr == r and e is not None]
        check_line({"shown": shown[(r, None)]}, parts)
    check_line({"shown": shown[(None, None)]}, [{"shown": shown[(r, None)], "true": true[(r, None)]} for r in races])


def test_row_level_percentages_never_expose_a_suppressed_cell(caller, gen_duck):
    """Inside a row-level query the window total is exact; a percentage whose numerator is
    suppressed is suppressed, and where a line holds a suppressed cell its total is not
    released through the other rows' percentages."""
    sql = (
        "SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n, "
        "100.0 * COUNT(DISTINCT person_id) / SUM(COUNT(DISTINCT person_id)) OVER () AS pct "
        "FROM condition_occurrence WHERE condition_concept_id IN ({ids}) GROUP BY 1 ORDER BY 1"
    )
    rows = caller.rows(sql.format(ids=PLANTED_IDS))
    assert any(r["n"] is None for r in rows)
    assert all(r["pct"] is None for r in rows), "the total (and so the suppressed cells) is derivable"
    large = "4310024, 257628"
    got, want = caller.rows(sql.format(ids=large)), truth(gen_duck, sql.format(ids=large))
    assert [r["n"] for r in got] == [r["n"] for r in want]
    assert all(abs(g["pct"] - w["pct"]) < 1e-9 for g, w in zip(got, want))


def test_percentages_are_computed_from_protected_numbers(dashboard):
    caller = dashboard
    rows = caller.rows(
        f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n, "
        f"100.0 * COUNT(DISTINCT person_id) / SUM(COUNT(DISTINCT person_id)) OVER () AS pct "
        f"FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1"
    )
    visible = sum(r["n"] for r in rows if r["n"] is not None)
    for r in rows:
        if r["n"] is None:
            assert r["pct"] is None
        else:
            assert abs(r["pct"] - 100.0 * r["n"] / visible) < 1e-9


def test_row_level_results_are_checked_alone(caller, gen_duck):
    """No cross-query ledger for a principal who can read the rows: the total and the total
    less five are both released, as DuckDB computes them — in one result too, as the five are
    no cell of it. Once the five are a (suppressed) cell of the same result, the total or the
    rest is withheld with them."""
    total = "SELECT COUNT(*) AS n FROM person"
    rest = (
        "SELECT COUNT(*) AS n FROM person p LEFT JOIN (SELECT DISTINCT person_id AS x FROM condition_occurrence "
        "WHERE condition_concept_id = 441267) s ON s.x = p.person_id WHERE s.x IS NULL"
    )
    assert caller.value(total) == truth(gen_duck, total)[0]["n"]
    assert caller.value(rest) == truth(gen_duck, rest)[0]["n"]
    both = caller.rows(f"SELECT 'all' AS k, n FROM ({total}) a UNION ALL SELECT 'rest', n FROM ({rest}) b")
    assert {r["k"]: r["n"] for r in both} == {"all": caller.value(total), "rest": caller.value(rest)}
    five = "SELECT COUNT(DISTINCT person_id) AS n FROM condition_occurrence WHERE condition_concept_id = 441267"
    line = {
        r["k"]: r["n"]
        for r in caller.rows(
            f"SELECT 'all' AS k, n FROM ({total}) a UNION ALL SELECT 'rest', n FROM ({rest}) b "
            f"UNION ALL SELECT 'five', n FROM ({five}) c"
        )
    }
    assert line["five"] is None and (line["all"] is None or line["rest"] is None), line


def test_differencing_total_minus_parts_across_queries(dashboard, gen_duck):
    caller = dashboard
    total = caller.value("SELECT COUNT(*) FROM person")
    assert total == ceil20(truth(gen_duck, "SELECT COUNT(*) AS n FROM person")[0]["n"])
    # Everyone but the five planted participants: 5 = total - this.
    got = caller.value(
        "SELECT COUNT(*) FROM person p WHERE NOT EXISTS (SELECT 1 FROM condition_occurrence c "
        "WHERE c.person_id = p.person_id AND c.condition_concept_id = 441267)"
    )
    assert got is None
    # Overlapping filters: persons born up to Y vs up to Y+1 when the difference is small.
    years = truth(gen_duck, "SELECT year_of_birth AS y, COUNT(*) AS n FROM person GROUP BY 1 ORDER BY 1")
    small = next(r for r in years if 1 <= r["n"] <= T and r["y"] > years[0]["y"])
    a = caller.value(f"SELECT COUNT(*) FROM person WHERE year_of_birth < {small['y']}")
    b = caller.value(f"SELECT COUNT(*) FROM person WHERE year_of_birth <= {small['y']}")
    assert a is None or b is None, "the two counts differ by a small group"


def test_padding_tracker(caller):
    """A padded total and the same padding plus one participant."""
    a = caller.value("SELECT COUNT(*) FROM person WHERE year_of_birth >= 1950")
    b = caller.value("SELECT COUNT(*) FROM person WHERE year_of_birth >= 1950 OR person_id IN (1, 2, 3)")
    assert a is None or b is None or a == b


def test_aggregates_only_padding_tracker(dashboard, gen_duck):
    """A padded total, then the same padding plus a small group (a tracker): withheld."""
    years = truth(gen_duck, "SELECT year_of_birth AS y, COUNT(*) AS n FROM person GROUP BY 1 ORDER BY 1")
    small = next(r for r in years if 1 <= r["n"] <= T and r["y"] < 1950)
    a = dashboard.value("SELECT COUNT(*) FROM person WHERE year_of_birth >= 1950")
    b = dashboard.value(f"SELECT COUNT(*) FROM person WHERE year_of_birth >= 1950 OR year_of_birth = {small['y']}")
    assert a is not None and b is None


def test_repeated_cube_gives_the_same_answer(caller):
    sql = (
        "SELECT race_concept_id AS r, ethnicity_concept_id AS e, COUNT(*) AS n FROM person "
        "GROUP BY CUBE(race_concept_id, ethnicity_concept_id) ORDER BY 1, 2"
    )
    first = caller.rows(sql)
    assert caller.rows(sql) == first and caller.rows(sql) == first


def test_repeated_and_rephrased_queries_give_the_same_answer(caller):
    sql = f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1 ORDER BY 1"
    first = caller.rows(sql)
    for _ in range(3):
        assert caller.rows(sql) == first
    rephrased = caller.rows(
        f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n FROM condition_occurrence "
        f"WHERE condition_concept_id = ANY([{PLANTED_IDS}]) GROUP BY condition_concept_id ORDER BY c"
    )
    assert rephrased == first


# --------------------------------------------------------------------------------------------------
# Aggregates-only principals
# --------------------------------------------------------------------------------------------------


def test_aggregates_only_counts_are_rounded(dashboard, gen_duck):
    t = dashboard.table(
        f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n, COUNT(*) AS rows "
        f"FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1"
    )
    true = {
        r["c"]: r
        for r in truth(gen_duck, f"SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n, COUNT(*) AS rows FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1")
    }
    for r in t.to_pylist():
        if true[r["c"]]["n"] <= T:
            assert r["n"] is None and r["rows"] is None
        else:
            assert r["n"] == ceil20(true[r["c"]]["n"]) and r["rows"] == ceil20(true[r["c"]]["rows"])
            assert r["n"] % 20 == 0
    assert t.schema.metadata[b"strata.rounding"] == b"20"


def test_aggregates_only_percentages_use_rounded_counts(dashboard):
    rows = dashboard.rows(
        "SELECT gender_concept_id AS g, COUNT(*) AS n, 100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct FROM person GROUP BY 1"
    )
    total = sum(r["n"] for r in rows)
    for r in rows:
        assert r["n"] % 20 == 0 and abs(r["pct"] - 100.0 * r["n"] / total) < 1e-9


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM person WHERE person_id = 42",
        "SELECT COUNT(*) FROM person WHERE person_id BETWEEN 1 AND 30",
        "SELECT person_id % 10 AS k, COUNT(*) FROM person GROUP BY 1",
        "SELECT person_id, COUNT(*) FROM condition_occurrence GROUP BY person_id",
        "SELECT MIN(person_id) FROM person",
        "SELECT SUM(CASE WHEN person_id = 42 THEN 1 ELSE 0 END) FROM condition_occurrence",
        "SELECT COUNT(*) FROM (SELECT * FROM person ORDER BY year_of_birth LIMIT 25) t",
        "SELECT COUNT(*) FROM (SELECT * FROM person LIMIT 10 OFFSET 5) t",
        "SELECT person_id FROM person",
    ],
    ids=["eq", "range", "mod", "group", "min", "case", "limit", "offset", "rows"],
)
def test_aggregates_only_may_not_single_out_participants(dashboard, sql):
    dashboard.refused(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN SELECT gender_concept_id, COUNT(*) FROM person GROUP BY 1",
        # Without GROUP BY DataFusion could fold COUNT, MIN and MAX into literals from file
        # statistics if a scan reported them exactly: the plan would print the answer.
        "EXPLAIN SELECT COUNT(*) FROM condition_occurrence",
        "EXPLAIN SELECT COUNT(*) AS n FROM person",
        "EXPLAIN SELECT MAX(year_of_birth), MIN(year_of_birth) FROM person",
        "EXPLAIN SELECT MAX(value_as_number) FROM measurement",
    ],
    ids=["group", "count-events", "count-persons", "min-max-birth", "max-value"],
)
def test_aggregates_only_explain_shows_no_counts(dashboard, gen_duck, sql):
    rows = dashboard.rows(sql)
    text = " ".join(str(v) for r in rows for v in r.values())
    assert "rows=" not in text.lower() and "statistics" not in text.lower()
    facts = duck_query(
        gen_duck,
        "SELECT (SELECT COUNT(*) FROM condition_occurrence) AS a, (SELECT COUNT(*) FROM person) AS b, "
        "(SELECT MAX(year_of_birth) FROM person) AS c, (SELECT MIN(year_of_birth) FROM person) AS d, "
        "(SELECT MAX(value_as_number) FROM measurement) AS e",
    ).to_pylist()[0]
    for name, value in facts.items():
        assert value is not None
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"({shown})" not in text and f"{shown} as" not in text.lower(), (name, shown, text)


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN VERBOSE SELECT COUNT(*) FROM person",
        "EXPLAIN (VERBOSE true) SELECT COUNT(*) FROM person",
        "EXPLAIN (COSTS true) SELECT year_of_birth FROM person",
    ],
    ids=["verbose", "verbose-option", "costs"],
)
def test_explain_with_statistics_is_refused(dashboard, sql):
    dashboard.refused(sql)


# --------------------------------------------------------------------------------------------------
# Audit and report
# --------------------------------------------------------------------------------------------------


def test_audit_records_suppressed_cells(gen_passport_server, mint_token):
    import json
    import time

    c = Caller(gen_passport_server, mint_token, "dc-audit-suppressed")
    t = c.table(
        f"SELECT condition_concept_id AS c, COUNT(*) AS n FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) GROUP BY 1"
    )
    md = t.schema.metadata
    suppressed = int(md[b"strata.suppressed_cells"])
    assert suppressed == sum(1 for r in t.to_pylist() if r["n"] is None) == 4
    assert int(md[b"strata.suppressed.threshold"]) == 4
    assert all(md[f"strata.suppressed.{r}".encode()] == b"0" for r in ("complementary", "dominance", "differencing"))
    path = gen_passport_server.state_dir / "audit.jsonl"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ends = [
            json.loads(line)
            for line in path.read_text().splitlines()
            if '"dc-audit-suppressed"' in line and '"phase":"end"' in line
        ]
        if ends:
            break
        time.sleep(0.1)
    assert ends and ends[-1]["suppressed_cells"] == 4
    assert ends[-1]["suppressed_by_reason"] == {"threshold": 4, "complementary": 0, "dominance": 0, "differencing": 0}
    assert ends[-1]["protected_cells"] == len(PLANTED)


# --------------------------------------------------------------------------------------------------
# GiBleed
# --------------------------------------------------------------------------------------------------


def test_gibleed_condition_counts(gibleed_passport_server, mint_token, gibleed_duck):
    c = Caller(gibleed_passport_server, mint_token, "gibleed-conditions")
    got = {
        r["c"]: r["n"]
        for r in c.rows("SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n FROM condition_occurrence GROUP BY 1")
    }
    true = {
        r["c"]: r["n"]
        for r in truth(gibleed_duck, "SELECT condition_concept_id AS c, COUNT(DISTINCT person_id) AS n FROM condition_occurrence GROUP BY 1")
    }
    assert set(got) == set(true)
    small = [k for k, v in true.items() if v <= T]
    assert small, "GiBleed has rare conditions"
    for k, v in true.items():
        if v <= T:
            assert got[k] is None, (k, v)
        elif got[k] is not None:
            assert got[k] == v


def test_gibleed_drug_users_after_bleeding(gibleed_passport_server, mint_token, gibleed_duck):
    sql = (
        "SELECT d.drug_concept_id AS d, COUNT(DISTINCT d.person_id) AS n FROM drug_exposure d "
        "JOIN condition_occurrence c ON c.person_id = d.person_id AND c.condition_concept_id = 192671 "
        "AND d.drug_exposure_start_date > c.condition_start_date GROUP BY 1"
    )
    got = {r["d"]: r["n"] for r in Caller(gibleed_passport_server, mint_token, "gibleed-drugs").rows(sql)}
    true = {r["d"]: r["n"] for r in truth(gibleed_duck, sql)}
    assert set(got) == set(true)
    for k, v in true.items():
        assert (got[k] is None) if v <= T else (got[k] in (None, v))


# --------------------------------------------------------------------------------------------------
# Property test: random group-by/filter queries
# --------------------------------------------------------------------------------------------------

DIMENSIONS = {
    "person": ["gender_concept_id", "race_concept_id", "ethnicity_concept_id", "year_of_birth", "year_of_birth / 10"],
    "condition_occurrence": ["condition_concept_id", "condition_type_concept_id", "EXTRACT(YEAR FROM condition_start_date)"],
    "measurement": ["measurement_concept_id", "unit_concept_id", "EXTRACT(YEAR FROM measurement_date)"],
}
FILTERS = {
    "person": ["year_of_birth > {y}", "year_of_birth BETWEEN {y} AND {y2}", "gender_concept_id = 8507", "race_concept_id <> 8527"],
    "condition_occurrence": [f"condition_concept_id IN ({PLANTED_IDS})", "condition_start_date >= DATE '{y}-01-01'", "condition_concept_id < 300000"],
    "measurement": ["value_as_number > {v}", "measurement_date < DATE '{y}-06-30'"],
}
STATS = {
    "person": ["COUNT(*)", "COUNT(DISTINCT person_id)", "AVG(year_of_birth)", "MIN(year_of_birth)", "MAX(year_of_birth)", "SUM(year_of_birth)"],
    "condition_occurrence": ["COUNT(*)", "COUNT(DISTINCT person_id)", "MIN(condition_start_date)", "MAX(condition_end_date)"],
    "measurement": ["COUNT(*)", "AVG(value_as_number)", "MAX(value_as_number)", "COUNT(DISTINCT person_id)"],
}


def random_query(rng: random.Random) -> tuple[str, str]:
    table = rng.choice(list(DIMENSIONS))
    dims = rng.sample(DIMENSIONS[table], rng.randint(1, 2))
    stats = rng.sample(STATS[table], rng.randint(1, 3))
    where = rng.sample(FILTERS[table], rng.randint(0, 2))
    y = rng.randint(1935, 2015)
    where = [w.format(y=y, y2=y + rng.randint(0, 6), v=rng.randint(1, 200)) for w in where]
    keys = ", ".join(f"{d} AS k{i}" for i, d in enumerate(dims))
    cols = ", ".join(f"{s} AS s{i}" for i, s in enumerate(stats))
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    group = ", ".join(str(i + 1) for i in range(len(dims)))
    strata = f"SELECT {keys}, {cols} FROM {table}{cond} GROUP BY {group}"
    oracle = f"SELECT {keys}, COUNT(DISTINCT person_id) AS participants FROM {table}{cond} GROUP BY {group}"
    return strata, oracle


def test_property_no_small_cell_is_released(gen_passport_server, mint_token, gen_duck):
    rng = random.Random(20261124)
    checked_small = 0
    for i in range(40):
        sql, oracle = random_query(rng)
        c = Caller(gen_passport_server, mint_token, f"property-{i}")
        rows = c.rows(sql)
        # DuckDB's `/` is float division; DataFusion's on integers is integer division.
        truth_sql = oracle.replace("year_of_birth / 10", "year_of_birth // 10")
        participants = {
            tuple(r[k] for k in sorted(r) if k.startswith("k")): r["participants"] for r in truth(gen_duck, truth_sql)
        }
        for r in rows:
            key = tuple(r[k] for k in sorted(r) if k.startswith("k"))
            stats = [r[k] for k in r if k.startswith("s")]
            p = participants.get(key)
            assert p is not None, f"{sql}: group {key} not in the oracle"
            if 1 <= p <= T:
                checked_small += 1
                assert all(s is None for s in stats), f"{sql}: group {key} of {p} participants released {stats}"
            # No released count lies in 1..20.
            for k, stat in enumerate(stats_of(sql)):
                v = r[f"s{k}"]
                if stat.startswith("COUNT") and v is not None:
                    assert not (1 <= v <= T), f"{sql}: released count {v}"
    assert checked_small > 10, "the random queries hit too few small groups to prove anything"


def stats_of(sql: str) -> list[str]:
    out = []
    for part in sql.split(", "):
        if " AS s" in part:
            out.append(part.split(" AS s")[0].replace("SELECT ", ""))
    return out


@pytest.mark.parametrize("who", ["caller", "dashboard"])
def test_anti_join_on_the_person_key(who, request, gen_duck):
    """NOT EXISTS correlated on the person: each left row's participant decides it."""
    c = request.getfixturevalue(who)
    rounded = ceil20 if who == "dashboard" else (lambda n: n)
    n = c.value(
        "SELECT COUNT(*) FROM person p WHERE NOT EXISTS (SELECT 1 FROM condition_occurrence c "
        "WHERE c.person_id = p.person_id AND c.condition_concept_id = 441267)"
    )
    total = truth(gen_duck, "SELECT COUNT(*) AS n FROM person")[0]["n"]
    assert n == rounded(total - 5)
    # The plain total now differs from a released count by five participants: withheld from an
    # aggregates-only principal; a row-level principal's results are checked alone.
    assert c.value("SELECT COUNT(*) FROM person") == (None if who == "dashboard" else total)


def test_uncorrelated_anti_join_counts_everyone_on_the_right(caller, someone, gen_duck):
    """NOT IN over one participant's conditions: every participant of the subquery decided which
    concept rows remain, so the count has that one participant and is suppressed."""
    assert caller.value(
        "SELECT COUNT(*) FROM concept WHERE concept_id NOT IN "
        f"(SELECT condition_concept_id FROM condition_occurrence WHERE person_id = {someone})"
    ) is None
    # Over everyone's conditions: many participants, released, equal to the oracle.
    sql = (
        "SELECT COUNT(*) AS n FROM concept WHERE domain_id = 'Condition' AND concept_id NOT IN "
        "(SELECT condition_concept_id FROM condition_occurrence)"
    )
    assert caller.value(sql) == truth(gen_duck, sql)[0]["n"]


def test_sliding_window_frames_are_protected(caller):
    rows = caller.rows(
        "SELECT condition_concept_id AS c, COUNT(*) OVER (ORDER BY condition_start_date "
        "ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS n FROM condition_occurrence "
        "WHERE condition_concept_id = 4310024"
    )
    # Three rows at most per frame: at most three participants, never released.
    assert rows and all(r["n"] is None for r in rows)


def test_threshold_may_only_be_raised(gen_dataset, tmp_work):
    from helpers import one_line_error, run_strata

    bad = tmp_work / "low.toml"
    bad.write_text("[disclosure]\nthreshold = 10\n")
    proc = run_strata("serve", "--dataset", gen_dataset, "--config", bad, "--listen", "127.0.0.1:0", check=False)
    one_line_error(proc, "threshold")


def test_counting_per_person_groups(caller):
    """Groups by the person key are one participant each; counting them counts participants."""
    for concept, persons in ((4310024, 40), (257628, 21), (76685, 20)):
        n = caller.value(
            "SELECT COUNT(*) FROM (SELECT person_id, COUNT(*) AS k FROM condition_occurrence "
            f"WHERE condition_concept_id = {concept} GROUP BY person_id) t"
        )
        d = caller.value(
            "SELECT COUNT(*) FROM (SELECT DISTINCT c.person_id FROM condition_occurrence c "
            f"JOIN concept x ON x.concept_id = c.condition_concept_id WHERE c.condition_concept_id = {concept}) t"
        )
        want = persons if persons > T else None
        assert n == want and d == want, (concept, n, d)


def test_cube_two_dimensional_margins(caller, gen_duck):
    """A 2-D table with all margins: in every row and column line, suppressed cells are 0 or at
    least two with a mass above the threshold (a lone suppressed cell is solvable)."""
    sql = (
        "SELECT p.race_concept_id AS r, p.ethnicity_concept_id AS e, COUNT(DISTINCT p.person_id) AS n "
        "FROM person p GROUP BY CUBE(p.race_concept_id, p.ethnicity_concept_id)"
    )
    shown = {(x["r"], x["e"]): x["n"] for x in caller.rows(sql)}
    true = {
        (t["r"], t["e"]): t["n"]
        for t in truth(gen_duck, "SELECT race_concept_id AS r, ethnicity_concept_id AS e, COUNT(*) AS n FROM person GROUP BY CUBE(1, 2)")
    }
    assert set(shown) == set(true)
    assert any(1 <= v <= T for v in true.values())
    for key, v in true.items():
        if 1 <= v <= T:
            assert shown[key] is None
        if shown[key] is not None:
            assert shown[key] == v
    races = {r for (r, e) in true if r is not None}
    eths = {e for (r, e) in true if e is not None}
    for r in races:
        check_line({"shown": shown[(r, None)]}, [{"shown": shown[(r, e)], "true": true[(r, e)]} for e in eths if (r, e) in true])
    for e in eths:
        check_line({"shown": shown[(None, e)]}, [{"shown": shown[(r, e)], "true": true[(r, e)]} for r in races if (r, e) in true])
    # No suppressed cell is a bridge of the table's graph (rows and columns as nodes, margins on
    # the extra "+" row and column): a bridge is solvable from the released cells.
    edges = [
        (("row", "+" if r is None else r), ("col", "+" if e is None else e))
        for (r, e) in true
        if shown[(r, e)] is None
    ]

    def connected(skip, a, b):
        seen, todo = {a}, [a]
        while todo:
            n = todo.pop()
            for k, (x, y) in enumerate(edges):
                if k == skip or n not in (x, y):
                    continue
                m = y if n == x else x
                if m == b:
                    return True
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return False

    for k, (a, b) in enumerate(edges):
        assert connected(k, a, b), f"suppressed cell {a}/{b} is a bridge: solvable from the margins"


def test_release_ledger_survives_a_restart(gen_passport_server, mint_token):
    c = Caller(gen_passport_server, mint_token, "dc-restart", egress="aggregates")
    assert c.value("SELECT COUNT(*) FROM person") is not None
    gen_passport_server.restart()
    c = Caller(gen_passport_server, mint_token, "dc-restart", egress="aggregates")
    # Everyone but the five planted participants: withheld against the pre-restart total.
    assert c.value(
        "SELECT COUNT(*) FROM person p WHERE NOT EXISTS (SELECT 1 FROM condition_occurrence c "
        "WHERE c.person_id = p.person_id AND c.condition_concept_id = 441267)"
    ) is None


# --------------------------------------------------------------------------------------------------
# Row-level principals: exact inside, every path of a small cell to the result masked
# --------------------------------------------------------------------------------------------------

FIVE = "SELECT COUNT(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id = 441267"
FIVE_T = f"(SELECT COUNT(DISTINCT person_id) AS v FROM condition_occurrence WHERE condition_concept_id = 441267) t"


@pytest.mark.parametrize(
    "sql",
    [
        # A scalar subquery's small count beside every row of a table.
        f"SELECT person_id, ({FIVE}) AS v FROM person ORDER BY person_id LIMIT 20",
        # The same through a join with a derived table.
        f"SELECT p.person_id, t.v FROM person p CROSS JOIN {FIVE_T} ORDER BY 1 LIMIT 20",
        # Arithmetic and CASE over the small cell.
        f"SELECT v * 2 + 1 AS v FROM {FIVE_T}",
        f"SELECT CASE WHEN v < 10 THEN 'small' ELSE 'big' END AS v FROM {FIVE_T}",
        # A per-participant value computed from it.
        f"SELECT c.person_id, MAX(t.v) AS v FROM condition_occurrence c CROSS JOIN {FIVE_T} "
        "GROUP BY c.person_id ORDER BY 1 LIMIT 20",
    ],
    ids=["scalar-subquery", "join", "arithmetic", "case", "per-person"],
)
def test_row_level_small_cells_are_masked_on_every_path_to_the_result(caller, sql):
    rows = caller.rows(sql)
    assert rows and all(r["v"] is None for r in rows), rows[:3]


def test_row_level_small_cells_are_masked_as_group_keys(caller, gen_duck):
    """A histogram of per-concept participant counts: the keys are cells themselves."""
    sql = (
        "SELECT n, COUNT(*) AS concepts FROM (SELECT condition_concept_id, COUNT(DISTINCT person_id) AS n "
        "FROM condition_occurrence GROUP BY 1) t GROUP BY n"
    )
    rows = caller.rows(sql)
    keys = [r["n"] for r in rows]
    assert not any(k is not None and 1 <= k <= T for k in keys), keys
    true = {r["n"] for r in truth(gen_duck, sql)}
    assert any(1 <= k <= T for k in true), "no small key to hide: the test proves nothing"
    assert {k for k in keys if k is not None} == {k for k in true if k > T}


def test_row_level_lag_of_a_small_cell_is_masked(caller, gen_duck):
    sql = (
        "SELECT c, n, LAG(n) OVER (ORDER BY c) AS prev FROM (SELECT condition_concept_id AS c, "
        f"COUNT(DISTINCT person_id) AS n FROM condition_occurrence WHERE condition_concept_id IN ({PLANTED_IDS}) "
        "GROUP BY 1) t ORDER BY c"
    )
    rows = caller.rows(sql)
    want = truth(gen_duck, sql)
    for i, (g, w) in enumerate(zip(rows, want)):
        assert g["n"] == (w["n"] if w["n"] > T else None)
        prev_small = i > 0 and want[i - 1]["n"] <= T
        assert g["prev"] == (None if prev_small or w["prev"] is None else w["prev"]), (g, w)


# --------------------------------------------------------------------------------------------------
# Aggregates-only principals: per-participant intermediates stay inside
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT v, n FROM (SELECT person_id AS v, COUNT(*) AS n FROM condition_occurrence GROUP BY person_id) t",
        "SELECT n FROM (SELECT person_id, COUNT(*) AS n FROM condition_occurrence GROUP BY person_id) t",
        "SELECT n FROM (SELECT person_id, COUNT(*) OVER (PARTITION BY person_id) AS n FROM condition_occurrence) t",
        "SELECT MIN(condition_start_date) AS d FROM condition_occurrence GROUP BY person_id",
    ],
    ids=["renamed-key", "values-only", "window", "key-dropped"],
)
def test_aggregates_only_per_person_rows_never_reach_the_result(dashboard, sql):
    dashboard.refused(sql, status="")


def test_aggregates_only_scalar_subqueries_see_protected_values(dashboard, gen_duck):
    assert dashboard.value(f"SELECT ({FIVE}) AS v") is None
    # A filter on the hidden value cannot probe it: it sees NULL.
    assert dashboard.value(f"SELECT COUNT(*) FROM person WHERE ({FIVE}) = 5") == 0
    total = truth(gen_duck, "SELECT COUNT(*) AS n FROM person")[0]["n"]
    assert dashboard.value("SELECT (SELECT COUNT(*) FROM person) AS v") == ceil20(total)


def test_registered_aggregates_only_principals_can_count(gen_passport_server, mint_token, gen_duck):
    """A dashboard holding the registered tier reads the registered views, whose own functions
    take the person key: that is the view's use of the key, not the caller's."""
    c = Caller(gen_passport_server, mint_token, "registered-dashboard", tier="registered", egress="aggregates")
    rows = c.rows("SELECT gender_concept_id AS g, COUNT(*) AS n FROM person GROUP BY 1")
    assert rows and all(r["n"] is None or r["n"] % 20 == 0 for r in rows)
    total = truth(gen_duck, "SELECT COUNT(*) AS n FROM person")[0]["n"]
    # The 89+ are left out of the view; what is released is rounded up.
    assert 0.8 * total < sum(r["n"] or 0 for r in rows) <= total + 20 * len(rows)
    # The caller's own use of the key is still refused.
    c.refused("SELECT COUNT(*) FROM person WHERE person_id < 100")
