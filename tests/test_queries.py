"""Research queries over Flight SQL (ADBC) compared with DuckDB on the same Parquet files; metadata,
shard pruning seen in the query log, statement policy, errors and streaming.

Aggregates keep every group above 20 participants (HAVING … > 20) so that the results stay exact
once small-cell suppression is in force.
"""

from __future__ import annotations

import adbc_driver_manager
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import GEN_SHARDS, GIBLEED_SHARDS
from generated_queries import BRCA1, GEN_QUERIES, descendants
from helpers import ALL_TABLES, assert_tables_equal, check, duck_over, duck_query

GI_BLEED = 192671
CELECOXIB = 1118084
DICLOFENAC = 1124300
ACUTE_BRONCHITIS = 260139

LOG_FIELDS = [
    "statement",
    "duration_ms",
    "rows",
    "shards_scanned",
    "shards_total",
    "files_scanned",
    "bytes_scanned",
    "row_groups_total",
    "row_groups_pruned",
    "files_pruned",
    "cache_memory_hits",
    "cache_memory_misses",
    "cache_disk_hits",
    "cache_disk_misses",
    "object_store_gets",
    "object_store_bytes",
]


# --------------------------------------------------------------------------------------------------
# Research queries on the synthetic dataset
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GEN_QUERIES))
def test_research_query_matches_duckdb(gen_server, gen_duck, name):
    check(gen_server, gen_duck, GEN_QUERIES[name])


@pytest.mark.parametrize("table", ALL_TABLES)
def test_table_row_counts(gen_server, gen_duck, table):
    check(gen_server, gen_duck, f"SELECT COUNT(*) AS n FROM {table}")


@pytest.fixture(scope="module")
def busy_person(gen_duck):
    (pid,) = gen_duck.execute(
        "SELECT person_id FROM condition_occurrence GROUP BY person_id ORDER BY COUNT(*) DESC, person_id LIMIT 1"
    ).fetchone()
    return pid


@pytest.mark.parametrize("table", ["person", "condition_occurrence", "measurement", "drug_exposure"])
def test_point_lookup_all_columns(gen_server, gen_duck, busy_person, table):
    check(gen_server, gen_duck, f"SELECT * FROM {table} WHERE person_id = {busy_person}")


def test_result_schema_types(gen_server, gen_dataset, busy_person):
    """Types survive the Flight stream: int64 person_id, int32 concept ids, date32, timestamp[us]."""
    got = gen_server.query(f"SELECT * FROM condition_occurrence WHERE person_id = {busy_person}")
    file_schema = pq.read_schema(next((gen_dataset / "condition_occurrence").rglob("*.parquet")))
    for f in file_schema:
        assert f.name in got.schema.names, f"column {f.name} missing from the result"
        assert got.schema.field(f.name).type == f.type, (
            f"{f.name}: result type {got.schema.field(f.name).type}, file type {f.type}"
        )


def test_prepared_statement_with_parameter(gen_server, gen_duck, busy_person):
    sql = (
        "SELECT person_id, condition_concept_id, condition_start_date FROM condition_occurrence "
        "WHERE person_id = ?"
    )
    (other,) = gen_duck.execute(
        "SELECT MIN(person_id) FROM condition_occurrence WHERE person_id <> ?", [busy_person]
    ).fetchone()
    for pid in (busy_person, other):
        expected = duck_query(gen_duck, sql, [pid])
        assert expected.num_rows > 0
        got = gen_server.query(sql, (pid,))
        assert_tables_equal(got, expected, sort_by=True)


def test_prepared_statement_reused_on_one_cursor(gen_server, gen_duck, busy_person):
    sql = "SELECT COUNT(*) AS n FROM condition_occurrence WHERE person_id = ?"
    conn = gen_server.connect()
    cur = conn.cursor()
    try:
        for pid in (busy_person, busy_person + 1, busy_person):
            cur.execute(sql, (pid,))
            got = cur.fetch_arrow_table()
            assert_tables_equal(got, duck_query(gen_duck, sql, [pid]))
    finally:
        cur.close()


def test_many_rows_stream_completely(gen_server, gen_duck):
    for table in ("measurement", "steps_intraday"):
        (n,) = gen_duck.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        got = gen_server.query(f"SELECT * FROM {table}")
        assert got.num_rows == n, f"{table}: streamed {got.num_rows} rows, expected {n}"
        ids = pc.count_distinct(got.column("person_id")).as_py()
        (dn,) = gen_duck.execute(f"SELECT COUNT(DISTINCT person_id) FROM {table}").fetchone()
        assert ids == dn


