"""Federation (DESIGN.md, "Scale-out"; README "Federation"): tables of a remote Flight SQL source
registered in `catalog.toml` as a store, tested against a second Strata server on 127.0.0.1.

The remote serves the synthetic dataset; the local server serves the same files through a
`file://` store plus `remote_*` tables that name the remote's tables. The same statement over a
remote table and over its local twin must give the same protected answer (rows and suppression
report): the remote's rows carry their participants, so every cell is counted and protected as if
the rows were local. What the remote is sent (the audit log it keeps) shows which filters were
pushed; filters that are not safe to push stay local and still apply.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import (
    Caller,
    assert_same_outcome,
    assert_tables_equal,
    audit,
    certificate_authority,
    duck_query,
    free_port,
    mint,
    one_line_error,
    outcome,
    passport_server,
    run_strata,
    signed,
    status_text,
)

TOKEN_ENV = "STRATA_PARTNER_TOKEN"
# Local name -> (remote table, tier, has participants).
REMOTE_TABLES = {
    "remote_person": ("person", "controlled", True),
    "remote_measurement": ("measurement", "controlled", True),
    "remote_condition": ("condition_occurrence", "controlled", True),
    "remote_concept": ("concept", "public", False),
}


def local_catalog(gen_dataset: Path, url: str, extra_store: str = "", tables=REMOTE_TABLES) -> str:
    """The synthetic dataset's catalog with its files on a `file://` store, plus remote tables."""
    text = (gen_dataset / "catalog.toml").read_text()
    text = text.replace('store = "local"', 'store = "gen"')
    text += f'\n[stores.gen]\nurl = "file://{gen_dataset}"\n'
    text += f'\n[stores.partner]\nurl = "{url}"\ntoken_env = "{TOKEN_ENV}"\n{extra_store}'
    for name, (path, tier, participants) in tables.items():
        text += (
            f'\n[tables.{name}]\ndomain = "{"ehr" if participants else "vocabulary"}"\n'
            f'tier = "{tier}"\n' + ('person_key = "person_id"\n' if participants else "")
            + f'store = "partner"\npath = "{path}"\npartitioning = {{ kind = "single" }}\n'
        )
    return text


def make_local(root: Path, name: str, catalog: str) -> Path:
    dataset = root / name
    dataset.mkdir(parents=True, exist_ok=True)
    (dataset / "catalog.toml").write_text(catalog)
    return dataset


def remote_statements(remote, sub: str, since: int) -> list[str]:
    time.sleep(0.5)  # audit records are written in the background
    return [r["statement"] for r in audit(remote)[since:] if r.get("sub") == sub and r.get("statement")]


@pytest.fixture(scope="module")
def fed(gen_dataset, passport_keys, work_root, start_passport_server):
    root = work_root / "federation"
    root.mkdir(exist_ok=True)
    ready = mint(passport_keys, "controlled", "fed-ready", "--ttl", "1d")
    remote = passport_server(gen_dataset, passport_keys, root, "fed-remote", ready)
    remote.fixed_port = free_port()
    remote.start()
    service = mint(passport_keys, "controlled", "fed-service", "--ttl", "1d")
    dataset = make_local(root, "local", local_catalog(gen_dataset, f"grpc://127.0.0.1:{remote.port}"))
    local = start_passport_server(dataset, "fed-local", root=root, env={TOKEN_ENV: service})
    yield {"remote": remote, "local": local, "root": root, "service": service}
    remote.stop()
    assert "panicked" not in remote.all_stderr()


def twin(sql: str) -> str:
    """The statement over the local tables the remote ones mirror."""
    for name, (path, _, _) in REMOTE_TABLES.items():
        sql = sql.replace(name, path)
    return sql


