"""Tier views and egress modes (DESIGN.md "Tiers", "Passports"), through the real ADBC driver.

A registered caller sees every participant date shifted back by a per-participant offset of
1..365 days (the same in every table, stable across restarts), generalized demographics, no
controlled columns and nobody aged 89+. The controlled caller sees real values; DuckDB over the
Parquet files is the oracle for who is left out and how demographics generalize. Filters on shifted
dates still prune row groups. Aggregates-only principals get no row-level results.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest

from helpers import assert_permission_denied, duck_query, one_line_error, run_sql, run_strata

NOT_A_RACE = (0, 903096, 903079, 1586147)
RACE_QUESTION = 1586140
MORE_THAN_ONE = 2000000008
ANOTHER_SINGLE = 2000000001
GENDER_GENERALIZED = 2000000002
MIN_RACE_GROUP = 200


@pytest.fixture(scope="module")
def tokens(mint_token) -> dict[str, str]:
    return {
        "controlled": mint_token("controlled", "carol", "--ttl", "1d"),
        "registered": mint_token("registered", "rita", "--ttl", "1d"),
        "public": mint_token("public", "pat", "--ttl", "1d"),
        "dashboard": mint_token("controlled", "dash", "--egress", "aggregates", "--ttl", "1d"),
    }


def q(server, token, sql) -> list[dict]:
    return run_sql(server, token, sql).to_pylist()


def days(d) -> int:
    if isinstance(d, dt.datetime):
        return (d - dt.datetime(1970, 1, 1, tzinfo=d.tzinfo)).days
    return (d - dt.date(1970, 1, 1)).days


def offsets(server, tokens, table, key, column) -> dict[int, set[int]]:
    """person → set of (real - registered) day differences for `column` of `table`."""
    sql = f"SELECT {key} AS k, person_id, {column} AS d FROM {table} WHERE {column} IS NOT NULL"
    real = {r["k"]: r for r in q(server, tokens["controlled"], sql)}
    shifted = q(server, tokens["registered"], sql)
    assert shifted, f"no registered rows in {table}"
    out: dict[int, set[int]] = defaultdict(set)
    for r in shifted:
        c = real[r["k"]]
        assert c["person_id"] == r["person_id"]
        delta = c["d"] - r["d"]
        if isinstance(delta, dt.timedelta):
            assert delta.seconds == 0 and delta.microseconds == 0, f"{table}.{column}: not whole days"
            delta = delta.days
        out[r["person_id"]].add(delta)
    return out


# --------------------------------------------------------------------------------------------------
# Date shift
# --------------------------------------------------------------------------------------------------


def test_registered_dates_shift_by_one_offset_per_person_across_tables(gen_passport_server, tokens):
    per_table = {
        "condition_start_date": offsets(gen_passport_server, tokens, "condition_occurrence", "condition_occurrence_id", "condition_start_date"),
        "condition_start_datetime": offsets(gen_passport_server, tokens, "condition_occurrence", "condition_occurrence_id", "condition_start_datetime"),
        "measurement_date": offsets(gen_passport_server, tokens, "measurement", "measurement_id", "measurement_date"),
        "visit_start_date": offsets(gen_passport_server, tokens, "visit_occurrence", "visit_occurrence_id", "visit_start_date"),
        "observation_period_end_date": offsets(gen_passport_server, tokens, "observation_period", "observation_period_id", "observation_period_end_date"),
        "death_date": offsets(gen_passport_server, tokens, "death", "person_id", "death_date"),
    }
    person_offset: dict[int, int] = {}
    for column, by_person in per_table.items():
        for person, deltas in by_person.items():
            assert len(deltas) == 1, f"{column}: person {person} has several offsets {deltas}"
            (delta,) = deltas
            assert 1 <= delta <= 365, f"{column}: offset {delta} out of 1..365"
            assert person_offset.setdefault(person, delta) == delta, f"person {person}: {column} differs"
    # Offsets are per person, not one constant.
    assert len(set(person_offset.values())) > 100


def test_registered_intervals_within_a_person_are_preserved(gen_passport_server, tokens):
    sql = "SELECT person_id, condition_start_date AS d FROM condition_occurrence"

    def spans(rows):
        lo, hi = {}, {}
        for r in rows:
            p = r["person_id"]
            lo[p] = min(lo.get(p, r["d"]), r["d"])
            hi[p] = max(hi.get(p, r["d"]), r["d"])
        return {p: hi[p] - lo[p] for p in lo}

    real = spans(q(gen_passport_server, tokens["controlled"], sql))
    shifted = spans(q(gen_passport_server, tokens["registered"], sql))
    assert shifted and any(v.days > 0 for v in shifted.values())
    for p, span in shifted.items():
        assert span == real[p]


def test_registered_offsets_survive_a_restart(gen_passport_server, tokens):
    sql = "SELECT condition_occurrence_id, condition_start_date FROM condition_occurrence ORDER BY 1 LIMIT 500"
    before = q(gen_passport_server, tokens["registered"], sql)
    gen_passport_server.restart()
    after = q(gen_passport_server, tokens["registered"], sql)
    assert before == after and len(before) == 500


def test_registered_date_filter_is_exact_and_prunes(gen_passport_server, tokens):
    all_dates = [
        r["d"]
        for r in q(gen_passport_server, tokens["registered"], "SELECT condition_start_date AS d FROM condition_occurrence")
    ]
    cut = sorted(all_dates)[len(all_dates) // 2]
    for op, pred in ((">=", lambda d: d >= cut), ("<", lambda d: d < cut), ("=", lambda d: d == cut)):
        got = len(
            q(
                gen_passport_server,
                tokens["registered"],
                f"SELECT condition_occurrence_id FROM condition_occurrence WHERE condition_start_date {op} DATE '{cut}'",
            )
        )
        assert got == sum(1 for d in all_dates if pred(d)), op
    # A range past every real date: every file (by its footer statistics) or else every row group
    # is pruned, as for controlled.
    conn = gen_passport_server.connect(token=tokens["registered"])
    cur = conn.cursor()
    sql = "SELECT COUNT(*) AS n FROM condition_occurrence WHERE condition_start_date >= DATE '2031-01-01'"
    before = len(gen_passport_server.query_records())
    cur.execute(sql)
    assert cur.fetch_arrow_table().to_pylist() == [{"n": 0}]
    cur.close()
    rec = None
    for _ in range(100):
        recs = [r for r in gen_passport_server.query_records()[before:] if r.get("statement") == sql]
        if recs:
            rec = recs[-1]
            break
        import time

        time.sleep(0.05)
    assert rec is not None, "no query log record"
    assert rec["files_pruned"] + rec["row_groups_total"] > 0, rec
    assert rec["row_groups_pruned"] == rec["row_groups_total"], rec
    assert rec["bytes_scanned"] < 20_000, rec


# --------------------------------------------------------------------------------------------------
# Who is left out, what is generalized, what is hidden
# --------------------------------------------------------------------------------------------------


def test_registered_leaves_out_participants_aged_89_or_more(gen_passport_server, tokens, gen_duck):
    oldest = dt.date.today().year - 89
    excluded = {r["person_id"] for r in duck_query(gen_duck, f"SELECT person_id FROM person WHERE year_of_birth <= {oldest}").to_pylist()}
    everyone = {r["person_id"] for r in duck_query(gen_duck, "SELECT person_id FROM person").to_pylist()}
    assert excluded, "the dataset has nobody aged 89+: the test would prove nothing"
    seen = {r["person_id"] for r in q(gen_passport_server, tokens["registered"], "SELECT person_id FROM person")}
    assert seen == everyone - excluded
    for table in ("condition_occurrence", "measurement", "observation", "ds_survey", "visit_occurrence"):
        rows = q(gen_passport_server, tokens["registered"], f"SELECT DISTINCT person_id FROM {table}")
        assert rows and not ({r["person_id"] for r in rows} & excluded), table
    # Controlled sees everyone.
    n = q(gen_passport_server, tokens["controlled"], "SELECT COUNT(*) AS n FROM person")[0]["n"]
    assert n == len(everyone)


def test_registered_demographics_are_generalized(gen_passport_server, tokens, gen_duck):
    not_race = ",".join(map(str, NOT_A_RACE))
    multi = {
        r["person_id"]
        for r in duck_query(
            gen_duck,
            f"SELECT person_id FROM ds_survey WHERE question_concept_id = {RACE_QUESTION} "
            f"AND answer_concept_id NOT IN ({not_race}) GROUP BY person_id "
            "HAVING COUNT(DISTINCT answer_concept_id) > 1",
        ).to_pylist()
    }
    counts = {
        r["race_concept_id"]: r["n"]
        for r in duck_query(gen_duck, "SELECT race_concept_id, COUNT(DISTINCT person_id) AS n FROM person GROUP BY 1").to_pylist()
    }
    rare = {c for c, n in counts.items() if c not in NOT_A_RACE and n < MIN_RACE_GROUP}
    assert multi and rare, "the dataset exercises neither rule"
    real = {r["person_id"]: r for r in duck_query(gen_duck, "SELECT person_id, race_concept_id, gender_concept_id FROM person").to_pylist()}
    got = q(gen_passport_server, tokens["registered"], "SELECT person_id, race_concept_id, gender_concept_id FROM person")
    for r in got:
        race = real[r["person_id"]]["race_concept_id"]
        if race in NOT_A_RACE:
            want = race
        elif r["person_id"] in multi:
            want = MORE_THAN_ONE
        elif race in rare:
            want = ANOTHER_SINGLE
        else:
            want = race
        assert r["race_concept_id"] == want, r
        assert r["gender_concept_id"] in (8507, 8532, GENDER_GENERALIZED)
    values = {r["race_concept_id"] for r in got}
    assert not (values & rare), "a rare race is still visible"
    # Survey answers: one generalized race row per participant of more than one race.
    rows = q(
        gen_passport_server,
        tokens["registered"],
        f"SELECT person_id, answer_concept_id, answer FROM ds_survey WHERE question_concept_id = {RACE_QUESTION} "
        f"AND answer_concept_id NOT IN ({not_race})",
    )
    per_person = defaultdict(list)
    for r in rows:
        per_person[r["person_id"]].append(r)
    for p in multi & set(per_person):
        assert len(per_person[p]) == 1, per_person[p]
        assert per_person[p][0]["answer_concept_id"] == MORE_THAN_ONE
        assert per_person[p][0]["answer"] == "More than one population"


def test_registered_person_has_no_controlled_columns(gen_passport_server, tokens):
    t = run_sql(gen_passport_server, tokens["registered"], "SELECT * FROM person LIMIT 3")
    for hidden in ("birth_datetime", "month_of_birth", "day_of_birth", "location_id"):
        assert hidden not in t.column_names
    assert "year_of_birth" in t.column_names
    controlled = run_sql(gen_passport_server, tokens["controlled"], "SELECT * FROM person LIMIT 3")
    assert "birth_datetime" in controlled.column_names


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT birth_datetime FROM person",
        "SELECT p.month_of_birth FROM person p",
        "SELECT COUNT(*) FROM person WHERE day_of_birth = 1",
        "SELECT COUNT(*) FROM condition_occurrence c JOIN person p USING (person_id) WHERE p.location_id IS NULL",
    ],
)
def test_registered_naming_a_controlled_column_is_denied(gen_passport_server, tokens, sql):
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, tokens["registered"], sql)
    assert_permission_denied(err.value)
    assert "controlled" in str(err.value)


def test_get_tables_shows_the_registered_schema(gen_passport_server, tokens):
    conn = gen_passport_server.connect(token=tokens["registered"])
    schema = conn.adbc_get_table_schema("person")
    assert "birth_datetime" not in schema.names and "person_id" in schema.names
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    names = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert "person" in names and "genotype" not in names and "variant" not in names


# --------------------------------------------------------------------------------------------------
# Egress modes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["public", "dashboard"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT person_id FROM person",
        "SELECT * FROM condition_occurrence LIMIT 1",
        "SELECT DISTINCT person_id FROM measurement",
        "SELECT concept_name FROM concept WHERE concept_id IN (SELECT condition_concept_id FROM condition_occurrence WHERE person_id = 1)",
        "SELECT concept_name FROM concept WHERE EXISTS (SELECT 1 FROM condition_occurrence c WHERE c.condition_concept_id = concept.concept_id AND c.person_id = 1)",
        "SELECT (SELECT year_of_birth FROM person LIMIT 1) AS y",
        "SELECT person_id, ROW_NUMBER() OVER (ORDER BY person_id) FROM person",
        "SELECT person_id FROM person UNION ALL SELECT 1",
    ],
    ids=["column", "star", "distinct", "in-subquery", "exists", "scalar-subquery", "window", "union"],
)
def test_aggregates_only_principals_get_no_row_level_results(gen_passport_server, tokens, who, sql):
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, tokens[who], sql)
    assert_permission_denied(err.value)
    text = str(err.value)
    if who == "dashboard":  # the public tier is refused earlier, on the table's tier
        assert "aggregates-only" in text


def test_aggregates_only_principal_gets_aggregates(gen_passport_server, tokens, gen_duck):
    got = q(gen_passport_server, tokens["dashboard"], "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1 ORDER BY 1")
    want = duck_query(gen_duck, "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1 ORDER BY 1").to_pylist()
    # Aggregates-only principals get counts rounded up to a multiple of 20.
    assert got == [{**w, "n": -(-w["n"] // 20) * 20} for w in want]
    # Public vocabulary rows are not participant data.
    assert q(gen_passport_server, tokens["public"], "SELECT concept_id FROM concept WHERE concept_id = 201826") == [
        {"concept_id": 201826}
    ]


@pytest.fixture(scope="module")
def capped_server(gen_dataset, start_passport_server):
    """A server of its own: its egress caps and alerts are in its config."""
    egress = "[egress]\nalert_rows = 100\nalert_bytes = 100000000\nmax_rows = 1000\nmax_bytes = 1000000000\n"
    srv = start_passport_server(gen_dataset, "capped", egress)
    yield srv
    srv.stop()


def test_egress_alert_on_large_row_level_result(capped_server, tokens):
    t = run_sql(capped_server, tokens["registered"], "SELECT person_id FROM person ORDER BY person_id LIMIT 500")
    assert t.num_rows == 500
    alerts = [r for r in capped_server.log_records() if "egress alert" in str(r.get("message", ""))]
    assert alerts and alerts[-1]["level"] == "WARN" and alerts[-1]["egress_alerts_total"] >= 1
    # Aggregates never alert.
    n_alerts = len(alerts)
    run_sql(capped_server, tokens["registered"], "SELECT person_id % 700 AS k, COUNT(*) FROM person GROUP BY 1")
    assert len([r for r in capped_server.log_records() if "egress alert" in str(r.get("message", ""))]) == n_alerts


def test_egress_cap_stops_the_stream(capped_server, tokens):
    with pytest.raises(Exception) as err:
        run_sql(capped_server, tokens["controlled"], "SELECT * FROM condition_occurrence")
    text = str(err.value)
    assert "egress cap" in text and "resource" in text.lower().replace("_", "")
    # A result under the cap still works.
    assert run_sql(capped_server, tokens["controlled"], "SELECT person_id FROM person LIMIT 900").num_rows == 900


def test_bad_config_is_a_one_line_error(gen_dataset, tmp_work):
    bad = tmp_work / "bad.toml"
    bad.write_text("[egress]\nalert_rows = 10\nmax_rows = 5\n")
    proc = run_strata("serve", "--dataset", gen_dataset, "--config", bad, "--listen", "127.0.0.1:0", check=False)
    assert proc.returncode != 0
    one_line_error(proc, "config")
    bad.write_text("[egress]\nalert_rowz = 10\n")
    proc = run_strata("serve", "--dataset", gen_dataset, "--config", bad, "--listen", "127.0.0.1:0", check=False)
    assert proc.returncode != 0
    one_line_error(proc, "alert_rowz")
