"""What a cell reveals, not who is non-NULL (issue 17, classes 1 and 3), adversarially.

A statistical cell's value can come from a few rows of a large group: a CASE whose ELSE is a
constant makes every row "contribute" while the value counts, or picks, the rows of a small
group; a boolean turned into a number, COALESCE/NULLIF and step functions do the same without a
CASE. A rank counts the rows of its partition; LAG and FIRST_VALUE read another participant's
row. Planted rare conditions (1, 5, 19, 20, 21 and 40 participants) are the small groups; DuckDB
on the same Parquet files gives the truth.

- Row-level principals: each value-dependent branch of an aggregate is a sub-cell that must hold
  no participant or more than T, and a SUM/AVG's nonzero terms too; a rank over a partition of
  1..T participants is a suppressed cell.
- Aggregates-only principals: aggregates of columns and arithmetic only (no FILTER, CASE,
  COALESCE, comparison, step function), no ARRAY_AGG/STRING_AGG, `SUM(1)` rounded like a count,
  no window function over participants' rows unless partitioned by the person key.
"""

from __future__ import annotations

import pytest

from helpers import Caller, duck_query

T = 20
PLANTED = {4043241: 1, 441267: 5, 374919: 19, 76685: 20, 257628: 21, 4310024: 40}
BIG = 4310024  # 40 participants