# Over remote tables, alone and joined with local ones: per-person intermediates, windows, top-N,
# small cells (suppressed the same), margins, a scalar subquery, COUNT(*) without columns.
QUERIES = [
    "SELECT COUNT(*) AS n FROM remote_measurement",
    "SELECT COUNT(DISTINCT person_id) AS n FROM remote_condition",
    "SELECT measurement_concept_id, COUNT(DISTINCT person_id) AS n, AVG(value_as_number) AS v "
    "FROM remote_measurement GROUP BY measurement_concept_id",
    "SELECT measurement_concept_id, COUNT(DISTINCT person_id) AS n FROM remote_measurement "
    "WHERE person_id < 300 GROUP BY measurement_concept_id",
    "SELECT p.gender_concept_id, COUNT(DISTINCT m.person_id) AS n FROM person p "
    "JOIN remote_measurement m ON p.person_id = m.person_id GROUP BY p.gender_concept_id",
    "SELECT c.concept_name, COUNT(DISTINCT o.person_id) AS n FROM remote_condition o "
    "JOIN remote_concept c ON c.concept_id = o.condition_concept_id GROUP BY c.concept_name "
    "ORDER BY n DESC LIMIT 10",
    "SELECT n_dx, COUNT(*) AS persons FROM (SELECT person_id, COUNT(*) AS n_dx "
    "FROM remote_condition GROUP BY person_id) GROUP BY n_dx",
    "SELECT AVG(age) AS mean_age FROM (SELECT p.person_id, 2020 - p.year_of_birth AS age "
    "FROM remote_person p JOIN (SELECT person_id, MIN(condition_start_date) AS first_dx "
    "FROM remote_condition GROUP BY person_id) f ON f.person_id = p.person_id)",
    "SELECT person_id, measurement_date, value_as_number FROM (SELECT person_id, measurement_date, "
    "value_as_number, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, "
    "measurement_id) AS r FROM remote_measurement WHERE person_id BETWEEN 100 AND 140) WHERE r = 1",
    "SELECT gender_concept_id, race_concept_id, COUNT(*) AS n FROM remote_person "
    "GROUP BY ROLLUP (gender_concept_id, race_concept_id)",
    "SELECT (SELECT COUNT(*) FROM remote_person) AS persons, COUNT(*) AS with_dx FROM "
    "(SELECT DISTINCT person_id FROM remote_condition)",
    "SELECT year_of_birth, COUNT(*) AS n FROM remote_person WHERE gender_source_value = 'F' "
    "AND year_of_birth >= 1950 GROUP BY year_of_birth",
]


def test_remote_tables_give_the_answers_of_their_local_twins(fed, mint_token):
    """Same statement over remote tables and over the local files they mirror: the same rows and
    the same suppression report, so the remote's participants are counted as local ones are."""
    controlled = Caller(fed["local"], mint_token, "fed-alice")
    suppressed = 0
    for sql in QUERIES:
        expected, got = outcome(controlled, twin(sql)), outcome(controlled, sql)
        assert expected[0] == "table", f"{twin(sql)}: {expected[1]}"
        assert_same_outcome(expected, got, sql)
        suppressed += int(got[2].get("strata.suppressed_cells", "0"))
    assert suppressed > 0, "no small cell met: the lineage of remote rows was not exercised"


def test_remote_answers_match_duckdb_on_the_files(fed, mint_token, gen_duck):
    """Cells far above the threshold are exact: DuckDB on the very Parquet files agrees."""
    controlled = Caller(fed["local"], mint_token, "fed-bob")
    for sql in [
        "SELECT COUNT(*) AS n, SUM(value_as_number) AS s FROM remote_measurement",
        "SELECT gender_concept_id, COUNT(*) AS n FROM remote_person GROUP BY gender_concept_id",
        "SELECT COUNT(*) AS n FROM remote_condition o JOIN person p ON p.person_id = o.person_id "
        "WHERE p.year_of_birth < 1970",
    ]:
        assert_tables_equal(duck_query(gen_duck, twin(sql)), controlled.table(sql), sort_by=True)


