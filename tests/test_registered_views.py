"""Registered views leak nothing of what they hide (issue 17, class 7), adversarially.

- The views' row filter (nobody aged 89+) runs before any expression of the caller: an
  expression that fails only on a hidden row must not fail, whatever shape carries it (WHERE, a
  join condition, a CASE in the SELECT list, an aggregate's argument, a person-key lookup that
  prunes), and the answer equals DuckDB's over the visible participants.
- Source values of demographics (free text and source concepts) are generalized like the standard
  concepts, and also when the source value itself is rare: GiBleed's race source value "other"
  (two participants, race concept 0) and its ancestries in `ethnicity_source_value`.
- Dates written as text (GiBleed's `measurement_time`, OMOP 5.3) are shifted by the same offset
  as the participant's date columns.
"""

from __future__ import annotations

import datetime as dt

import pytest

from helpers import duck_query, run_sql

MIN_GROUP = 200
GENERALIZED_LABELS = {"Another single population", "Another ethnicity",
                      "Not man only, not woman only, prefer not to answer, or skipped"}


@pytest.fixture(scope="module")
def registered(mint_token) -> str:
    return mint_token("registered", "vera", "--ttl", "1d")


@pytest.fixture(scope="module")
def controlled(mint_token) -> str:
    return mint_token("controlled", "cleo", "--ttl", "1d")


def oldest_visible_year() -> int:
    return dt.date.today().year - 89 + 1


def hidden_year(duck) -> int:
    """A year of birth only participants aged 89+ hold."""
    row = duck_query(duck, f"SELECT MAX(year_of_birth) AS y FROM person WHERE year_of_birth < {oldest_visible_year()}").to_pylist()[0]
    assert row["y"] is not None, "the dataset has nobody aged 89+: the test would prove nothing"
    return row["y"]


def visible_answer(duck, table_sql: str) -> list:
    rows = duck_query(duck, table_sql.format(visible=f"p.year_of_birth >= {oldest_visible_year()}")).to_pylist()
    return sorted(r["n"] for r in rows)


# Each query divides by zero, or casts 'x' to a number, only on the rows of participants the
# registered tier hides. {y} is a year of birth only they hold.
PROBES = {
    "where": (
        "SELECT COUNT(*) AS n FROM person WHERE 100 / (year_of_birth - {y}) > -1000",
        "SELECT COUNT(*) AS n FROM person p WHERE {visible}",
    ),
    "select-case": (
        "SELECT COUNT(CAST(CASE WHEN year_of_birth = {y} THEN 'x' ELSE '1' END AS INT)) AS n FROM person",
        "SELECT COUNT(*) AS n FROM person p WHERE {visible}",
    ),
    "aggregate-argument": (
        "SELECT COUNT(*) AS n FROM (SELECT SUM(1 / (year_of_birth - {y})) AS s FROM person GROUP BY gender_concept_id) t",
        "SELECT COUNT(DISTINCT gender_concept_id) AS n FROM person p WHERE {visible}",
    ),
    "join-condition": (
        "SELECT COUNT(*) AS n FROM person p JOIN condition_occurrence c "
        "ON c.person_id = p.person_id AND 100 / (p.year_of_birth - {y}) > -1000",
        "SELECT COUNT(*) AS n FROM person p JOIN condition_occurrence c ON c.person_id = p.person_id WHERE {visible}",
    ),
    "person-key-lookup": (
        "SELECT person_id AS n FROM person WHERE person_id IN ({ids}) AND 100 / (year_of_birth - {y}) > -1000",
        "SELECT person_id AS n FROM person p WHERE person_id IN ({ids}) AND {visible}",
    ),
    "subquery": (
        "SELECT COUNT(*) AS n FROM condition_occurrence WHERE person_id IN "
        "(SELECT person_id FROM person WHERE CAST(CASE WHEN year_of_birth = {y} THEN 'x' ELSE '1' END AS INT) = 1)",
        "SELECT COUNT(*) AS n FROM condition_occurrence c JOIN person p ON c.person_id = p.person_id WHERE {visible}",
    ),
}