def ceil20(n):
    return None if n is None else -(-n // 20) * 20


@pytest.fixture()
def caller(gen_passport_server, mint_token, request):
    return Caller(gen_passport_server, mint_token, f"vl-{request.node.name}")


@pytest.fixture()
def dashboard(gen_passport_server, mint_token, request):
    return Caller(gen_passport_server, mint_token, f"vld-{request.node.name}", egress="aggregates")


def truth(duck, sql):
    return duck_query(duck, sql).to_pylist()


# Each counts, or picks a value of, the rows of one planted condition inside a cell over every
# condition row of the dataset (all participants contribute a non-NULL value).
SHAPES = {
    "sum-case-else-0": "SUM(CASE WHEN condition_concept_id = {c} THEN 1 ELSE 0 END)",
    "count-distinct-case-else-0": "COUNT(DISTINCT CASE WHEN condition_concept_id = {c} THEN person_id ELSE 0 END)",
    "avg-case-two-constants": "AVG(CASE WHEN condition_concept_id = {c} THEN 100.0 ELSE 1.0 END)",
    "max-case-else-constant": "MAX(CASE WHEN condition_concept_id = {c} THEN condition_start_date ELSE DATE '1900-01-01' END)",
    "sum-boolean-cast": "SUM(CAST(condition_concept_id = {c} AS INT))",
    "sum-coalesce-nullif": "SUM(COALESCE(NULLIF(condition_concept_id, {c}) * 0, 1))",
    "sum-step-function": "SUM(1 - ABS(SIGNUM(condition_concept_id - {c})))",
    "min-greatest": "MIN(GREATEST(condition_concept_id - {c}, 0))",
}

# DuckDB's name for SIGNUM.
ORACLE = {k: v.replace("SIGNUM", "SIGN") for k, v in SHAPES.items()}


@pytest.mark.parametrize("concept,persons", sorted(PLANTED.items()))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_row_level_a_branch_of_few_participants_suppresses_the_cell(caller, gen_duck, shape, concept, persons):
    got = caller.value(f"SELECT {SHAPES[shape].format(c=concept)} AS v FROM condition_occurrence")
    if shape == "min-greatest":
        # Every row below the planted concept gives 0: that branch is large; the other branch
        # (ids above it) decides with it. Checked against the branch sizes, not the plant.
        sizes = truth(
            gen_duck,
            f"SELECT COUNT(DISTINCT person_id) FILTER (WHERE condition_concept_id >= {concept}) AS hi, "
            f"COUNT(DISTINCT person_id) FILTER (WHERE condition_concept_id <= {concept}) AS lo FROM condition_occurrence",
        )[0]
        small = any(1 <= n <= T for n in sizes.values())
    else:
        small = persons <= T
    want = truth(gen_duck, f"SELECT {ORACLE[shape].format(c=concept)} AS v FROM condition_occurrence")[0]["v"]
    if small:
        assert got is None, (shape, concept, got)
    else:
        assert got == pytest.approx(want) if isinstance(want, float) else got == want, (got, want)


def test_row_level_branches_are_checked_per_group(caller, gen_duck):
    """Per gender: the planted 19-participant condition splits into two smaller branches."""
    c = 374919
    sql = (
        "SELECT p.gender_concept_id AS g, SUM(CASE WHEN co.condition_concept_id = {c} THEN 1 ELSE 0 END) AS v "
        "FROM condition_occurrence co JOIN person p ON p.person_id = co.person_id GROUP BY 1 ORDER BY 1"
    ).format(c=c)
    got = {r["g"]: r["v"] for r in caller.rows(sql)}
    sizes = {
        r["g"]: r["n"]
        for r in truth(
            gen_duck,
            f"SELECT p.gender_concept_id AS g, COUNT(DISTINCT co.person_id) FILTER (WHERE co.condition_concept_id = {c}) AS n "
            "FROM condition_occurrence co JOIN person p ON p.person_id = co.person_id GROUP BY 1",
        )
    }
    assert set(got) == set(sizes)
    for g, n in sizes.items():
        if 1 <= n <= T:
            assert got[g] is None, (g, n, got[g])
    assert any(1 <= n <= T for n in sizes.values())


def test_row_level_ordinary_conditional_sums_are_exact(caller, gen_duck):
    """Table 1 style: share of women among persons with a diagnosis; both branches are large."""
    sql = (
        "SELECT SUM(CASE WHEN gender_concept_id = 8532 THEN 1 ELSE 0 END) AS women, "
        "AVG(CASE WHEN gender_concept_id = 8532 THEN 1.0 ELSE 0.0 END) AS share, COUNT(*) AS n FROM person"
    )
    got = caller.rows(sql)[0]
    want = truth(gen_duck, sql)[0]
    assert got["women"] == want["women"] and got["n"] == want["n"]
    assert got["share"] == pytest.approx(float(want["share"]))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_aggregates_only_conditions_inside_aggregates_are_refused(dashboard, shape):
    message = dashboard.refused(f"SELECT {SHAPES[shape].format(c=BIG)} AS v FROM condition_occurrence", status="")
    assert "aggregates-only" in message


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT COUNT(*) FILTER (WHERE condition_concept_id = {BIG}) FROM condition_occurrence",
        "SELECT ARRAY_AGG(DISTINCT condition_concept_id) FROM condition_occurrence",
        "SELECT STRING_AGG(CAST(year_of_birth AS VARCHAR), ',') FROM person",
        "SELECT SUM(1 / (1 + (year_of_birth - 1950) * (year_of_birth - 1950))) FROM person",
        "SELECT SUM(1.0 / (1.0 + 1000000.0 * (year_of_birth - 1950) * (year_of_birth - 1950))) FROM person",
        "SELECT SUM(year_of_birth % 7) FROM person",
    ],
    ids=["filter", "array-agg", "string-agg", "integer-division-bump", "float-bump", "modulo"],
)
def test_aggregates_only_collections_filters_and_bumps_are_refused(dashboard, sql):
    dashboard.refused(sql, status="")


def test_aggregates_only_sum_of_a_constant_is_rounded_like_a_count(dashboard, gen_duck):
    n = truth(gen_duck, "SELECT COUNT(*) AS n FROM condition_occurrence")[0]["n"]
    assert dashboard.value("SELECT SUM(1) FROM condition_occurrence") == ceil20(n)
    assert n % 20 != 0, "the test would not see the rounding"


def test_aggregates_only_arithmetic_over_columns_is_allowed(dashboard, gen_duck):
    sql = "SELECT AVG(year_of_birth * 1.0 / 10.0) AS v, SUM(year_of_birth * 2) AS s FROM person"
    got = dashboard.rows(sql)[0]
    want = truth(gen_duck, sql)[0]
    assert got["v"] == pytest.approx(float(want["v"]))
    assert got["s"] == want["s"]


