"""Running the server (DESIGN.md, "Operations", `[tls]`): mutual TLS on every listener, the JWKS
reloaded when its file changes, and SIGTERM draining the running queries and flushing the audit
log before the process exits."""

import contextlib
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from helpers import Caller, audit, certificate_authority, mint, passport_server, signed, status_text

BIG = "SELECT * FROM measurement"  # tens of megabytes: streams for as long as its reader reads
SLOW = (
    "SELECT a.measurement_id FROM measurement a JOIN measurement b "
    "ON a.value_as_number < b.value_as_number ORDER BY 1 LIMIT 1"
)


# ------------------------------------------------------------------------------------------------
# Mutual TLS
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mtls")
    ca = certificate_authority(folder, "strata")
    rogue_ca = certificate_authority(folder, "rogue")
    return {
        "ca": ca[0],
        "server": signed(folder, "server", ca, server=True),
        "client": signed(folder, "client", ca, server=False),
        "rogue": signed(folder, "rogue-client", rogue_ca, server=False),
    }


def test_mutual_tls_admits_only_clients_with_a_certificate_of_the_ca(
    gen_dataset, passport_keys, work_root, mint_token, mtls
):
    cert, key = mtls["server"]
    config = f'[tls]\ncert = "{cert}"\nkey = "{key}"\nclient_ca = "{mtls["ca"]}"\n'
    token = mint_token("controlled", "mtls-ready", "--ttl", "1d")
    srv = passport_server(gen_dataset, passport_keys, work_root, "mtls", token, config)
    srv.tls_root = mtls["ca"].read_text()
    pem = lambda pair: (pair[0].read_text(), pair[1].read_text())  # noqa: E731
    srv.tls_client = pem(mtls["client"])
    alice = Caller(srv, mint_token, "mtls-alice")
    with srv:
        # Flight SQL: the certificate and a passport.
        assert alice.value("SELECT COUNT(*) AS n FROM person") > 0
        time.sleep(0.5)  # the audit records of that query are written in the background
        recorded = len(audit(srv))
        for certificate in (None, pem(mtls["rogue"])):
            srv.tls_client = certificate
            with pytest.raises(Exception) as err:
                alice.table("SELECT 1 AS one")
            assert "unauthenticated" not in status_text(err.value), "refused before any passport check"
        srv.tls_client = pem(mtls["client"])
        time.sleep(0.5)
        assert len(audit(srv)) == recorded, "a call without the right certificate reached the service"
        # A certificate is not a passport.
        with pytest.raises(Exception) as err:
            Caller(srv, lambda *a: "not-a-passport", "nobody").table("SELECT 1 AS one")
        assert "unauthenticated" in status_text(err.value)

        # PostgreSQL: TLS with the client certificate, or nothing.
        def pg(**kw):
            return psycopg.connect(host="127.0.0.1", port=srv.pg_port, user="mtls-alice", password=alice.token,
                                   dbname="strata", connect_timeout=10, **kw)  # fmt: skip

        client_cert, client_key = mtls["client"]
        time.sleep(0.5)
        recorded = len(audit(srv))
        with pg(sslmode="verify-full", sslrootcert=str(mtls["ca"]), sslcert=str(client_cert),
                sslkey=str(client_key)) as conn:  # fmt: skip
            assert conn.info.pgconn.ssl_in_use
            assert conn.execute("SELECT COUNT(*) FROM person").fetchone()[0] > 0
        with pytest.raises(psycopg.OperationalError) as err:
            pg(sslmode="disable")
        assert "client certificate" in str(err.value), err.value
        with pytest.raises(psycopg.OperationalError):
            pg(sslmode="require", sslcert="/nonexistent", sslkey="/nonexistent")
        rogue_cert, rogue_key = mtls["rogue"]
        with pytest.raises(psycopg.OperationalError):
            pg(sslmode="require", sslcert=str(rogue_cert), sslkey=str(rogue_key))
        time.sleep(0.5)
        # Nothing refused for its certificate reached the query service (not even its passport
        # check); the PostgreSQL connection with the right certificate left its records.
        after = audit(srv)[recorded:]
        assert {r["door"] for r in after} == {"pg"}, after
        assert all(r["sub"] == "mtls-alice" and r["outcome"] in ("ok", "started") for r in after), after


