"""The PostgreSQL-wire door (DESIGN.md "PostgreSQL-wire door") through real clients: psql, psycopg 3
(simple and extended protocol, text and binary), SQLAlchemy 2.1 with pandas, psqlODBC from pyodbc and
from R's RODBC, R DBI + RPostgreSQL + dbplyr, and R over Flight SQL through reticulate. The door is the
same query service as Flight SQL: every answer must equal Flight SQL's for the same principal (and
DuckDB's on the raw files where nothing was protected), every refusal must carry the SQLSTATE of the
contract, and listings must hold only what the caller may query.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import json
import math
import socket
import struct
import subprocess

import psycopg
import pytest

import pg_clients as pc
from helpers import Caller, duck_query, free_port, passport_server, wait_for
from research_queries import GENERATED, GIBLEED

T = 20
HOST = "127.0.0.1"


# -- comparing answers across clients -------------------------------------------------------------


def canon(v):
    """A value as every client can agree on it: numbers as rounded floats, times as ISO text."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, decimal.Decimal)):
        return round(float(v), 6)
    if isinstance(v, datetime.datetime):
        return v.replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def canon_rows(rows) -> list[tuple]:
    return sorted((tuple(canon(v) for v in r) for r in rows), key=repr)


def flight_rows(caller: Caller, sql: str) -> tuple[list[str], list[tuple], dict]:
    table = caller.table(sql)
    rows = [tuple(r.values()) for r in table.to_pylist()]
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return table.column_names, canon_rows(rows), metadata


def suppressed(metadata: dict) -> int:
    return sum(int(v) for k, v in metadata.items() if k.startswith("strata.suppressed"))


class PgCaller:
    """One principal's passport used through the PostgreSQL door and through Flight SQL."""

    def __init__(self, server, mint, sub, tier="controlled", egress=None):
        self.flight = Caller(server, mint, sub, tier, egress)
        self.server = server
        self.sub = sub
        self.token = self.flight.token

    def run(self, client, sql, **kwargs) -> tuple[list[str], list[tuple]]:
        cols, rows = client(HOST, self.server.pg_port, self.sub, self.token, sql, **kwargs)
        return cols, canon_rows(rows)

    def connect(self, **kwargs):
        """A psycopg 3 connection of this principal through the door."""
        return psycopg.connect(
            host=HOST, port=self.server.pg_port, user=self.sub, password=self.token, dbname="strata", **kwargs
        )

    def error(self, client, sql, **kwargs) -> pc.PgClientError:
        with pytest.raises(pc.PgClientError) as err:
            self.run(client, sql, **kwargs)
        return err.value


CLIENTS = {
    "psql": pc.psql_query,
    "psycopg": pc.psycopg_query,
    "psycopg-extended": functools.partial(pc.psycopg_query, params=()),
    "psycopg-binary": functools.partial(pc.psycopg_query, binary=True),
    "sqlalchemy-pandas": pc.sqlalchemy_read_sql,
    "pyodbc-psqlodbc": pc.pyodbc_query,
    "r-dbi-rpostgresql": pc.r_dbi_query,
    "r-rodbc-psqlodbc": pc.r_rodbc_query,
}
# The slower clients (a process or an ORM per query) run a share of the research queries.
FAST = {"psql", "psycopg", "psycopg-extended", "psycopg-binary", "pyodbc-psqlodbc"}
SOME = {q.name for q in GENERATED[::4]}


@pytest.fixture(scope="module")
def researcher(gen_passport_server, mint_token):
    return PgCaller(gen_passport_server, mint_token, "pg-researcher")


@pytest.fixture(scope="module")
def dashboard(gen_passport_server, mint_token):
    """A registered-tier principal with aggregates-only egress, as a BI dashboard's passport."""
    return PgCaller(gen_passport_server, mint_token, "pg-dashboard", "registered", "aggregates")


@pytest.fixture(scope="module")
def service(gen_passport_server, mint_token):
    """A controlled-tier service with aggregates-only egress: every participant is in its view,
    small groups included."""
    return PgCaller(gen_passport_server, mint_token, "pg-service", "controlled", "aggregates")


def research_cases():
    for client in CLIENTS:
        for q in GENERATED:
            if client in FAST or q.name in SOME:
                yield pytest.param(client, q, id=f"{client}-{q.name}")