# --------------------------------------------------------------------------------------------------
# Window functions that are not aggregates (class 3)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("concept,persons", sorted(PLANTED.items()))
@pytest.mark.parametrize("fn", ["ROW_NUMBER()", "RANK()", "DENSE_RANK()", "NTILE(3)", "CUME_DIST()"])
def test_row_level_ranks_in_small_partitions_are_suppressed(caller, gen_duck, fn, concept, persons):
    sql = (
        f"SELECT condition_occurrence_id AS id, {fn} OVER (PARTITION BY condition_concept_id "
        f"ORDER BY condition_start_date, condition_occurrence_id) AS r FROM condition_occurrence "
        f"WHERE condition_concept_id = {concept}"
    )
    got = {r["id"]: r["r"] for r in caller.rows(sql)}
    want = {r["id"]: r["r"] for r in truth(gen_duck, sql)}
    assert set(got) == set(want)
    if persons <= T:
        assert all(v is None for v in got.values()), got
    else:
        assert got == pytest.approx(want)


def test_row_level_a_rank_counting_a_small_partition_stays_suppressed_through_an_outer_cell(caller):
    """MAX(row_number) over a small partition is its row count: the outer cell inherits it."""
    sql = (
        "SELECT p.gender_concept_id AS g, MAX(t.r) AS m FROM person p JOIN "
        "(SELECT person_id, ROW_NUMBER() OVER (PARTITION BY condition_concept_id ORDER BY condition_occurrence_id) AS r "
        " FROM condition_occurrence WHERE condition_concept_id = 441267) t ON t.person_id = p.person_id GROUP BY 1"
    )
    assert all(r["m"] is None for r in caller.rows(sql))


def test_row_level_per_person_ranks_are_exact(caller, gen_duck):
    sql = (
        "SELECT COUNT(*) AS n FROM (SELECT person_id, ROW_NUMBER() OVER (PARTITION BY person_id "
        "ORDER BY condition_start_date) AS r FROM condition_occurrence) t WHERE r = 2"
    )
    assert caller.value(sql) == truth(gen_duck, sql)[0]["n"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY condition_concept_id ORDER BY condition_start_date) AS r FROM condition_occurrence) t WHERE r > 3",
        "SELECT MAX(r) FROM (SELECT RANK() OVER (ORDER BY year_of_birth) AS r FROM person) t",
        "SELECT AVG(prev) FROM (SELECT LAG(year_of_birth) OVER (ORDER BY year_of_birth) AS prev FROM person) t",
        "SELECT AVG(f) FROM (SELECT FIRST_VALUE(year_of_birth) OVER (ORDER BY year_of_birth) AS f FROM person) t",
        "SELECT SUM(s) FROM (SELECT SUM(year_of_birth) OVER (ORDER BY year_of_birth ROWS 1 PRECEDING) AS s FROM person) t",
        "SELECT COUNT(*) FROM (SELECT NTILE(100) OVER (PARTITION BY gender_concept_id ORDER BY year_of_birth) AS q FROM person) t WHERE q = 1",
    ],
    ids=["row-number", "rank", "lag", "first-value", "sliding-sum", "ntile"],
)
def test_aggregates_only_windows_over_participant_rows_are_refused(dashboard, sql):
    dashboard.refused(sql, status="")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM (SELECT ROW_NUMBER() OVER (ORDER BY person_id) AS r FROM person) t WHERE r < 10",
        "SELECT COUNT(*) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY person_id % 10 ORDER BY year_of_birth) AS r FROM person) t",
        "SELECT COUNT(*) FROM (SELECT LAG(person_id) OVER (PARTITION BY person_id ORDER BY condition_start_date) AS r FROM condition_occurrence) t",
    ],
    ids=["order-by-key", "partition-by-key-expression", "lag-of-key"],
)
def test_aggregates_only_windows_may_not_use_the_person_key(dashboard, sql):
    dashboard.refused(sql)


def test_aggregates_only_per_person_windows_still_work(dashboard, gen_duck):
    sql = (
        "SELECT COUNT(*) AS n FROM (SELECT person_id, ROW_NUMBER() OVER (PARTITION BY person_id "
        "ORDER BY condition_start_date) AS r FROM condition_occurrence) t WHERE r = 2"
    )
    assert dashboard.value(sql) == ceil20(truth(gen_duck, sql)[0]["n"])


# --------------------------------------------------------------------------------------------------
# Each cell released on the participants it is computed from
# --------------------------------------------------------------------------------------------------

