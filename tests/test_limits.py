"""What one query may take (DESIGN.md, "Operations", `[limits]`): memory per query (spilling where
DataFusion can), a time limit, a number of queries at once and each principal's share. A limit hit
is RESOURCE_EXHAUSTED (53400 through the PostgreSQL door) and never a partial result; a client that
goes away cancels its query and gives its turn back.

The slow statements are nested loop joins of `measurement` with itself (about 140,000 rows a side at
the suite's size): far past every limit below, and without a row before they end."""

import contextlib
import json
import subprocess
import sys
import time

import duckdb
import psycopg
import pytest

from helpers import Caller, status_text

SLOW_ROWS = (
    "SELECT a.measurement_id FROM measurement a JOIN measurement b "
    "ON a.value_as_number < b.value_as_number ORDER BY 1 LIMIT 1"
)
# An aggregate of participant data: for a passport, computed whole and protected before it is
# described (the Flight SQL GetFlightInfo call), not streamed.
SLOW_PROTECTED = (
    "SELECT COUNT(*) AS n FROM measurement a JOIN measurement b "
    "ON a.value_as_number < b.value_as_number"
)
QUICK = "SELECT COUNT(*) AS n FROM person"


def limits(**settings) -> str:
    return "[limits]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


def audit_ends(srv, statement: str) -> list[dict]:
    """The audit end records of `statement` (the log is written in the background: read until one
    is there, for a few seconds)."""
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in srv.audit_path.read_text().splitlines() if line.strip()]
        ends = [r for r in records if r.get("phase") == "end" and r.get("statement") == statement]
        if ends or time.monotonic() > deadline:
            return ends
        time.sleep(0.1)


def refused(caller: Caller, sql: str) -> str:
    """The message of a RESOURCE_EXHAUSTED refusal of `sql` (anything else fails the test)."""
    return caller.refused(sql, status="resourceexhausted")


def test_a_query_past_its_time_limit_ends_with_an_error(gen_dataset, start_passport_server, mint_token):
    srv = start_passport_server(
        gen_dataset,
        "limits-time",
        config=limits(query_timeout_secs=2, principal_concurrent_queries=1, queue_timeout_secs=1),
    )
    alice = Caller(srv, mint_token, "limits-time-alice")
    for sql in (SLOW_ROWS, SLOW_PROTECTED):
        message = refused(alice, sql)
        assert "time limit of 2 s" in message, message
        [end] = audit_ends(srv, sql)
        assert end["outcome"] == "error" and "time limit" in end["error"], end
        assert end["rows"] in (None, 0), end
    # The stopped queries gave their turn back: alice's one turn is free (else this waits 1 s and
    # is refused).
    assert alice.value(QUICK) == 3000


def test_memory_past_the_limit_spills_or_fails_cleanly(
    gen_dataset, start_passport_server, gen_passport_server, mint_token, gen_duck
):
    srv = start_passport_server(gen_dataset, "limits-memory", config=limits(query_memory_mb=32))
    alice = Caller(srv, mint_token, "limits-memory-alice")
    # A sort of every measurement (21 MB as Arrow, more while sorted) spills to disk past 32 MiB,
    # and the answer is exact.
    sql = "SELECT * FROM measurement ORDER BY value_as_number NULLS FIRST, measurement_id"
    got = alice.table(sql).column("measurement_id").to_pylist()
    want = [row[0] for row in gen_duck.execute(sql).fetchall()]
    assert len(got) > 100_000 and got == want
    [logged] = [r for r in srv.query_records() if r.get("statement") == sql]
    assert int(logged["spilled_bytes"]) > 0, logged
    # A hash join's build side cannot spill: with either side of this one (21 MB as Arrow) past
    # a 16 MiB limit the query fails, naming the operator and the setting, and no row is
    # released.
    small = start_passport_server(gen_dataset, "limits-memory-small", config=limits(query_memory_mb=16))
    bob = Caller(small, mint_token, "limits-memory-bob")
    join = "SELECT a.*, b.* FROM measurement a JOIN measurement b ON a.measurement_id = b.measurement_id"
    message = refused(bob, join)
    assert "memory" in message and "limits.query_memory_mb" in message and "HashJoin" in message, message
    [end] = audit_ends(small, join)
    assert end["outcome"] == "error", end
    # The same join fits the suite's server with the default limit: the refusal was the limit's.
    carol = Caller(gen_passport_server, mint_token, "limits-memory-carol")
    assert carol.table(join).num_rows == len(want)