@pytest.mark.parametrize("client,q", list(research_cases()))
def test_research_queries_equal_flight_sql_and_duckdb(client, q, researcher, gen_duck):
    cols, rows = researcher.run(CLIENTS[client], q.sql)
    flight_cols, flight, metadata = flight_rows(researcher.flight, q.sql)
    assert cols == flight_cols
    assert rows == flight, f"{client}: {q.name} differs from Flight SQL"
    if suppressed(metadata) == 0:
        duck = duck_query(gen_duck, q.sql)
        assert rows == canon_rows(tuple(r.values()) for r in duck.to_pylist()), f"{q.name} vs DuckDB"


@pytest.mark.parametrize("client", ["pyodbc-psqlodbc", "r-dbi-rpostgresql"])
@pytest.mark.parametrize("q", GIBLEED, ids=[q.name for q in GIBLEED])
def test_gibleed_research_queries_equal_flight_sql(client, q, gibleed_passport_server, mint_token):
    caller = PgCaller(gibleed_passport_server, mint_token, "pg-gibleed")
    _, rows = caller.run(CLIENTS[client], q.sql)
    _, flight, _ = flight_rows(caller.flight, q.sql)
    assert rows == flight


def test_dbplyr_builds_sql_the_door_answers_like_flight(researcher):
    cols, rows, sql = pc.r_dbplyr_count(
        HOST, researcher.server.pg_port, researcher.sub, researcher.token, "person", "gender_concept_id"
    )
    assert "GROUP BY" in sql
    _, flight, _ = flight_rows(researcher.flight, sql)
    assert canon_rows(rows) == flight and len(flight) >= 2


def test_r_reaches_flight_sql_through_reticulate_and_adbc(researcher, gen_duck):
    sql = "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1"
    cols, rows = pc.r_reticulate_flight_query(researcher.server.uri, researcher.token, sql)
    assert cols == ["gender_concept_id", "n"]
    assert canon_rows(rows) == flight_rows(researcher.flight, sql)[1]
    assert canon_rows(rows) == canon_rows(tuple(r.values()) for r in duck_query(gen_duck, sql).to_pylist())


# -- disclosure control is the query service's, whatever the door ---------------------------------


def small_birth_year(duck) -> int:
    rows = duck_query(
        duck, "SELECT year_of_birth AS y, COUNT(*) AS n FROM person GROUP BY 1 HAVING COUNT(*) BETWEEN 1 AND 20"
    ).to_pylist()
    assert rows, "the generated data has a birth year of 1..20 persons"
    return rows[0]["y"]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_aggregates_only_answers_are_the_protected_ones(client, dashboard, gen_duck):
    sql = "SELECT year_of_birth, COUNT(DISTINCT person_id) AS n FROM person GROUP BY 1"
    _, rows = dashboard.run(CLIENTS[client], sql)
    _, flight, metadata = flight_rows(dashboard.flight, sql)
    assert rows == flight
    assert suppressed(metadata) > 0, "the probe meets small cells"
    counts = [n for _, n in rows]
    assert all(n is None or n > T for n in counts), counts
    # The registered view leaves the oldest participants out: fewer groups than the raw files.
    raw = duck_query(gen_duck, sql).to_pylist()
    assert any(n is None for n in counts) and 0 < len(rows) <= len(raw)


@pytest.mark.parametrize("client", ["psycopg", "psycopg-extended", "pyodbc-psqlodbc", "r-dbi-rpostgresql"])
def test_a_small_cell_stays_hidden_through_every_protocol(client, service, gen_duck):
    y = small_birth_year(gen_duck)
    _, rows = service.run(CLIENTS[client], f"SELECT COUNT(*) AS n FROM person WHERE year_of_birth = {y}")
    assert rows == [(None,)]


def test_bound_parameters_do_not_open_a_small_cell(service, gen_duck):
    y = small_birth_year(gen_duck)
    _, rows = service.run(pc.psycopg_query, "SELECT COUNT(*) AS n FROM person WHERE year_of_birth = %s", params=(y,))
    assert rows == [(None,)]


def test_differencing_across_doors_is_withheld(gen_passport_server, mint_token, gen_duck):
    """A total released through Flight SQL, then the total minus a small group asked through the
    PostgreSQL door: one release ledger per principal, whatever the door."""
    caller = PgCaller(gen_passport_server, mint_token, "pg-differencer", "controlled", "aggregates")
    y = small_birth_year(gen_duck)
    total = caller.flight.rows("SELECT COUNT(DISTINCT person_id) AS n FROM person")
    assert total[0]["n"] is not None
    _, rows = caller.run(
        pc.psycopg_query, f"SELECT COUNT(DISTINCT person_id) AS n FROM person WHERE year_of_birth <> {y}"
    )
    assert rows == [(None,)]