def test_full_measurement_rows_equal(gen_server, gen_duck):
    sql = "SELECT measurement_id, person_id, measurement_concept_id, measurement_date, value_as_number FROM measurement"
    check(gen_server, gen_duck, sql, sort_by=["measurement_id"])


# --------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------


def _objects(conn) -> dict[str, list[str]]:
    """table name → column names from adbc_get_objects()."""
    data = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    tables = {}
    for catalog in data:
        for schema in catalog.get("catalog_db_schemas") or []:
            for t in schema.get("db_schema_tables") or []:
                cols = [c["column_name"] for c in (t.get("table_columns") or [])]
                tables[t["table_name"]] = cols
    return tables


def test_get_objects_lists_tables_and_columns(gen_server, gen_dataset):
    tables = _objects(gen_server.conn())
    missing = [t for t in ALL_TABLES if t not in tables]
    assert not missing, f"adbc_get_objects lacks tables {missing}; got {sorted(tables)}"
    for t in ("person", "condition_occurrence", "variant"):
        file_cols = pq.read_schema(next((gen_dataset / t).rglob("*.parquet"))).names
        assert tables[t] == file_cols, f"{t}: get_objects columns {tables[t]} != parquet columns {file_cols}"


def test_get_table_schema_matches_parquet(gen_server, gen_dataset):
    for t in ("person", "measurement", "genotype", "concept"):
        got = gen_server.conn().adbc_get_table_schema(t)
        want = pq.read_schema(next((gen_dataset / t).rglob("*.parquet")))
        assert got.names == want.names, f"{t}: {got.names} != {want.names}"
        for f in want:
            assert got.field(f.name).type == f.type, f"{t}.{f.name}: {got.field(f.name).type} != {f.type}"


def test_get_table_types(gen_server):
    types = gen_server.conn().adbc_get_table_types()
    assert types, "adbc_get_table_types returned nothing"


def test_get_info_reports_vendor(gen_server):
    info = gen_server.conn().adbc_get_info()
    assert info.get("driver_name"), f"no driver_name in {info}"
    vendor = info.get("vendor_name")
    assert vendor and "strata" in str(vendor).lower(), f"vendor_name should name Strata: {info}"
    assert info.get("vendor_version"), f"no vendor_version in {info}"


# --------------------------------------------------------------------------------------------------
# Query log and pruning
# --------------------------------------------------------------------------------------------------


def _shard_of(dataset, table, pid) -> int:
    for k in range(GEN_SHARDS):
        for f in (dataset / table / f"shard={k}").glob("*.parquet"):
            ids = pq.read_table(f, columns=["person_id"]).column("person_id")
            if pc.any(pc.equal(ids, pid)).as_py():
                return k
    raise AssertionError(f"person {pid} not in any {table} shard")


def test_query_log_record_fields(gen_server):
    t, rec = gen_server.query_with_record("SELECT COUNT(*) AS n FROM person")
    assert rec.get("message") == "query"
    missing = [f for f in LOG_FIELDS if f not in rec]
    assert not missing, f"query log line lacks top-level fields {missing}: {rec}"
    for f in LOG_FIELDS[1:]:
        assert isinstance(rec[f], (int, float)) and not isinstance(rec[f], bool), f"{f} not a number: {rec}"
    assert rec["rows"] == t.num_rows == 1
    assert rec["shards_total"] == GEN_SHARDS, rec
    serving = [r for r in gen_server.log_records() if r.get("message") == "serving"]
    assert serving, "no startup log line with \"message\": \"serving\""


def test_point_lookup_scans_one_shard(gen_server, gen_duck, busy_person):
    sql = f"SELECT * FROM condition_occurrence WHERE person_id = {busy_person}"
    t, rec = gen_server.query_with_record(sql)
    assert t.num_rows > 0
    assert rec["rows"] == t.num_rows, rec
    assert rec["shards_total"] == GEN_SHARDS, rec
    assert rec["shards_scanned"] == 1, f"point lookup scanned {rec['shards_scanned']} shards: {rec}"


def test_in_list_scans_at_most_two_shards(gen_server, gen_dataset, gen_duck):
    ids = [r[0] for r in gen_duck.execute("SELECT person_id FROM person ORDER BY person_id").fetchall()]
    a = ids[0]
    sa = _shard_of(gen_dataset, "person", a)
    b = next(p for p in ids[1:200] if _shard_of(gen_dataset, "person", p) != sa)
    sql = f"SELECT person_id, year_of_birth FROM person WHERE person_id IN ({a}, {b})"
    t, rec = gen_server.query_with_record(sql)
    assert t.num_rows == 2
    assert rec["shards_scanned"] <= 2, f"IN list of two persons scanned {rec['shards_scanned']} shards: {rec}"
    assert rec["shards_total"] == GEN_SHARDS


