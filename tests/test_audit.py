"""Audit log (DESIGN.md "Audit"): one durable record per request, written before results stream,
kept through a crash, printed and filtered by `strata audit`.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from helpers import one_line_error, run_sql, run_strata, wait_for


@pytest.fixture()
def audit_server(gen_dataset, start_passport_server, tmp_work):
    """A server of its own per test: its audit log holds that test's records only."""
    srv = start_passport_server(gen_dataset, "audit", root=tmp_work)
    yield srv
    srv.stop()


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_records(path: Path, pred, what: str) -> list[dict]:
    found: list[dict] = []

    def ready():
        found[:] = [r for r in records(path) if pred(r)]
        return bool(found)

    wait_for(ready, timeout=10, what=what)
    return found


def test_every_request_leaves_a_record(audit_server, mint_token):
    path = audit_server.audit_path
    token = mint_token("registered", "rita")
    conn = audit_server.connect(
        token=token, **{"adbc.flight.sql.rpc.call_header.x-strata-workspace": "ws-cancer-42"}
    )
    cur = conn.cursor()
    sql = "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1"
    cur.execute(sql)
    rows = cur.fetch_arrow_table().num_rows
    cur.close()

    ends = wait_records(path, lambda r: r["sub"] == "rita" and r["phase"] == "end", "end record")
    end = ends[-1]
    start = next(r for r in records(path) if r["request_id"] == end["request_id"] and r["phase"] == "start")
    for r in (start, end):
        assert r["statement"] == sql
        assert r["issuer"] == "https://dev.strata.local/issuer"
        assert r["tier"] == "registered" and r["egress_mode"] == "rows"
        assert r["workspace"] == "ws-cancer-42"
        assert r["tables"] == ["person:registered"]
        assert len(r["visa_ids"]) == 3
        assert r["door"] == "flight"
        assert len(r["statement_sha256"]) == 64 and len(r["plan_sha256"]) == 64
    assert start["outcome"] == "started" and start["rows"] is None
    assert end["outcome"] == "ok" and end["rows"] == rows and end["bytes"] > 0
    assert end["duration_ms"] >= 0 and end["egress_alert"] is False
    # The planning request (prepare, or GetFlightInfo of a statement) is a record of its own.
    assert any(r["action"] in ("prepare", "plan_statement") and r["statement"] == sql and r["sub"] == "rita" for r in records(path))

    # A refusal.
    with pytest.raises(Exception):
        run_sql(audit_server, token, "SELECT COUNT(*) FROM genotype")
    denied = wait_records(path, lambda r: r["sub"] == "rita" and r["outcome"] == "denied", "denied record")
    assert denied[-1]["statement"] == "SELECT COUNT(*) FROM genotype"
    assert "controlled" in denied[-1]["error"]

    # An unauthenticated attempt: recorded without trusting the token's claims.
    with pytest.raises(Exception):
        run_sql(audit_server, mint_token("controlled", "mallory", "--forge"), "SELECT 1")
    unauth = wait_records(path, lambda r: r["outcome"] == "unauthenticated", "unauthenticated record")
    assert unauth[-1]["sub"] == "" and unauth[-1]["action"] == "authenticate"

    # Metadata commands.
    conn.adbc_get_objects(depth="tables").read_all()
    wait_records(path, lambda r: r["sub"] == "rita" and r["action"] == "get_tables", "get_tables record")


def test_started_record_survives_a_crash(audit_server, mint_token):
    """The start record is on disk before the first batch; SIGKILL right after keeps it."""
    path = audit_server.audit_path
    token = mint_token("controlled", "crashy")
    sql = "SELECT person_id FROM person ORDER BY person_id LIMIT 7"
    t = run_sql(audit_server, token, sql)
    assert t.num_rows == 7
    os.kill(audit_server.proc.pid, signal.SIGKILL)
    audit_server.proc.wait(timeout=10)
    starts = [r for r in records(path) if r["sub"] == "crashy" and r["phase"] == "start"]
    assert starts and starts[-1]["statement"] == sql
    # Every line is whole JSON (no torn write).
    for line in path.read_text().splitlines():
        json.loads(line)
    audit_server.proc = None


def test_strata_audit_prints_and_filters(audit_server, mint_token):
    path = audit_server.audit_path
    ok_token = mint_token("registered", "uma")
    run_sql(audit_server, ok_token, "SELECT COUNT(*) AS n FROM person")
    with pytest.raises(Exception):
        run_sql(audit_server, ok_token, "SELECT * FROM variant")
    wait_records(path, lambda r: r["sub"] == "uma" and r["phase"] == "end", "end record")
    wait_records(path, lambda r: r["sub"] == "uma" and r["outcome"] == "denied", "denied record")

    out = run_strata("audit", "--log", path, "--sub", "uma").stdout.splitlines()
    assert any("SELECT COUNT(*) AS n FROM person" in line and " ok " in line for line in out)
    denied = run_strata("audit", "--log", path, "--sub", "uma", "--outcome", "denied", "--json").stdout.splitlines()
    assert denied and all(json.loads(line)["outcome"] == "denied" for line in denied)
    assert any(json.loads(line)["statement"] == "SELECT * FROM variant" for line in denied)
    # The start and end lines of a query come out as one request.
    joined = [json.loads(line) for line in run_strata("audit", "--log", path, "--sub", "uma", "--json").stdout.splitlines()]
    executed = [r for r in joined if r["action"].startswith("execute_")]
    assert len(executed) == 1 and executed[0]["outcome"] == "ok" and executed[0]["rows"] == 1
    none = run_strata("audit", "--log", path, "--sub", "nobody").stdout
    assert none.strip() == ""


def test_strata_audit_bad_input(tmp_work):
    proc = run_strata("audit", "--log", tmp_work / "missing.jsonl", check=False)
    one_line_error(proc, "audit log")
    bad = tmp_work / "bad.jsonl"
    bad.write_text('{"not": "a record"}\n')
    proc = run_strata("audit", "--log", bad, check=False)
    one_line_error(proc, "not an audit record")
    proc = run_strata("audit", check=False)
    assert proc.returncode != 0