def _run_in_child(uri: str, token: str, sql: str) -> subprocess.Popen:
    """`sql` run by another process (another client): killed, it goes away mid-query."""
    code = (
        "import sys, adbc_driver_flightsql.dbapi as fs\n"
        "c = fs.connect(sys.argv[1], db_kwargs={'adbc.flight.sql.authorization_header': 'Bearer ' + sys.argv[2]})\n"
        "cur = c.cursor(); print('started', flush=True); cur.execute(sys.argv[3]); cur.fetch_arrow_table()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, uri, token, sql], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert child.stdout.readline().strip() == "started"
    return child


def _wait_running(srv, statement: str, n: int = 1) -> None:
    """Until `n` start records of `statement` are in the audit log."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = [json.loads(line) for line in srv.audit_path.read_text().splitlines() if line.strip()]
        if sum(r.get("phase") == "start" and r.get("statement") == statement for r in records) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{statement!r} never started")


@pytest.mark.parametrize("sql", [SLOW_ROWS, SLOW_PROTECTED], ids=["streamed", "protected"])
def test_a_client_gone_cancels_its_query_and_frees_its_turn(gen_dataset, start_passport_server, mint_token, sql):
    # One query at a time, a long time limit and a short wait for a turn: a query left running
    # by a client gone would refuse everyone else's.
    name = f"limits-cancel-{'rows' if sql == SLOW_ROWS else 'protected'}"
    srv = start_passport_server(
        gen_dataset, name, config=limits(max_concurrent_queries=1, queue_timeout_secs=2, query_timeout_secs=600)
    )
    alice, bob = Caller(srv, mint_token, f"{name}-alice"), Caller(srv, mint_token, f"{name}-bob")
    child = _run_in_child(srv.uri, alice.token, sql)
    try:
        _wait_running(srv, sql)
        # While it runs, the one turn is taken: bob waits 2 s and is refused.
        message = refused(bob, QUICK)
        assert "limit of 1 queries" in message, message
    finally:
        child.kill()
        child.wait()
    [end] = audit_ends(srv, sql)
    assert end["outcome"] == "cancelled", end
    # The turn is back: bob's query runs (within the 2 s wait, which it could not have had if the
    # query still ran until its 600 s limit).
    assert bob.value(QUICK) == 3000


def test_each_principal_has_a_share(gen_dataset, start_passport_server, mint_token):
    srv = start_passport_server(
        gen_dataset,
        "limits-share",
        config=limits(
            principal_concurrent_queries=1, principal_queries_per_minute=3, queue_timeout_secs=2, query_timeout_secs=600
        ),
    )
    alice, bob = Caller(srv, mint_token, "limits-share-alice"), Caller(srv, mint_token, "limits-share-bob")
    child = _run_in_child(srv.uri, alice.token, SLOW_ROWS)
    try:
        _wait_running(srv, SLOW_ROWS)
        # alice has her one query running: another waits for it 2 s, then is refused; bob's runs.
        message = refused(alice, QUICK)
        assert "you have 1 queries running" in message, message
        assert bob.value(QUICK) == 3000
    finally:
        child.kill()
        child.wait()
    audit_ends(srv, SLOW_ROWS)
    # Her quota of 3 starts a minute: the slow query and the one that waited in vain were two;
    # one more runs, a fourth is refused at once.
    assert alice.value(QUICK) == 3000
    message = refused(alice, QUICK)
    assert "quota of 3 queries a minute" in message, message
    assert bob.value(QUICK) == 3000
    refusals = [
        json.loads(line)
        for line in srv.audit_path.read_text().splitlines()
        if '"limits-share-alice"' in line and "quota of 3" in line
    ]
    assert refusals and all(r["outcome"] == "error" for r in refusals), refusals


def test_a_limit_through_the_postgresql_door_is_53400(gen_dataset, start_passport_server, mint_token):
    srv = start_passport_server(gen_dataset, "limits-pg", config=limits(query_timeout_secs=2))
    alice = Caller(srv, mint_token, "limits-pg-alice")
    with psycopg.connect(
        host="127.0.0.1", port=srv.pg_port, user="limits-pg-alice", password=alice.token, dbname="strata"
    ) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(SLOW_ROWS).fetchall()
        assert err.value.sqlstate == "53400", err.value
        assert "time limit" in str(err.value)
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        assert conn.execute(QUICK).fetchone()[0] == 3000


@pytest.mark.parametrize(
    "setting", ["max_concurrent_queries = 0", "principal_concurrent_queries = 0", "query_timeout = 3"]
)
def test_bad_limits_stop_the_server_at_start(gen_dataset, tmp_work, setting):
    from helpers import strata_bin

    config = tmp_work / "bad.toml"
    config.write_text(f"[limits]\n{setting}\n")
    run = subprocess.run(
        [str(strata_bin()), "serve", "--dataset", str(gen_dataset), "--listen", "127.0.0.1:0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "invalid config" in run.stderr and setting.split()[0] in run.stderr, run.stderr