def test_gene_region_reads_far_less_than_full_scan(gen_server):
    _, full = gen_server.query_with_record("SELECT * FROM variant")
    _, region = gen_server.query_with_record(
        f"SELECT * FROM variant WHERE contig = '{BRCA1[0]}' AND position BETWEEN {BRCA1[1]} AND {BRCA1[2]}"
    )
    assert full["bytes_scanned"] > 0, f"full scan reports no bytes scanned: {full}"
    assert region["bytes_scanned"] < 0.25 * full["bytes_scanned"], (
        f"region query scanned {region['bytes_scanned']} bytes vs full scan {full['bytes_scanned']}"
    )
    assert region["files_scanned"] < full["files_scanned"], (full, region)


# --------------------------------------------------------------------------------------------------
# Errors and statement policy
# --------------------------------------------------------------------------------------------------


def _error_of(server, sql) -> adbc_driver_manager.Error:
    with pytest.raises(adbc_driver_manager.Error) as info:
        server.query(sql)
    return info.value


def _assert_clean_message(err, *mention):
    msg = str(err).strip()
    assert "panicked" not in msg, msg
    assert "\n" not in msg, f"error message spans several lines:\n{msg}"
    for m in mention:
        assert m.lower() in msg.lower(), f"error should mention {m!r}: {msg}"


def test_syntax_error(gen_server):
    err = _error_of(gen_server, "SELEC person_id FROM person")
    _assert_clean_message(err)
    assert gen_server.alive()


def test_unknown_table(gen_server):
    err = _error_of(gen_server, "SELECT * FROM no_such_table")
    _assert_clean_message(err, "no_such_table")


def test_unknown_column(gen_server):
    err = _error_of(gen_server, "SELECT no_such_column FROM person")
    _assert_clean_message(err, "no_such_column")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE x (a INT)",
        "CREATE TABLE y AS SELECT * FROM person",
        "INSERT INTO person (person_id) VALUES (1)",
        "DELETE FROM person",
        "DROP TABLE person",
        "CREATE VIEW v AS SELECT * FROM person",
        "SET datafusion.execution.batch_size = 1",
        "CREATE FUNCTION f(a INT) RETURNS INT RETURN a + 1",
    ],
)
def test_non_query_statements_refused(gen_server, sql):
    _error_of(gen_server, sql)
    assert gen_server.query("SELECT COUNT(*) AS n FROM person").column("n")[0].as_py() > 0


def test_copy_to_file_refused(gen_server, tmp_work):
    target = tmp_work / "leak.parquet"
    _error_of(gen_server, f"COPY person TO '{target}' STORED AS PARQUET")
    _error_of(gen_server, f"COPY (SELECT * FROM person) TO '{target}'")
    assert not target.exists(), "COPY wrote a file"


def test_create_external_table_refused(gen_server, gen_dataset):
    loc = gen_dataset / "person" / "shard=0"
    _error_of(gen_server, f"CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION '{loc}/'")
    _error_of(gen_server, "SELECT * FROM ext")


def test_reading_files_by_path_refused(gen_server, gen_dataset):
    f = next((gen_dataset / "person").rglob("*.parquet"))
    _error_of(gen_server, f"SELECT * FROM '{f}'")
    _error_of(gen_server, "SELECT * FROM '/etc/passwd'")


def test_server_survives_errors(gen_server):
    for sql in ("SELEC", "SELECT * FROM nope", "SELECT CAST('x' AS INT)"):
        with pytest.raises(adbc_driver_manager.Error):
            gen_server.query(sql)
    assert gen_server.alive()
    assert gen_server.query("SELECT 1 AS one").num_rows == 1
    assert "panicked" not in gen_server.stderr()


# --------------------------------------------------------------------------------------------------
# GiBleed (real OMOP CDM 5.3 data, imported)
# --------------------------------------------------------------------------------------------------