def test_compatibility_rewrites_of_catalog_queries_stay_protected(service, gen_duck):
    """Statements that read pg_catalog get the client-compatibility rewrites; a participant count
    hidden in one is planned and protected all the same: refused, or suppressed."""
    y = small_birth_year(gen_duck)
    sql = (
        f"SELECT c.relname, (SELECT COUNT(*) FROM person WHERE year_of_birth = {y}) AS n "
        "FROM pg_catalog.pg_class c WHERE c.relname = 'person'"
    )
    try:
        _, rows = service.run(pc.psycopg_query, sql)
        assert rows and all(n is None for _, n in rows), rows
    except pc.PgClientError as e:
        assert e.sqlstate in ("0A000", "42501"), e
    err = service.error(pc.psycopg_query, "SELECT c.relname, (SELECT COUNT(*) FROM genotype) AS n FROM pg_class c")
    assert err.sqlstate in ("0A000", "42501"), err


def test_a_forbidden_table_inside_a_catalog_query_is_refused(dashboard):
    err = dashboard.error(pc.psycopg_query, "SELECT c.relname, (SELECT COUNT(*) FROM genotype) AS n FROM pg_class c")
    assert err.sqlstate == "42P01", err


@pytest.mark.parametrize("client", ["psql", "psycopg", "sqlalchemy-pandas", "pyodbc-psqlodbc", "r-rodbc-psqlodbc"])
def test_refusals_carry_the_contract_sqlstates(client, dashboard):
    run = CLIENTS[client]
    forbidden = dashboard.error(run, "SELECT COUNT(*) AS n FROM genotype")
    unknown = dashboard.error(run, "SELECT COUNT(*) AS n FROM no_such_table")
    assert forbidden.sqlstate == unknown.sqlstate == "42P01"
    assert "genotype" in str(forbidden) and "controlled" not in str(forbidden)
    rows = dashboard.error(run, "SELECT person_id, year_of_birth FROM person")
    assert rows.sqlstate == "42501"
    write = dashboard.error(run, "DROP TABLE person")
    assert write.sqlstate == "42501"


def test_a_column_above_the_tier_is_a_tier_refusal(dashboard):
    err = dashboard.error(pc.psycopg_query, "SELECT COUNT(DISTINCT birth_datetime) AS n FROM person")
    assert err.sqlstate in ("42501", "42703"), err


def test_an_egress_limit_is_53400_never_a_partial_result(gen_dataset, start_passport_server, mint_token):
    srv = start_passport_server(gen_dataset, "pg-egress", config="[egress]\nmax_rows = 50\nalert_rows = 10\n")
    caller = PgCaller(srv, mint_token, "pg-egress-researcher")
    err = caller.error(pc.psycopg_query, "SELECT person_id FROM person")
    assert err.sqlstate == "53400", err
    _, rows = caller.run(pc.psycopg_query, "SELECT person_id FROM person ORDER BY person_id LIMIT 50")
    assert len(rows) == 50


# -- listings: only what the caller may query -----------------------------------------------------


def listed_tables(caller, client=pc.psycopg_query) -> set[str]:
    _, rows = caller.run(
        client,
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v')",
    )
    return {r[0] for r in rows}