RARE, BIG_ = 441267, 4310024
THREE_COUNTS = {
    "rare": f"COUNT(*) FILTER (WHERE condition_concept_id = {RARE})",
    "both": f"COUNT(*) FILTER (WHERE condition_concept_id IN ({RARE}, {BIG_}))",
    "big": f"COUNT(*) FILTER (WHERE condition_concept_id = {BIG_})",
}


def test_row_level_cells_of_one_row_are_released_on_their_own_sets(caller, gen_duck):
    """`both - big` is the suppressed `rare` count: the three cells share one row (one group),
    so only their own participant sets tell the release that `both` is `big` plus `rare`."""
    sql = "SELECT " + ", ".join(f"{e} AS {k}" for k, e in THREE_COUNTS.items()) + " FROM condition_occurrence"
    got = caller.rows(sql)[0]
    want = truth(gen_duck, sql)[0]
    assert got["rare"] is None
    assert got["both"] is None or got["big"] is None, got
    for k in ("both", "big"):
        assert got[k] in (None, want[k])


def test_row_level_union_of_filtered_totals_is_released_on_their_own_sets(caller, gen_duck):
    sql = " UNION ALL ".join(
        f"SELECT '{k}' AS k, {e} AS n FROM condition_occurrence" for k, e in THREE_COUNTS.items()
    )
    got = {r["k"]: r["n"] for r in caller.rows(sql)}
    want = {r["k"]: r["n"] for r in truth(gen_duck, sql)}
    assert got["rare"] is None
    assert got["both"] is None or got["big"] is None, got
    for k in ("both", "big"):
        assert got[k] in (None, want[k])


# --------------------------------------------------------------------------------------------------
# The same shapes one step removed: the branch computed in a subquery or per participant
# --------------------------------------------------------------------------------------------------

REMOVED = {
    "subquery": "SELECT MAX(v) AS v FROM (SELECT CASE WHEN condition_concept_id = {c} THEN 1 ELSE 0 END AS v FROM condition_occurrence) t",
    "subquery-sum": "SELECT SUM(v) AS v FROM (SELECT CASE WHEN condition_concept_id = {c} THEN 1 ELSE 0 END AS v FROM condition_occurrence) t",
    "per-person": "SELECT SUM(m) AS v FROM (SELECT person_id, MAX(CASE WHEN condition_concept_id = {c} THEN 1 ELSE 0 END) AS m FROM condition_occurrence GROUP BY person_id) t",
    "common-subexpression": "SELECT SUM(CASE WHEN condition_concept_id = {c} THEN 1 ELSE 0 END) + MAX(CASE WHEN condition_concept_id = {c} THEN 1 ELSE 0 END) AS v FROM condition_occurrence",
    "renamed-twice": "SELECT SUM(w) AS v FROM (SELECT v + 0 AS w FROM (SELECT COALESCE(NULLIF(condition_concept_id, {c}) * 0, 1) AS v FROM condition_occurrence) a) b",
}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT SUM(gender_concept_id) FROM person",
        "SELECT AVG(race_concept_id) FROM person",
        "SELECT SUM(year_of_birth - year_of_birth + 1) FROM person",
        "SELECT SUM(year_of_birth + 1) FROM person",
        "SELECT REGR_COUNT(year_of_birth, year_of_birth) FROM person",
        "SELECT BOOL_OR(year_of_birth > 1950) FROM person",
    ],
    ids=["sum-concept-ids", "avg-concept-ids", "x-minus-x", "constant-added", "regr-count", "bool-or"],
)
def test_aggregates_only_exact_counts_in_disguise_are_refused(dashboard, sql):
    dashboard.refused(sql, status="")


def test_aggregates_only_approx_distinct_is_rounded(dashboard, gen_duck):
    n = truth(gen_duck, "SELECT COUNT(DISTINCT year_of_birth) AS n FROM person")[0]["n"]
    got = dashboard.value("SELECT APPROX_DISTINCT(year_of_birth) FROM person")
    assert got % 20 == 0 and abs(got - n) <= 20 + n // 10