def test_client_ca_without_a_server_certificate_is_refused(gen_dataset, passport_keys, work_root, mint_token, mtls):
    srv = passport_server(gen_dataset, passport_keys, work_root, "mtls-bad", "x", f'[tls]\nclient_ca = "{mtls["ca"]}"\n')
    with pytest.raises(AssertionError) as err:
        srv.start()
    assert "client_ca" in str(err.value)


# ------------------------------------------------------------------------------------------------
# JWKS reload
# ------------------------------------------------------------------------------------------------


def keys(folder: Path) -> Path:
    from helpers import run_strata

    run_strata("keys", "--out", folder)
    return folder


def write_jwks(path: Path, *key_folders: Path):
    """Replaces the JWKS file atomically, as an operator's deployment would."""
    merged = {"keys": [k for f in key_folders for k in json.loads((f / "jwks.json").read_text())["keys"]]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged))
    tmp.replace(path)


def test_the_jwks_is_reloaded_when_its_file_changes(gen_dataset, work_root, tmp_path):
    """Key rotation and revocation without a restart: a new key is trusted from the next call, a
    removed key's passports are refused at once (also those verified before and cached), and a
    file that does not parse changes nothing."""
    old, new = keys(tmp_path / "old"), keys(tmp_path / "new")
    jwks = tmp_path / "trusted.jwks"
    write_jwks(jwks, old)
    state = work_root / "jwks-reload-state"
    config = work_root / "jwks-reload.toml"
    config.write_text(f'state_dir = "{state}"\n')
    from helpers import StrataServer

    ready = mint(old, "controlled", "ready", "--ttl", "1d")
    srv = StrataServer(gen_dataset, extra_args=["--jwks", jwks, "--config", config], token=ready,
                       log_dir=work_root / "logs-jwks-reload")  # fmt: skip
    by_old = mint(old, "controlled", "rotating-old", "--ttl", "1d")
    by_new = mint(new, "controlled", "rotating-new", "--ttl", "1d")

    def answers(token) -> bool:
        try:
            conn = srv.connect(token=token)
            cur = conn.cursor()
            cur.execute("SELECT 1 AS one")
            cur.fetch_arrow_table()
            conn.close()
            return True
        except Exception as e:  # noqa: BLE001 - the refusal is what is tested
            assert "unauthenticated" in status_text(e), e
            return False

    def pg_session(token, sub):
        return psycopg.connect(host="127.0.0.1", port=srv.pg_port, user=sub, password=token, dbname="strata",
                               autocommit=True)  # fmt: skip

    srv.pg = True
    with srv:
        session = pg_session(by_old, "rotating-old")
        assert session.execute("SELECT 1").fetchone() == (1,)
        assert answers(by_old) and not answers(by_new)
        write_jwks(jwks, old, new)  # rotation: both trusted for a while
        assert answers(by_new) and answers(by_old)
        write_jwks(jwks, new)  # the old key revoked
        assert not answers(by_old), "a revoked key's passport (verified and cached before) still answers"
        assert answers(by_new)
        # A PostgreSQL session that logged in with it stops answering at its next statement.
        with pytest.raises(psycopg.Error) as err:
            session.execute("SELECT COUNT(*) FROM person").fetchall()
        assert err.value.sqlstate == "28P01", err.value
        assert "no longer accepted" in str(err.value)
        session.close()
        jwks.write_text('{"keys": [')  # a broken edit
        assert answers(by_new) and not answers(by_old)
        log = srv.all_stderr()
        assert "trusted keys reloaded" in log
        assert "cannot be used" in log
        write_jwks(jwks, old)  # fixed again, to the old key
        assert answers(by_old) and not answers(by_new)


# ------------------------------------------------------------------------------------------------
# SIGTERM: drain, stop, flush
# ------------------------------------------------------------------------------------------------


def abandon(*handles):
    """Closes client handles whose server has gone; a cursor whose close failed is marked closed,
    or its finalizer would close it again (and fail) at some later garbage collection."""
    for handle in handles:
        try:
            handle.close()
        except Exception:  # noqa: BLE001 - the server is gone: nothing to close there
            if hasattr(handle, "_closed"):
                handle._closed = True


def wait_exit(srv, timeout: float = 60) -> int:
    code = srv.proc.wait(timeout=timeout)
    srv.returncode = code
    srv.proc = None
    return code