@pytest.mark.parametrize("data", ["gen", "gibleed"])
@pytest.mark.parametrize("shape", sorted(PROBES))
def test_callers_expressions_never_see_hidden_rows(request, data, shape, registered):
    server = request.getfixturevalue(f"{data}_passport_server")
    duck = request.getfixturevalue(f"{data}_duck")
    y = hidden_year(duck)
    # Some hidden and some visible participants, so that the lookup reads both kinds of rows.
    ids = ",".join(
        str(r["person_id"])
        for r in duck_query(
            duck,
            f"(SELECT person_id FROM person WHERE year_of_birth = {y} LIMIT 3) UNION ALL "
            f"(SELECT person_id FROM person WHERE year_of_birth >= {oldest_visible_year()} ORDER BY person_id LIMIT 3)",
        ).to_pylist()
    )
    probe, oracle = PROBES[shape]
    got = sorted(r["n"] for r in run_sql(server, registered, probe.format(y=y, ids=ids)).to_pylist())
    want = visible_answer(duck, oracle.replace("{ids}", ids))
    assert got == want and want, (got, want)


def test_the_probes_do_fail_on_hidden_rows(gen_passport_server, gen_duck, controlled):
    """Without the view (controlled tier sees everyone) the same expression fails: the test
    above proves the order of evaluation, not a lenient division."""
    y = hidden_year(gen_duck)
    with pytest.raises(Exception):
        run_sql(gen_passport_server, controlled, PROBES["where"][0].format(y=y, ids="0"))


@pytest.mark.parametrize("column", ["race_source_value", "ethnicity_source_value", "gender_source_value"])
def test_source_values_of_small_groups_are_generalized(gibleed_passport_server, gibleed_duck, registered, column):
    sizes = {
        r["v"]: r["n"]
        for r in duck_query(gibleed_duck, f"SELECT {column} AS v, COUNT(DISTINCT person_id) AS n FROM person GROUP BY 1").to_pylist()
    }
    small = {v for v, n in sizes.items() if v is not None and n < MIN_GROUP}
    rows = run_sql(gibleed_passport_server, registered, f"SELECT person_id, {column} AS v FROM person").to_pylist()
    shown = {r["v"] for r in rows}
    assert not (shown & small), f"small {column} groups shown verbatim: {sorted(shown & small)}"
    real = {r["person_id"]: r["v"] for r in duck_query(gibleed_duck, f"SELECT person_id, {column} AS v FROM person").to_pylist()}
    for r in rows:
        if real[r["person_id"]] in small:
            assert r["v"] in GENERALIZED_LABELS, r
    if column != "gender_source_value":
        assert small, f"GiBleed has no small {column} group: the test would prove nothing"


def test_race_source_value_other_is_not_a_group_of_two(gibleed_passport_server, registered):
    counts = run_sql(
        gibleed_passport_server, registered,
        "SELECT race_source_value, COUNT(*) AS n FROM person GROUP BY 1",
    ).to_pylist()
    assert "other" not in {r["race_source_value"] for r in counts}


def test_dates_written_as_text_are_shifted_like_dates(gibleed_passport_server, registered, controlled):
    # GiBleed repeats measurement ids: rows are paired by (id, person, concept) where that is unique.
    sql = ("SELECT measurement_id, person_id, measurement_concept_id AS c, measurement_date AS d, "
           "measurement_time AS t FROM measurement WHERE measurement_time IS NOT NULL")

    def by_key(rows):
        out: dict = {}
        for r in rows:
            out.setdefault((r["measurement_id"], r["person_id"], r["c"]), []).append(r)
        return {k: v[0] for k, v in out.items() if len(v) == 1}

    real = by_key(run_sql(gibleed_passport_server, controlled, sql).to_pylist())
    shifted = by_key(run_sql(gibleed_passport_server, registered, sql).to_pylist())
    paired = [(real[k], r) for k, r in shifted.items() if k in real]
    assert len(paired) > 1000
    for c, r in paired:
        offset = (c["d"] - r["d"]).days
        assert 1 <= offset <= 365, (c, r)
        real_t = dt.date.fromisoformat(c["t"][:10])
        shown_t = dt.date.fromisoformat(r["t"][:10])
        assert (real_t - shown_t).days == offset, (c, r)