@pytest.mark.parametrize("who", ["caller", "dashboard"])
def test_disclosure_controls_own_column_names_are_reserved(request, who):
    """A caller's column named like the release's participant sets would be read as one."""
    p = request.getfixturevalue(who)
    message = p.refused(
        "SELECT gender_concept_id, COUNT(*) AS n, X'3a30' AS \"__strata_cell_set_0\" FROM person GROUP BY 1",
        status="",
    )
    assert "reserved" in message


# --------------------------------------------------------------------------------------------------
# Second review: ordering, unions and windows as branches; step casts; ids renamed per person
# --------------------------------------------------------------------------------------------------

PICKED = {
    "first-value-ordered-by-case": (
        "SELECT FIRST_VALUE(condition_start_date ORDER BY CASE WHEN condition_concept_id = {c} THEN 0 ELSE 1 END, "
        "condition_occurrence_id) AS v FROM condition_occurrence",
        "SELECT first(condition_start_date ORDER BY CASE WHEN condition_concept_id = {c} THEN 0 ELSE 1 END, "
        "condition_occurrence_id) AS v FROM condition_occurrence",
    ),
    "union-as-case": (
        "SELECT MAX(v) AS v FROM (SELECT condition_start_date AS v FROM condition_occurrence WHERE condition_concept_id = {c} "
        "UNION ALL SELECT DATE '1900-01-01' AS v FROM condition_occurrence) t",
        None,
    ),
    "window-over-branch": (
        "SELECT DISTINCT MAX(y) OVER () AS v FROM (SELECT CASE WHEN condition_concept_id = {c} "
        "THEN condition_start_date ELSE DATE '1900-01-01' END AS y FROM condition_occurrence) t",
        None,
    ),
    "per-person-own-case": (
        "SELECT MAX(m) AS v FROM (SELECT person_id, MAX(CASE WHEN condition_concept_id = {c} THEN condition_start_date "
        "ELSE DATE '1900-01-01' END) AS m FROM condition_occurrence GROUP BY person_id) t",
        None,
    ),
}
# The shapes one step removed, with the query itself as its DuckDB oracle.
PICKED.update({k: (sql, None) for k, sql in REMOVED.items()})


@pytest.mark.parametrize("concept,persons", [(441267, 5), (374919, 19), (257628, 21), (4310024, 40)])
@pytest.mark.parametrize("shape", sorted(PICKED))
def test_row_level_values_picked_by_ordering_union_or_window_are_sub_cells(caller, gen_duck, shape, concept, persons):
    sql, oracle = PICKED[shape]
    got = caller.rows(sql.format(c=concept))
    want = truth(gen_duck, (oracle or sql).format(c=concept))
    assert len(got) == len(want) == 1
    if persons <= T:
        assert got[0]["v"] is None, (shape, got)
    else:
        assert got[0]["v"] == want[0]["v"]


@pytest.mark.parametrize(
    "sql",
    [PICKED[k][0].format(c=BIG) for k in sorted(PICKED)]
    + [
        "SELECT SUM(CAST(year_of_birth / 2000.0 AS INT) + month_of_birth) FROM person",
        "SELECT SUM(g) FROM (SELECT person_id, MAX(gender_concept_id) AS g FROM person GROUP BY person_id) t",
        "SELECT SUM(g) FROM (SELECT gender_concept_id AS g FROM person UNION ALL SELECT year_of_birth AS g FROM person) t",
        "SELECT FIRST_VALUE(year_of_birth ORDER BY year_of_birth) FROM person",
    ],
    ids=sorted(PICKED) + ["step-cast", "ids-per-person", "union-of-different-columns", "first-value"],
)
def test_aggregates_only_picking_and_decoding_are_refused(dashboard, sql):
    dashboard.refused(sql, status="")


def test_row_level_branch_conditions_are_evaluated_like_case(caller, gen_duck):
    """A later WHEN must not run on rows an earlier WHEN took: no division by zero."""
    sql = (
        "SELECT k, COUNT(*) AS n FROM (SELECT CASE WHEN year_of_birth - year_of_birth = 0 THEN 'none' "
        "WHEN 100 / (year_of_birth - year_of_birth) > 1 THEN 'a' ELSE 'b' END AS k FROM person) t GROUP BY k"
    )
    got = caller.rows(sql)
    total = truth(gen_duck, "SELECT COUNT(*) AS n FROM person")[0]["n"]
    assert got == [{"k": "none", "n": total}]
