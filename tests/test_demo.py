"""`strata demo` (the README's first command): makes a dataset and dev keys, serves them with
passports required, and prints working dev tokens for each tier and egress mode."""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from helpers import free_port, status_text, strata_bin


def connect(port: int, token: str | None):
    import adbc_driver_flightsql.dbapi as flight_sql

    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {token}"} if token else {}
    return flight_sql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=kwargs, autocommit=True)


def run(port, token, sql):
    conn = connect(port, token)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def test_demo_serves_with_printed_tokens(tmp_work):
    port, pg_port = free_port(), free_port()
    out = (tmp_work / "stdout").open("w")
    err = (tmp_work / "stderr").open("w")
    proc = subprocess.Popen(
        [str(strata_bin()), "demo", "--persons", "300", "--listen", f"127.0.0.1:{port}",
         "--pg-listen", f"127.0.0.1:{pg_port}"],  # fmt: skip
        cwd=tmp_work,
        stdout=out,
        stderr=err,
    )
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C" not in (tmp_work / "stdout").read_text():
            assert proc.poll() is None, (tmp_work / "stderr").read_text()[-3000:]
            assert time.monotonic() < deadline, "demo did not print its banner"
            time.sleep(0.2)
        banner = (tmp_work / "stdout").read_text()
        tokens = {}
        for name in ("public", "registered", "controlled", "controlled-aggregates"):
            path = tmp_work / ".strata" / "tokens" / f"{name}.jwt"
            assert str(path) in banner
            tokens[name] = path.read_text().strip()
        assert f"grpc://127.0.0.1:{port}" in banner
        # The PostgreSQL line as printed works as printed.
        line = next(ln for ln in banner.splitlines() if "psql" in ln and "PGPASSWORD" in ln)
        assert f"port={pg_port}" in line and "user=demo-registered" in line
        shown = subprocess.run(
            ["bash", "-c", line.strip() + ' -X -A -t -c "SELECT COUNT(*) FROM person"'],
            cwd=tmp_work, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert 0 < int(shown.stdout.strip()) <= 300

        assert run(port, tokens["controlled"], "SELECT COUNT(*) AS n FROM person") == [{"n": 300}]
        assert len(run(port, tokens["registered"], "SELECT person_id FROM person LIMIT 5")) == 5
        assert run(port, tokens["controlled-aggregates"], "SELECT COUNT(*) AS n FROM person") == [{"n": 300}]
        with pytest.raises(Exception) as e:
            run(port, tokens["controlled-aggregates"], "SELECT person_id FROM person")
        assert "permissiondenied" in status_text(e.value)
        with pytest.raises(Exception) as e:
            run(port, None, "SELECT 1")
        assert "unauthenticated" in status_text(e.value)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()
        err.close()
    assert proc.returncode == 0, (tmp_work / "stderr").read_text()[-3000:]
