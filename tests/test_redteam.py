"""Red team: every way we know to reach data above one's tier, or any data without a valid
passport, through the real ADBC driver and raw Flight calls. Expected every time: no data, the
right gRPC status, and an audit record of the attempt.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pyarrow.flight as flight
import pytest

from helpers import make_keys, mint, status_text, wait_for

SQL_NS = "type.googleapis.com/arrow.flight.protocol.sql."


def audit_count(srv) -> int:
    p: Path = srv.audit_path
    return len(p.read_text().splitlines()) if p.exists() else 0


def audit_since(srv, n: int) -> list[dict]:
    return [json.loads(line) for line in srv.audit_path.read_text().splitlines()[n:]]


def expect_refusal(srv, status: str, attempt, outcome: str | None = None) -> None:
    """Runs `attempt()`, which must raise with `status`, return no data, and leave an audit
    record with `outcome`."""
    before = audit_count(srv)
    with pytest.raises(Exception) as err:
        result = attempt()
        # Some drivers defer the error to the fetch; a result reaching here is a leak.
        pytest.fail(f"attempt returned data: {result!r}"[:500])
    assert status in status_text(err.value), f"expected {status}, got: {err.value}"
    outcome = outcome or {"permissiondenied": "denied", "unauthenticated": "unauthenticated"}.get(status, None)
    if outcome:
        wait_for(
            lambda: any(r["outcome"] == outcome for r in audit_since(srv, before)),
            timeout=10,
            what=f"an audit record with outcome {outcome}",
        )


def sql_attempt(srv, token, sql, params=None):
    def run():
        conn = srv.connect(token=token)
        try:
            cur = conn.cursor()
            cur.execute(sql, params) if params is not None else cur.execute(sql)
            return cur.fetch_arrow_table().to_pylist()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    return run


# --------------------------------------------------------------------------------------------------
# Broken passports × every Flight SQL command
# --------------------------------------------------------------------------------------------------

BROKEN = {
    "expired": ["--expired"],
    "alg-none": ["--alg", "none"],
    "hmac-confused": ["--alg", "hs256"],
    "forged": ["--forge"],
}


def commands(srv, token):
    """Each Flight SQL command the ADBC driver can send, as a thunk."""

    def with_conn(f):
        def run():
            conn = srv.connect(token=token)
            try:
                return f(conn)
            finally:
                with contextlib.suppress(Exception):
                    conn.close()

        return run

    def prepared(conn):
        cur = conn.cursor()
        cur.execute("SELECT person_id FROM person WHERE person_id = ?", (1,))
        return cur.fetch_arrow_table().to_pylist()

    return {
        "statement": sql_attempt(srv, token, "SELECT COUNT(*) FROM person"),
        "prepared": with_conn(prepared),
        "get_objects": with_conn(lambda c: c.adbc_get_objects(depth="all").read_all().to_pylist()),
        "get_table_schema": with_conn(lambda c: c.adbc_get_table_schema("person")),
        "get_table_types": with_conn(lambda c: c.adbc_get_table_types()),
        "get_info": with_conn(lambda c: c.adbc_get_info()),
    }


@pytest.mark.parametrize("broken", list(BROKEN))
@pytest.mark.parametrize(
    "command", ["statement", "prepared", "get_objects", "get_table_schema", "get_table_types", "get_info"]
)
def test_broken_passports_get_nothing_from_any_command(gen_passport_server, mint_token, broken, command):
    token = mint_token("controlled", "mallory", *BROKEN[broken])
    expect_refusal(gen_passport_server, "unauthenticated", commands(gen_passport_server, token)[command])


def test_untrusted_key_and_no_token_get_nothing(gen_passport_server, tmp_work):
    rogue = make_keys(tmp_work / "rogue")
    for token in (mint(rogue, "controlled", "mallory"), ""):
        for name, attempt in commands(gen_passport_server, token).items():
            expect_refusal(gen_passport_server, "unauthenticated", attempt)


@pytest.mark.parametrize(
    "flags",
    [["--visa-sub", "someone-else"], ["--visa-issuer", "https://evil.example/"], ["--missing-visa", "ducc"]],
    ids=["wrong-subject-visas", "wrong-issuer-visas", "missing-visa"],
)
def test_passports_with_unusable_visas_are_public(gen_passport_server, mint_token, flags):
    token = mint_token("controlled", "mallory", *flags)
    expect_refusal(gen_passport_server, "permissiondenied", sql_attempt(gen_passport_server, token, "SELECT COUNT(*) FROM person"))
    expect_refusal(gen_passport_server, "permissiondenied", sql_attempt(gen_passport_server, token, "SELECT COUNT(*) FROM genotype"))


def test_controlled_visa_without_registered_visas_is_not_controlled(gen_passport_server, mint_token):
    token = mint_token("controlled", "mallory", "--missing-visa", "rcr-training")
    expect_refusal(gen_passport_server, "permissiondenied", sql_attempt(gen_passport_server, token, "SELECT COUNT(*) FROM variant"))


# --------------------------------------------------------------------------------------------------
# Valid passports, data above the tier, every SQL path
# --------------------------------------------------------------------------------------------------

ABOVE_REGISTERED = {
    "direct": "SELECT * FROM genotype",
    "count": "SELECT COUNT(*) FROM variant",
    "subquery": "SELECT COUNT(*) FROM person WHERE person_id IN (SELECT person_id FROM genotype)",
    "exists": "SELECT COUNT(*) FROM person p WHERE EXISTS (SELECT 1 FROM genotype g WHERE g.person_id = p.person_id)",
    "scalar": "SELECT (SELECT COUNT(*) FROM variant) AS n",
    "cte": "WITH g AS (SELECT * FROM genotype) SELECT COUNT(*) FROM g",
    "union": "SELECT person_id FROM person UNION SELECT person_id FROM genotype",
    "join": "SELECT COUNT(*) FROM person JOIN genotype USING (person_id)",
    "qualified": "SELECT COUNT(*) FROM strata.public.genotype",
    "quoted": 'SELECT COUNT(*) FROM "genotype"',
    "case": "SELECT COUNT(*) FROM GENOTYPE",
    "lateral": "SELECT COUNT(*) FROM person p, LATERAL (SELECT * FROM genotype g WHERE g.person_id = p.person_id)",
    "explain": "EXPLAIN SELECT * FROM genotype",
    "controlled-column": "SELECT birth_datetime FROM person",
    "controlled-column-filter": "SELECT COUNT(*) FROM person WHERE month_of_birth = 1",
    "controlled-column-order": "SELECT person_id FROM person ORDER BY day_of_birth LIMIT 1",
    "no-such-table": "SELECT * FROM secret_table",
}


@pytest.mark.parametrize("path", list(ABOVE_REGISTERED))
def test_registered_never_reaches_controlled_data(gen_passport_server, mint_token, path):
    token = mint_token("registered", "rita")
    expect_refusal(gen_passport_server, "permissiondenied", sql_attempt(gen_passport_server, token, ABOVE_REGISTERED[path]))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM person",
        "SELECT COUNT(*) FROM concept WHERE concept_id IN (SELECT condition_concept_id FROM condition_occurrence)",
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'person'",
        "EXPLAIN SELECT * FROM measurement",
    ],
    ids=["direct", "subquery", "information-schema", "explain"],
)
def test_public_never_reaches_registered_data(gen_passport_server, mint_token, sql):
    token = mint_token("public", "pat")
    attempt = sql_attempt(gen_passport_server, token, sql)
    if "information_schema" in sql:
        # information_schema lists only what the caller may read: nothing about person.
        assert attempt() == [{"count(*)": 0}]
        return
    expect_refusal(gen_passport_server, "permissiondenied", attempt)


def test_information_schema_lists_only_the_tier(gen_passport_server, mint_token):
    conn = gen_passport_server.connect(token=mint_token("registered", "rita"))
    cur = conn.cursor()
    cur.execute("SELECT DISTINCT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    names = {r["table_name"] for r in cur.fetch_arrow_table().to_pylist()}
    assert "person" in names and "genotype" not in names and "variant" not in names
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'person'")
    cols = {r["column_name"] for r in cur.fetch_arrow_table().to_pylist()}
    assert "year_of_birth" in cols and "birth_datetime" not in cols


# --------------------------------------------------------------------------------------------------
# Statements that are not queries
# --------------------------------------------------------------------------------------------------

NOT_QUERIES = {
    "create-table": "CREATE TABLE t AS SELECT 1",
    "drop": "DROP TABLE person",
    "insert": "INSERT INTO person (person_id) VALUES (1)",
    "delete": "DELETE FROM person",
    "copy": "COPY person TO '/tmp/leak.parquet'",
    "set": "SET datafusion.execution.target_partitions = 1",
    "external-table": "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'",
    "create-function": "CREATE FUNCTION f(x INT) RETURNS INT RETURN x",
    "create-view": "CREATE VIEW v AS SELECT * FROM person",
    "explain-analyze": "EXPLAIN ANALYZE SELECT COUNT(*) FROM person",
}


@pytest.mark.parametrize("kind", list(NOT_QUERIES))
def test_statements_other_than_queries_are_refused(gen_passport_server, mint_token, kind):
    token = mint_token("controlled", "carol")
    expect_refusal(gen_passport_server, "permissiondenied", sql_attempt(gen_passport_server, token, NOT_QUERIES[kind]))
    assert not Path("/tmp/leak.parquet").exists()


def test_update_command_is_refused(gen_passport_server, mint_token):
    def attempt():
        conn = gen_passport_server.connect(token=mint_token("controlled", "carol"))
        try:
            cur = conn.cursor()
            stmt = cur.adbc_statement
            stmt.set_sql_query("DELETE FROM person")
            return stmt.execute_update()
        finally:
            conn.close()

    expect_refusal(gen_passport_server, "permissiondenied", attempt)


def test_substrait_plans_are_refused(gen_passport_server, mint_token):
    def attempt():
        conn = gen_passport_server.connect(token=mint_token("controlled", "carol"))
        try:
            cur = conn.cursor()
            stmt = cur.adbc_statement
            stmt.set_substrait_plan(b"\x0a\x00")
            return stmt.execute_query()
        finally:
            conn.close()

    expect_refusal(gen_passport_server, "unimplemented", attempt, outcome="unsupported")


# --------------------------------------------------------------------------------------------------
# Replaying another principal's tickets and prepared-statement handles (raw Flight)
# --------------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any(message: str, payload: bytes) -> bytes:
    return _field(1, (SQL_NS + message).encode()) + _field(2, payload)


def _fields(buf: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        assert key & 7 == 2, "only length-delimited fields expected"
        n, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out[key >> 3] = buf[i : i + n]
        i += n
    return out


def _options(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def test_tickets_and_handles_are_bound_to_their_principal(gen_passport_server, mint_token):
    alice = mint_token("controlled", "alice")
    bob = mint_token("controlled", "bob")
    client = flight.connect(gen_passport_server.uri)
    try:
        # A statement ticket made by alice.
        command = _any("CommandStatementQuery", _field(1, b"SELECT person_id FROM person LIMIT 3"))
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command), _options(alice))
        ticket = info.endpoints[0].ticket
        expect_refusal(gen_passport_server, "notfound", lambda: client.do_get(ticket, _options(bob)).read_all(), "invalid")
        # Nor alice with another passport: a lower tier, or aggregates-only egress.
        for other in (mint_token("registered", "alice"), mint_token("controlled", "alice", "--egress", "aggregates")):
            expect_refusal(gen_passport_server, "notfound", lambda: client.do_get(ticket, _options(other)).read_all(), "invalid")
        # Alice still can (the failed replay did not consume it).
        assert client.do_get(ticket, _options(alice)).read_all().num_rows == 3
        # A ticket is single-use.
        expect_refusal(gen_passport_server, "notfound", lambda: client.do_get(ticket, _options(alice)).read_all(), "invalid")

        # A prepared statement made by alice.
        action = flight.Action(
            "CreatePreparedStatement",
            _any("ActionCreatePreparedStatementRequest", _field(1, b"SELECT person_id FROM person LIMIT 2")),
        )
        result = list(client.do_action(action, _options(alice)))
        handle = _fields(_fields(result[0].body.to_pybytes())[2])[1]
        prepared = _any("CommandPreparedStatementQuery", _field(1, handle))
        descriptor = flight.FlightDescriptor.for_command(prepared)
        expect_refusal(gen_passport_server, "notfound", lambda: client.get_flight_info(descriptor, _options(bob)), "invalid")
        registered_alice = mint_token("registered", "alice")
        expect_refusal(
            gen_passport_server, "notfound", lambda: client.get_flight_info(descriptor, _options(registered_alice)), "invalid"
        )
        expect_refusal(
            gen_passport_server, "notfound", lambda: client.do_get(flight.Ticket(prepared), _options(bob)).read_all(), "invalid"
        )
        close = flight.Action("ClosePreparedStatement", _any("ActionClosePreparedStatementRequest", _field(1, handle)))
        expect_refusal(gen_passport_server, "notfound", lambda: list(client.do_action(close, _options(bob))), "invalid")
        # Alice's handle still works.
        info = client.get_flight_info(descriptor, _options(alice))
        assert client.do_get(info.endpoints[0].ticket, _options(alice)).read_all().num_rows == 2
    finally:
        client.close()


def test_error_messages_do_not_echo_values(gen_passport_server, mint_token):
    token = mint_token("controlled", "carol")
    with pytest.raises(Exception) as err:
        sql_attempt(gen_passport_server, token, "SELECT CAST(person_source_value || 'zz' AS INT) FROM person")()
    text = str(err.value)
    assert "zz" not in text and "cast" in text.lower()


@pytest.mark.parametrize(
    "sql",
    [
        # DataFusion's own function errors quote the argument they failed on ("Month value '30'
        # is out of range": month_of_birth + 20).
        "SELECT make_date(2000, month_of_birth + 20, 1) FROM person",
        "SELECT make_date(2000, 1, year_of_birth - 1860) FROM person",
        "SELECT to_timestamp(CAST(year_of_birth AS VARCHAR) || '-99-99') FROM person",
        "SELECT arrow_cast(CAST(year_of_birth AS VARCHAR) || 'x', 'Int32') FROM person",
    ],
    ids=["make_date-month", "make_date-day", "to_timestamp", "arrow_cast"],
)
def test_execution_errors_do_not_echo_participant_values(gen_passport_server, mint_token, sql):
    token = mint_token("controlled", "carol")
    with pytest.raises(Exception) as err:
        sql_attempt(gen_passport_server, token, sql)()
    text = str(err.value)
    # No quoted number, no year of birth (19xx, 20xx) in the message.
    assert not re.search(r"'\d+'|\b(19|20)\d\d\b", text), text


@pytest.mark.parametrize("egress", ["aggregates", "rows"])
def test_a_filter_failing_inside_the_scan_quotes_no_value(gen_passport_server, mint_token, gen_duck, egress):
    """A cheap filter on one participant runs first inside the Parquet reader (pushed down), then
    a cast fails on that participant's own values: the error must not quote them, through either
    door's message (the reader wraps the cast error in its own)."""
    from helpers import Caller

    person = gen_duck.execute(
        "SELECT person_id FROM measurement WHERE measurement_source_value IS NOT NULL ORDER BY 1 LIMIT 1"
    ).fetchone()[0]
    values = {
        r[0]
        for r in gen_duck.execute(
            f"SELECT DISTINCT measurement_source_value FROM measurement WHERE person_id = {person} "
            "AND measurement_source_value IS NOT NULL"
        ).fetchall()
    }
    assert values
    caller = Caller(gen_passport_server, mint_token, f"redteam-cast-{egress}", egress=egress)
    for sql in (
        f"SELECT COUNT(*) AS n FROM measurement WHERE person_id = {person} "
        "AND CAST(measurement_source_value AS INT) > 0",
        f"SELECT COUNT(*) AS n FROM measurement WHERE person_id = {person} "
        "AND 100 / (CAST(measurement_concept_id AS BIGINT) - CAST(measurement_concept_id AS BIGINT)) > 0",
    ):
        with pytest.raises(Exception) as err:
            caller.rows(sql)
        message = str(err.value)
        leaked = [v for v in values if v in message]
        assert not leaked, message
        assert "stored data" not in message, message