def test_catalogs_list_only_what_the_caller_may_query(researcher, dashboard):
    controlled, registered = listed_tables(researcher), listed_tables(dashboard)
    assert {"person", "genotype", "variant", "condition_occurrence"} <= controlled
    assert "person" in registered and not {"genotype", "variant"} & registered
    for caller, want in ((researcher, controlled), (dashboard, registered)):
        _, rows = caller.run(
            pc.psycopg_query,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
        assert {r[0] for r in rows} == want
    _, cols = dashboard.run(
        pc.psycopg_query,
        "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
        "WHERE c.relname = 'person'",
    )
    assert "year_of_birth" in {r[0] for r in cols} and "birth_datetime" not in {r[0] for r in cols}


def test_psql_describes_tables(researcher, dashboard):
    cols, rows = researcher.run(pc.psql_query, "\\dt")
    names = {r[cols.index("Name")] for r in rows}
    assert {"person", "genotype"} <= names
    cols, rows = dashboard.run(pc.psql_query, "\\dt")
    assert "genotype" not in {r[cols.index("Name")] for r in rows}
    cols, rows = researcher.run(pc.psql_query, "\\d person")
    assert "year_of_birth" in {r[cols.index("Column")] for r in rows}


def test_sqlalchemy_inspector_reflects_the_permitted_tables(dashboard):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = sqlalchemy.URL.create(
        "postgresql+psycopg", username=dashboard.sub, password=dashboard.token, host=HOST,
        port=dashboard.server.pg_port, database="strata",
    )  # fmt: skip
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        inspector = sqlalchemy.inspect(engine)
        tables = set(inspector.get_table_names())
        assert "person" in tables and "genotype" not in tables
        columns = {c["name"] for c in inspector.get_columns("person")}
        assert {"person_id", "year_of_birth"} <= columns
        assert inspector.get_pk_constraint("person")["constrained_columns"] == ["person_id"]
    finally:
        engine.dispose()


# -- sessions, protocols and types ------------------------------------------------------------------


def test_session_commands_around_queries(researcher):
    with researcher.connect() as conn:
        conn.autocommit = True
        cur = conn.cursor()
        # psqlODBC's first message: several statements in one simple query.
        cur.execute("SET DateStyle = 'ISO';SET extra_float_digits = 2;show transaction_isolation")
        assert cur.nextset() and cur.nextset()
        assert cur.fetchall() == [("read committed",)]
        cur.execute("SET application_name = 'strata-test'")
        cur.execute("SHOW application_name")
        assert cur.fetchall() == [("strata-test",)]
        cur.execute("SHOW server_version")
        assert int(cur.fetchone()[0].split(".")[0]) >= 12
        cur.execute("SELECT pg_catalog.version(), current_schema()")
        version, schema = cur.fetchone()
        assert version.startswith("PostgreSQL 16") and schema == "public"
        for statement in ("BEGIN", "SAVEPOINT s1", "RELEASE SAVEPOINT s1", "COMMIT", "ROLLBACK", "DISCARD ALL"):
            cur.execute(statement)
        with pytest.raises(psycopg.Error) as err:
            cur.execute("SHOW no_such_setting")
        assert err.value.sqlstate == "42704"


def test_server_side_cursors_fetch_in_pieces(researcher, gen_duck):
    sql = "SELECT person_id, year_of_birth FROM person ORDER BY person_id"
    with researcher.connect() as conn:
        with conn.cursor(name="persons") as cur:
            cur.itersize = 500
            cur.execute(sql)
            first = cur.fetchmany(7)
            rest = cur.fetchall()
    want = [tuple(r.values()) for r in duck_query(gen_duck, sql).to_pylist()]
    assert first + rest == want and len(first) == 7


def test_a_refused_cursor_declares_nothing(dashboard):
    with dashboard.connect() as conn:
        with pytest.raises(psycopg.Error) as err:
            with conn.cursor(name="rows") as cur:
                cur.execute("SELECT person_id FROM person")
                cur.fetchall()
        assert err.value.sqlstate == "42501"


TYPES_SQL = """SELECT CAST(1 AS SMALLINT) AS i2, CAST(2 AS INT) AS i4, CAST(3 AS BIGINT) AS i8,
    CAST(1.5 AS REAL) AS f4, CAST(2.25 AS DOUBLE) AS f8, CAST(12.345 AS DECIMAL(10, 3)) AS num,
    true AS b, 'x é' AS t, DATE '2020-02-29' AS d, TIMESTAMP '2020-02-29 12:34:56.5' AS ts,
    make_array(1, 2, NULL) AS ints, make_array('a', 'b') AS texts, CAST(NULL AS INT) AS nothing,
    NULL AS untyped,
    INTERVAL '1 day' AS span, named_struct('a', 1) AS record"""


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_every_arrow_type_arrives_in_text_and_binary(binary, researcher):
    with researcher.connect() as conn:
        cur = conn.cursor(binary=binary)
        cur.execute(TYPES_SQL, ())
        row = dict(zip([c.name for c in cur.description], cur.fetchone()))
    assert row["i2"] == 1 and row["i4"] == 2 and row["i8"] == 3
    assert row["f4"] == 1.5 and row["f8"] == 2.25 and row["num"] == decimal.Decimal("12.345")
    assert row["b"] is True and row["t"] == "x é" and row["nothing"] is None and row["untyped"] is None
    assert row["d"] == datetime.date(2020, 2, 29)
    assert row["ts"] == datetime.datetime(2020, 2, 29, 12, 34, 56, 500000)
    assert row["ints"] == [1, 2, None] and row["texts"] == ["a", "b"]
    assert "1 day" in str(row["span"]) and '"a"' in str(row["record"]) or "a" in str(row["record"])


def test_bound_parameters_of_every_common_type(researcher, gen_duck):
    sql = (
        "SELECT COUNT(*) AS n FROM person WHERE year_of_birth BETWEEN %s AND %s "
        "AND birth_datetime >= %s AND gender_concept_id = %s"
    )
    params = (1950, 1990, datetime.datetime(1900, 1, 1), 8507)
    _, rows = researcher.run(pc.psycopg_query, sql, params=params)
    want = duck_query(
        gen_duck,
        "SELECT COUNT(*) AS n FROM person WHERE year_of_birth BETWEEN 1950 AND 1990 "
        "AND birth_datetime >= TIMESTAMP '1900-01-01' AND gender_concept_id = 8507",
    ).to_pylist()[0]["n"]
    assert rows == [(canon(want),)]
    err = researcher.error(pc.psycopg_query, "SELECT COUNT(*) AS n FROM person WHERE year_of_birth = %s", params=("x",))
    assert err.sqlstate is not None


# -- login ----------------------------------------------------------------------------------------


def raw_login(port: int, user: str, password: str, host: str = HOST) -> dict[str, str]:
    """A PostgreSQL v3 startup by hand (the client libraries hide a login error's SQLSTATE): the
    fields of the server's answer to the password, or {"ok": "1"} when it accepted it."""
    with socket.create_connection((host, port), timeout=10) as s:
        params = b"user\0" + user.encode() + b"\0database\0strata\0\0"
        s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        kind, body = _message(s)
        if kind == b"E":
            return _fields(body)
        assert kind == b"R" and struct.unpack("!i", body[:4])[0] == 3, "cleartext password asked"
        secret = password.encode() + b"\0"
        s.sendall(b"p" + struct.pack("!i", 4 + len(secret)) + secret)
        kind, body = _message(s)
        if kind == b"E":
            return _fields(body)
        assert kind == b"R" and struct.unpack("!i", body[:4])[0] == 0
        return {"ok": "1"}


def _message(s: socket.socket) -> tuple[bytes, bytes]:
    head = _exactly(s, 5)
    return head[:1], _exactly(s, struct.unpack("!i", head[1:])[0] - 4)


def _exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out


def _fields(body: bytes) -> dict[str, str]:
    return {f[:1].decode(): f[1:].decode() for f in body.split(b"\0") if f}


def _ready_session(port: int, user: str, password: str) -> socket.socket:
    """A logged-in raw connection, past its ReadyForQuery."""
    s = socket.create_connection((HOST, port), timeout=10)
    params = b"user\0" + user.encode() + b"\0database\0strata\0\0"
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    kind, _ = _message(s)
    assert kind == b"R"
    secret = password.encode() + b"\0"
    s.sendall(b"p" + struct.pack("!i", 4 + len(secret)) + secret)
    while (kind := _message(s)[0]) != b"Z":
        assert kind != b"E", "login refused"
    return s


def _frame(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("!i", 4 + len(body)) + body


@pytest.mark.parametrize(
    "message",
    [
        # The fuzz target's first find: a Bind parameter declared longer than the message
        # (pgwire 0.42 panicked on it).
        _frame(b"B", b"\0\0" + struct.pack("!hhi", 0, 1, 550_974_954) + b"abc" + struct.pack("!h", 0)),
        _frame(b"Q", b"SELECT 1"),  # no terminator: would run into the next message
        _frame(b"E", b"\0\0\0"),  # a row limit cut short
        _frame(b"D", b""),
        _frame(b"F", b"\0\0\0\0"),  # FunctionCall: not served
        b"S" + struct.pack("!i", 2),  # a length shorter than itself
    ],
    ids=["bind-overrun", "unterminated-query", "short-execute", "empty-describe", "function-call", "short-length"],
)
def test_a_malformed_message_is_a_protocol_violation(researcher, message):
    """Each message's fields must fill its length exactly: anything else ends the connection
    with 08P01, as PostgreSQL does, and the door serves the next client (no panic: the session's
    server log is checked for one at teardown)."""
    port = researcher.server.pg_port
    with _ready_session(port, researcher.sub, researcher.token) as s:
        s.sendall(message + _frame(b"S", b""))
        kind, body = _message(s)
        assert kind == b"E", kind
        fields = _fields(body)
        assert fields["C"] == "08P01" and fields["S"] == "FATAL", fields
        assert s.recv(1) == b"", "the connection stays open after a protocol violation"
    assert raw_login(port, researcher.sub, researcher.token) == {"ok": "1"}


@pytest.mark.parametrize("limit", [2**31 - 1, -1, 0, 1_500_000, 2])
def test_execute_row_limits(researcher, limit):
    """An Execute's row limit: zero, negative or above what egress allows any result means all
    rows; a smaller one is honoured (PortalSuspended when reached). pgwire reserves room for the
    whole limit up front: 2^31 - 1 rows aborted the server (found by fuzzing)."""
    port = researcher.server.pg_port
    sql = b"SELECT person_id FROM person ORDER BY person_id LIMIT 5"
    with _ready_session(port, researcher.sub, researcher.token) as s:
        s.sendall(
            _frame(b"P", b"\0" + sql + b"\0" + struct.pack("!h", 0))
            + _frame(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
            + _frame(b"E", b"\0" + struct.pack("!i", limit))
            + _frame(b"S", b"")
        )
        rows, end = 0, None
        while (kind := _message(s))[0] != b"Z":
            assert kind[0] != b"E", _fields(kind[1])
            rows += kind[0] == b"D"
            if kind[0] in (b"C", b"s"):
                end = kind[0]
    if limit == 2:
        assert (rows, end) == (2, b"s"), "a limit reached suspends the portal"
    else:
        assert (rows, end) == (5, b"C"), (rows, end)
    assert raw_login(port, researcher.sub, researcher.token) == {"ok": "1"}


def test_login_sqlstates(researcher, mint_token):
    port = researcher.server.pg_port
    assert raw_login(port, researcher.sub, researcher.token) == {"ok": "1"}
    assert raw_login(port, researcher.sub, "not-a-passport")["C"] == "28P01"
    assert raw_login(port, "someone-else", researcher.token)["C"] == "28000"
    expired = mint_token("controlled", "pg-expired", "--expired")
    assert raw_login(port, "pg-expired", expired)["C"] == "28P01"
    assert raw_login(port, researcher.sub, "")["C"] == "28P01"


def test_cleartext_passwords_only_on_loopback(gen_dataset, passport_keys, work_root, mint_token):
    """A passport is a bearer secret: from a non-loopback peer without TLS it is never asked for."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    token = mint_token("controlled", "pg-remote", "--ttl", "1d")
    srv, port = on_every_address(passport_server(gen_dataset, passport_keys, work_root, "pg-any-address", token))
    with srv:
        answer = raw_login(port, "pg-remote", token, host=address)
        assert answer.get("C") == "28000" and "TLS" in answer.get("M", ""), answer
        assert raw_login(port, "pg-remote", token) == {"ok": "1"}


def on_every_address(srv):
    """`srv` (not started) with its PostgreSQL door on 0.0.0.0, and that door's port."""
    srv.pg = False
    port = free_port()
    srv.extra_args += ["--pg-listen", f"0.0.0.0:{port}"]
    return srv, port


def test_audit_records_name_the_pg_door(researcher):
    researcher.run(pc.psycopg_query, "SELECT COUNT(*) AS audited_through_pg FROM person")

    def mine():
        lines = researcher.server.audit_path.read_text().splitlines()
        return [r for r in map(json.loads, lines) if "audited_through_pg" in (r.get("statement") or "")]

    wait_for(lambda: any(r["phase"] == "end" for r in mine()), timeout=10, what="the end record")
    records = mine()
    assert {r["door"] for r in records} == {"pg"}
    assert {r["phase"] for r in records} >= {"start", "end"}
    assert all(r["sub"] == researcher.sub for r in records)


# -- TLS and service accounts -----------------------------------------------------------------------


def non_loopback_address() -> str | None:
    found = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return next((a for a in found if "." in a and not a.startswith("127.")), None)


def scram_verifier(password: str, salt: bytes = b"strata-test-salt", iterations: int = 4096) -> str:
    """A PostgreSQL SCRAM-SHA-256 verifier (what `pg_authid.rolpassword` holds), made here as a
    client library would: RFC 5802 / 7677."""
    import base64
    import hashlib
    import hmac

    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def self_signed(folder, address: str):
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=strata-test",
         "-addext", f"subjectAltName=IP:{address},IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_and_scram_service_accounts(gen_dataset, passport_keys, work_root, mint_token, tmp_path):
    """One [tls] certificate for both doors. Over TLS a passport may come from any network; a
    service account
    logs in with SCRAM (its password never sent) and acts under its aggregates-only passport."""
    address = non_loopback_address() or "127.0.0.1"
    cert, key = self_signed(tmp_path, address)
    service_passport = tmp_path / "dashboard.jwt"
    service_passport.write_text(mint_token("controlled", "dashboard-svc", "--egress", "aggregates", "--ttl", "1d"))
    config = (
        f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
        f'[[pg.service_accounts]]\nuser = "dashboard"\nscram = "{scram_verifier("s3cret dashboard")}"\n'
        f'passport = "{service_passport}"\n'
    )
    token = mint_token("controlled", "pg-tls", "--ttl", "1d")
    srv, port = on_every_address(passport_server(gen_dataset, passport_keys, work_root, "pg-tls", token, config))
    srv.tls_root = cert.read_text()  # the same certificate serves Flight SQL

    def connect(user, password, **kw):
        return psycopg.connect(host=address, port=port, user=user, password=password, dbname="strata", **kw)

    with srv:
        assert srv.uri.startswith("grpc+tls://")
        assert srv.query("SELECT COUNT(*) AS n FROM person").column("n")[0].as_py() > 0
        with pytest.raises(Exception):  # a client that does not trust the certificate
            srv.connect(**{"adbc.flight.sql.client_option.tls_root_certs": ""}).cursor().execute("SELECT 1")
        with connect("pg-tls", token, sslmode="verify-full", sslrootcert=str(cert)) as conn:
            assert conn.info.pgconn.ssl_in_use
            assert conn.execute("SELECT COUNT(*) FROM person").fetchone()[0] > 0
        with connect("dashboard", "s3cret dashboard", sslmode="disable") as conn:
            n = conn.execute("SELECT COUNT(*) AS n FROM person").fetchone()[0]
            assert n is None or n > T
            with pytest.raises(psycopg.Error) as err:
                conn.execute("SELECT person_id FROM person")
            assert err.value.sqlstate == "42501"
        with pytest.raises(psycopg.OperationalError) as err:
            connect("dashboard", "wrong", sslmode="disable")
        assert "dashboard" in str(err.value) or "password" in str(err.value).lower()
        if address != "127.0.0.1":
            assert raw_login(port, "pg-tls", token, host=address).get("C") == "28000"
    records = [json.loads(ln) for ln in srv.audit_path.read_text().splitlines()]
    assert any(r["sub"] == "dashboard-svc" and r["door"] == "pg" for r in records)


def test_a_service_account_that_may_read_rows_stops_the_server(gen_dataset, passport_keys, work_root, mint_token, tmp_path):
    rows_passport = tmp_path / "rows.jwt"
    rows_passport.write_text(mint_token("controlled", "rows-svc", "--ttl", "1d"))
    config = (
        f'[[pg.service_accounts]]\nuser = "rows"\nscram = "{scram_verifier("x")}"\npassport = "{rows_passport}"\n'
    )
    token = mint_token("controlled", "pg-bad-account", "--ttl", "1d")
    srv = passport_server(gen_dataset, passport_keys, work_root, "pg-bad-account", token, config)
    with pytest.raises(AssertionError) as err:
        srv.start()
    assert "strata_egress=aggregates" in str(err.value)


def test_a_cancelled_query_is_57014_and_the_connection_goes_on(researcher):
    """psql's Ctrl-C, a BI tool's stop button: a CancelRequest ends the running statement."""
    import threading

    heavy = (
        "SELECT COUNT(DISTINCT a.measurement_id * 1000003 + b.measurement_id) AS n "
        "FROM measurement a JOIN measurement b ON a.person_id = b.person_id"
    )
    with researcher.connect(autocommit=True) as conn:
        timer = threading.Timer(1.5, conn.cancel)
        timer.start()
        with pytest.raises(psycopg.Error) as err:
            conn.execute(heavy).fetchall()
        timer.join()
        assert err.value.sqlstate == "57014", err.value
        assert conn.execute("SELECT 1").fetchone() == (1,)