def test_sigterm_lets_a_running_query_finish_and_flushes_its_record(
    gen_dataset, gen_duck, start_passport_server, mint_token
):
    srv = start_passport_server(gen_dataset, "drain")
    reader = Caller(srv, mint_token, "drain-reader")
    late = Caller(srv, mint_token, "drain-late")
    expected = gen_duck.execute("SELECT COUNT(*) FROM measurement").fetchone()[0]
    pg = psycopg.connect(host="127.0.0.1", port=srv.pg_port, user="drain-late", password=late.token, dbname="strata",
                         autocommit=True)  # fmt: skip
    conn = srv.connect(token=reader.token)
    cur = conn.cursor()
    cur.execute(BIG)
    batches = cur.fetch_record_batch()
    rows = batches.read_next_batch().num_rows
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # Draining: a new query on a connection opened before is refused (57P01); new connections are
    # not accepted.
    with pytest.raises(psycopg.Error) as err:
        pg.execute("SELECT COUNT(*) FROM person").fetchall()
    assert err.value.sqlstate == "57P01", err.value
    with pytest.raises(Exception):
        late.table("SELECT 1 AS one")
    # The running query is read to its end, whole.
    for batch in batches:
        rows += batch.num_rows
    assert rows == expected
    # Closing the prepared statement needs a new connection (the old one was told to go away):
    # refused now, as every new connection is.
    abandon(batches, cur, conn, pg)
    assert wait_exit(srv) == 0
    # The end record is on disk when the process has gone.
    ends = [r for r in audit(srv) if r["phase"] == "end" and r.get("statement") == BIG]
    assert len(ends) == 1 and ends[0]["outcome"] == "ok" and ends[0]["rows"] == expected, ends
    assert "audit log flushed" in srv.all_stderr()


def test_a_query_still_running_at_the_end_of_the_grace_is_stopped(gen_dataset, start_passport_server, mint_token):
    srv = start_passport_server(gen_dataset, "drain-grace", config="[limits]\nshutdown_grace_secs = 2\n")
    slow = Caller(srv, mint_token, "drain-slow")
    outcome = {}

    def run():
        try:
            slow.table(SLOW)
            outcome["result"] = "answered"
        except Exception as e:  # noqa: BLE001
            outcome["result"] = str(e)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while not [r for r in audit(srv) if r.get("statement") == SLOW and r["phase"] == "start"]:
        assert time.monotonic() < deadline, "the slow query never started"
        time.sleep(0.1)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert wait_exit(srv) == 0
    took = time.monotonic() - started
    worker.join(timeout=30)
    assert "shutting down" in outcome["result"], outcome
    assert took < 15, f"the server took {took:.1f} s to stop with a 2 s grace"
    ends = [r for r in audit(srv) if r["phase"] == "end" and r.get("statement") == SLOW]
    assert len(ends) == 1 and ends[0]["outcome"] == "cancelled", ends
    assert "shutting down" in ends[0]["error"]
    assert "were stopped" in srv.all_stderr()


def test_a_client_that_stopped_reading_does_not_hold_the_shutdown(gen_dataset, start_passport_server, mint_token):
    """A client reads one batch of a large result and then nothing, its connection open: the
    server stops its query at the end of the grace, closes the connection, exits, and the query's
    end record (`cancelled`) is on disk. The same for a PostgreSQL cursor left half read."""
    srv = start_passport_server(gen_dataset, "drain-stuck", config="[limits]\nshutdown_grace_secs = 1\n")
    stuck = Caller(srv, mint_token, "drain-stuck")
    conn = srv.connect(token=stuck.token)
    cur = conn.cursor()
    cur.execute(BIG)
    batches = cur.fetch_record_batch()
    batches.read_next_batch()
    pg = psycopg.connect(host="127.0.0.1", port=srv.pg_port, user="drain-stuck", password=stuck.token, dbname="strata")
    pg_cursor = pg.cursor(name="half_read")
    pg_cursor.execute("SELECT * FROM measurement")
    assert len(pg_cursor.fetchmany(10)) == 10
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert wait_exit(srv) == 0
    assert time.monotonic() - started < 20
    ends = [r for r in audit(srv) if r["phase"] == "end" and r.get("statement") in (BIG, "SELECT * FROM measurement")]
    doors = sorted(r["door"] for r in ends)
    assert doors == ["flight", "pg"], ends
    assert all(r["outcome"] == "cancelled" for r in ends), ends
    abandon(batches, cur, conn, pg)