def test_safe_filters_and_only_the_needed_columns_reach_the_remote(fed, mint_token, gen_duck):
    remote, local = fed["remote"], fed["local"]
    controlled = Caller(local, mint_token, "fed-carol")
    since = len(audit(remote))
    sql = (
        "SELECT person_id, measurement_date, value_as_number FROM remote_measurement "
        "WHERE person_id IN (11, 12, 13, 14) AND measurement_date >= DATE '2010-01-01' "
        "AND lower(unit_source_value) <> 'zz' AND value_as_number > 0.5"
    )
    got = controlled.table(sql)
    assert_tables_equal(duck_query(gen_duck, twin(sql)), got, sort_by=True)
    # The query log lists the remote table as a table the query read.
    deadline = time.monotonic() + 5
    while not (logged := [r for r in local.query_records() if r.get("statement") == sql]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert logged and "remote_measurement" in logged[-1]["tables"].split(","), logged
    sent = [s for s in remote_statements(remote, "fed-service", since) if "measurement" in s]
    assert sent, "the remote ran nothing for the query"
    statement = sent[-1]
    # Exact comparisons are pushed; a function's and a float's stay local (and still apply).
    assert '"person_id" IN (11, 12, 13, 14)' in statement, statement
    assert '"measurement_date" >=' in statement, statement
    assert "lower(" not in statement.lower(), statement
    assert '"value_as_number" >' not in statement, statement
    # Projection: the needed columns (and the filter's), never all of them.
    assert "*" not in statement and '"measurement_concept_id"' not in statement, statement
    # A string compared by order is not pushed (collations differ), and is right.
    since = len(audit(remote))
    sql = "SELECT COUNT(*) AS n FROM remote_person WHERE gender_source_value < 'M'"
    assert_tables_equal(duck_query(gen_duck, twin(sql)), controlled.table(sql))
    statement = [s for s in remote_statements(remote, "fed-service", since) if "person" in s][-1]
    assert "WHERE" not in statement, statement
    # With nothing to filter locally, a LIMIT travels too.
    since = len(audit(remote))
    assert len(controlled.rows("SELECT concept_id FROM remote_concept LIMIT 7")) == 7
    statement = [s for s in remote_statements(remote, "fed-service", since) if "concept" in s][-1]
    assert statement.endswith("LIMIT 7"), statement
    # EXPLAIN shows what is sent.
    plan = "\n".join(
        str(v) for row in controlled.rows(
            "EXPLAIN SELECT COUNT(*) AS n FROM remote_person WHERE person_id = 5"
        ) for v in row.values()
    )
    assert 'RemoteScanExec: source=partner, sql=SELECT "person_id" FROM "person" WHERE' in plan, plan


def test_tiers_of_remote_tables_are_the_local_catalogs(fed, mint_token):
    local = fed["local"]
    registered = Caller(local, mint_token, "fed-reg", tier="registered")
    public = Caller(local, mint_token, "fed-pub", tier="public", egress="aggregates")
    for caller in (registered, public):
        for table in ("remote_measurement", "remote_person"):
            text = caller.refused(f"SELECT COUNT(*) AS n FROM {table}", status="")
            assert table in text, text
        # A remote table without participants, public: every tier reads it.
        assert caller.value("SELECT COUNT(*) AS n FROM remote_concept") > 0
    # Listed only to those who may read them.
    conn = local.connect(token=registered.token)
    names = set()
    for catalog in conn.adbc_get_objects(depth="tables").read_all().to_pylist():
        for schema in catalog["catalog_db_schemas"] or []:
            names |= {t["table_name"] for t in schema["db_schema_tables"] or []}
    assert "remote_concept" in names and "remote_measurement" not in names, names


def test_the_token_stays_out_of_logs_and_answers(fed, mint_token):
    local = fed["local"]
    Caller(local, mint_token, "fed-dave").rows("SELECT COUNT(*) AS n FROM remote_person")
    time.sleep(0.5)
    token = fed["service"]
    assert token not in local.all_stderr()
    assert token not in local.audit_path.read_text()


def test_a_remote_that_stops_answering_gives_a_clean_error_and_comes_back(fed, mint_token):
    remote, local = fed["remote"], fed["local"]
    controlled = Caller(local, mint_token, "fed-erin")
    sql = "SELECT COUNT(*) AS n FROM remote_measurement"
    expected = controlled.value(sql)
    remote.stop()
    try:
        text = controlled.refused(sql, status="unavailable")
        assert "remote source 'partner' did not answer" in text, text
        assert "127.0.0.1" not in text, text
        # Local tables still answer.
        assert controlled.value("SELECT COUNT(*) AS n FROM person") > 0
    finally:
        remote.start()
    assert controlled.value(sql) == expected


def test_the_server_does_not_start_over_a_misconfigured_source(fed, gen_dataset, passport_keys, mint_token):
    root, remote = fed["root"], fed["remote"]
    url = f"grpc://127.0.0.1:{remote.port}"
    jwks = passport_keys / "jwks.json"

    def serve(name: str, catalog: str, env: dict | None = None):
        dataset = make_local(root, name, catalog)
        return run_strata(
            "serve", "--dataset", dataset, "--listen", "127.0.0.1:0", "--jwks", jwks,
            "--config", _config(root, name), check=False, env=env, timeout=60,
        )  # fmt: skip

    # The token's variable is not set.
    proc = serve("bad-env", local_catalog(gen_dataset, url), env=None)
    one_line_error(proc, TOKEN_ENV, allow_logs=True)
    # A token the remote does not accept.
    proc = serve("bad-token", local_catalog(gen_dataset, url), env={TOKEN_ENV: "not-a-passport"})
    one_line_error(proc, "refused", "partner", allow_logs=True)
    # An aggregates-only passport cannot read rows: the remote's refusal is shown to the operator.
    public = mint_token("public", "fed-agg", "--egress", "aggregates", "--ttl", "1d")
    proc = serve("agg-token", local_catalog(gen_dataset, url), env={TOKEN_ENV: public})
    one_line_error(proc, "partner", allow_logs=True)
    # The person key is not a column of the remote table.
    tables = {"remote_concept": ("concept", "controlled", True)}
    proc = serve("no-key", local_catalog(gen_dataset, url, tables=tables), env={TOKEN_ENV: fed["service"]})
    one_line_error(proc, "person_id", "remote_concept", allow_logs=True)
    # Nothing listens there.
    dead = f"grpc://127.0.0.1:{free_port()}"
    proc = serve("dead", local_catalog(gen_dataset, dead, "connect_timeout_secs = 2\n"), env={TOKEN_ENV: fed["service"]})
    one_line_error(proc, "partner", "did not answer", allow_logs=True)
    # A credential in clear text to another machine.
    proc = serve("clear", local_catalog(gen_dataset, "grpc://192.0.2.1:443"), env={TOKEN_ENV: fed["service"]})
    one_line_error(proc, "grpc+tls", allow_logs=True)
    # A remote table with participants below the controlled tier.
    tables = {"remote_person": ("person", "registered", True)}
    proc = serve("tier", local_catalog(gen_dataset, url, tables=tables), env={TOKEN_ENV: fed["service"]})
    one_line_error(proc, "controlled", allow_logs=True)


def _config(root: Path, name: str) -> Path:
    path = root / f"{name}.toml"
    path.write_text(f'state_dir = "{root / (name + "-state")}"\n')
    return path


def test_a_remote_over_tls_is_verified_against_its_ca(
    gen_dataset, passport_keys, work_root, start_passport_server, mint_token, tmp_path
):
    ca = certificate_authority(tmp_path, "partner")
    cert, key = signed(tmp_path, "partner-server", ca, server=True)
    ready = mint(passport_keys, "controlled", "fed-tls-ready", "--ttl", "1d")
    remote = passport_server(
        gen_dataset, passport_keys, tmp_path, "fed-tls-remote", ready,
        f'[tls]\ncert = "{cert}"\nkey = "{key}"\n',
    )  # fmt: skip
    remote.tls_root = ca[0].read_text()
    with remote:
        url = f"grpc+tls://127.0.0.1:{remote.port}"
        service = mint(passport_keys, "controlled", "fed-tls-service", "--ttl", "1d")
        tables = {"remote_person": REMOTE_TABLES["remote_person"]}
        catalog = local_catalog(gen_dataset, url, f'ca_file = "{ca[0]}"\n', tables=tables)
        local = start_passport_server(
            make_local(tmp_path, "tls-local", catalog), "fed-tls-local", root=tmp_path,
            env={TOKEN_ENV: service},
        )  # fmt: skip
        alice = Caller(local, mint_token, "fed-tls-alice")
        sql = "SELECT gender_concept_id, COUNT(*) AS n FROM remote_person GROUP BY gender_concept_id"
        assert_same_outcome(outcome(alice, twin(sql)), outcome(alice, sql), sql)
        local.stop()
        # Another CA: the remote's certificate is not trusted, so the server does not start.
        other = certificate_authority(tmp_path, "other")
        catalog = local_catalog(gen_dataset, url, f'ca_file = "{other[0]}"\n', tables=tables)
        dataset = make_local(tmp_path, "tls-other", catalog)
        proc = run_strata(
            "serve", "--dataset", dataset, "--listen", "127.0.0.1:0", "--jwks",
            passport_keys / "jwks.json", "--config", _config(tmp_path, "tls-other"),
            check=False, env={TOKEN_ENV: service}, timeout=60,
        )  # fmt: skip
        one_line_error(proc, "partner", allow_logs=True)