GIBLEED_QUERIES = {
    "gi_bleed_by_gender_and_period": f"""
        SELECT p.gender_concept_id AS gender,
               CASE WHEN EXTRACT(YEAR FROM co.condition_start_date) < 1990 THEN 'before 1990'
                    WHEN EXTRACT(YEAR FROM co.condition_start_date) < 2000 THEN '1990s'
                    WHEN EXTRACT(YEAR FROM co.condition_start_date) < 2010 THEN '2000s'
                    ELSE '2010 and later' END AS period,
               COUNT(DISTINCT co.person_id) AS persons,
               COUNT(*) AS occurrences
        FROM condition_occurrence co
        JOIN person p ON p.person_id = co.person_id
        WHERE co.condition_concept_id IN {descendants(GI_BLEED)}
        GROUP BY 1, 2
        HAVING COUNT(DISTINCT co.person_id) > 20
    """,
    "gi_bleed_first_diagnosis_per_person": f"""
        SELECT person_id, MIN(condition_start_date) AS first_dx, COUNT(*) AS n
        FROM condition_occurrence
        WHERE condition_concept_id IN {descendants(GI_BLEED)}
        GROUP BY person_id
    """,
    "nsaid_users": f"""
        SELECT ca.ancestor_concept_id AS ingredient, c.concept_name,
               COUNT(DISTINCT de.person_id) AS users, COUNT(*) AS exposures
        FROM drug_exposure de
        JOIN concept_ancestor ca ON ca.descendant_concept_id = de.drug_concept_id
        JOIN concept c ON c.concept_id = ca.ancestor_concept_id
        WHERE ca.ancestor_concept_id IN ({CELECOXIB}, {DICLOFENAC})
        GROUP BY ca.ancestor_concept_id, c.concept_name
        HAVING COUNT(DISTINCT de.person_id) > 20
    """,
    "gi_bleed_after_nsaid": f"""
        SELECT DISTINCT co.person_id
        FROM condition_occurrence co
        JOIN drug_exposure de ON de.person_id = co.person_id
        WHERE co.condition_concept_id IN {descendants(GI_BLEED)}
          AND de.drug_concept_id IN (SELECT descendant_concept_id FROM concept_ancestor
                                     WHERE ancestor_concept_id IN ({CELECOXIB}, {DICLOFENAC}))
          AND co.condition_start_date BETWEEN de.drug_exposure_start_date
                                          AND de.drug_exposure_start_date + INTERVAL '90 days'
    """,
    "acute_bronchitis_by_gender": f"""
        SELECT p.gender_concept_id AS gender, COUNT(DISTINCT co.person_id) AS persons
        FROM condition_occurrence co JOIN person p ON p.person_id = co.person_id
        WHERE co.condition_concept_id IN {descendants(ACUTE_BRONCHITIS)}
        GROUP BY p.gender_concept_id
        HAVING COUNT(DISTINCT co.person_id) > 20
    """,
    "measurement_summary_by_concept": """
        SELECT measurement_concept_id, COUNT(*) AS n, COUNT(DISTINCT person_id) AS persons,
               AVG(value_as_number) AS mean_value
        FROM measurement
        GROUP BY measurement_concept_id
        HAVING COUNT(DISTINCT person_id) > 20
    """,
}

GIBLEED_TABLES = [
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "concept",
    "concept_ancestor",
]


@pytest.mark.parametrize("name", list(GIBLEED_QUERIES))
def test_gibleed_query_matches_duckdb(gibleed_server, gibleed_duck, name):
    check(gibleed_server, gibleed_duck, GIBLEED_QUERIES[name], float_tol=1e-6)


@pytest.mark.parametrize("table", GIBLEED_TABLES)
def test_gibleed_row_counts(gibleed_server, gibleed_duck, table):
    check(gibleed_server, gibleed_duck, f"SELECT COUNT(*) AS n FROM {table}")


def test_gibleed_counts_match_source_files(gibleed_server, gibleed_source):
    """The imported dataset answers like the original export (import fidelity seen through queries)."""
    src = duck_over(gibleed_source)
    for sql in (
        GIBLEED_QUERIES["gi_bleed_by_gender_and_period"],
        GIBLEED_QUERIES["nsaid_users"],
        "SELECT COUNT(*) AS n, COUNT(DISTINCT person_id) AS persons FROM condition_occurrence",
        "SELECT COUNT(*) AS n FROM drug_exposure",
    ):
        check(gibleed_server, src, sql)


def test_gibleed_point_lookup_and_pruning(gibleed_server, gibleed_duck):
    (pid,) = gibleed_duck.execute(
        f"SELECT MIN(person_id) FROM condition_occurrence WHERE condition_concept_id IN {descendants(GI_BLEED)}"
    ).fetchone()
    sql = f"SELECT * FROM condition_occurrence WHERE person_id = {pid}"
    expected = duck_query(gibleed_duck, sql)
    got, rec = gibleed_server.query_with_record(sql)
    assert_tables_equal(got, expected, sort_by=True)
    assert rec["shards_total"] == GIBLEED_SHARDS, rec
    assert rec["shards_scanned"] == 1, rec


def test_gibleed_prepared_statement(gibleed_server, gibleed_duck):
    sql = "SELECT drug_concept_id, drug_exposure_start_date FROM drug_exposure WHERE person_id = ?"
    (pid,) = gibleed_duck.execute("SELECT MIN(person_id) FROM drug_exposure").fetchone()
    assert_tables_equal(gibleed_server.query(sql, (pid,)), duck_query(gibleed_duck, sql, [pid]), sort_by=True)
