"""Apache Superset 6.1 (a BI tool, driven through its REST API and a headless Chromium) through the
PostgreSQL-wire door: scripts/superset_check.py creates the database (the passport as password), a
dataset, a bar chart of participants by age group, fetches the chart's data and takes a screenshot
of it. A dashboard's passport (registered tier, aggregates-only egress) must get the protected
counts, the very ones Flight SQL gives the same principal, never a count of 1..20.

Superset lives in its own venv (.venv-superset, scripts/superset-requirements.txt) and needs
Debian's chromium and chromium-driver: scripts/test.sh (setup_superset_venv) provides both.

The kinds of dataset:
  - virtual: the SQL below as a dataset; Superset wraps it as a subquery and puts the chart metric's
    aggregate (MAX, see superset_check.chart_definition) around its `participants` column;
  - physical: the table `person`, the chart grouping by an ad-hoc CASE column with an ad-hoc
    COUNT(DISTINCT person_id). Superset checks a physical table by reflecting it with SQLAlchemy
    1.4 (columns, primary key, indexes, constraints, comments) through pg_catalog.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import Caller, repo_root

T = 20
RUN_TIMEOUT = 840  # seconds: a cold Superset start (metadata db upgrade) on a 2-core machine, Chromium


def superset_check_module():
    """scripts/superset_check.py for its SQL (it imports only `requests` at module level)."""
    path = repo_root() / "scripts" / "superset_check.py"
    spec = importlib.util.spec_from_file_location("superset_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECK = superset_check_module()


def superset_python() -> Path:
    p = Path(os.environ.get("STRATA_SUPERSET_PYTHON", repo_root() / ".venv-superset" / "bin" / "python"))
    assert p.exists(), f"Superset's venv is missing ({p}): run ./scripts/test.sh (setup_superset_venv)"
    return p


def chart_rows(rows: list[dict]) -> list[dict]:
    """Rows as superset_check.py writes chart-data.json: {age_group, participants}, sorted."""
    return CHECK.normalise([{"age_group": r["age_group"], "participants": r["participants"]} for r in rows])


def audit_records(srv, sub: str, after: int) -> list[dict]:
    lines = srv.audit_path.read_text().splitlines()[after:]
    return [r for r in map(json.loads, lines) if r.get("sub") == sub and r.get("door") == "pg"]


def audit_length(srv) -> int:
    return len(srv.audit_path.read_text().splitlines()) if srv.audit_path.exists() else 0


def failed_statements(records: list[dict]) -> list[tuple[str, str]]:
    return [
        (" ".join((r.get("statement") or "").split()), r.get("error") or "")
        for r in records
        if r.get("outcome") not in ("ok", "started")
    ]


def run_superset(srv, caller: Caller, sub: str, kind: str, expected: list[dict], work: Path):
    token_file = work / "passport.jwt"
    token_file.write_text(caller.token)
    token_file.chmod(0o600)
    expect_file = work / "expected.json"
    expect_file.write_text(json.dumps(expected, indent=2))
    out = work / "superset"
    cmd = [
        str(superset_python()), str(repo_root() / "scripts" / "superset_check.py"),
        "--pg-host", "127.0.0.1", "--pg-port", str(srv.pg_port), "--user", sub,
        "--password-file", str(token_file), "--dataset-kind", kind,
        "--expect-json", str(expect_file), "--out-dir", str(out),
    ]  # fmt: skip
    env = dict(os.environ)
    env.pop("STRATA_PG_PASSWORD", None)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=work, stdin=subprocess.DEVNULL
    )
    (work / "superset-check.log").write_text(proc.stdout + "\n---- stderr ----\n" + proc.stderr)
    return proc, out


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("kind", ["virtual", "physical"])
def test_superset_bar_chart_shows_the_protected_counts(kind, gen_passport_server, mint_token, tmp_work):
    srv = gen_passport_server
    sub = f"superset-{kind}"
    caller = Caller(srv, mint_token, sub, "registered", "aggregates")
    assert shutil.which("chromium") and shutil.which("chromedriver"), (
        "the chart's screenshot needs Chromium: run ./scripts/test.sh (apt-get install chromium chromium-driver)"
    )

    # What the dashboard's principal may see of the chart's question, asked through Flight SQL.
    expected = chart_rows(caller.rows(CHECK.VIRTUAL_SQL))
    counts = [r["participants"] for r in expected]
    assert any(n is not None for n in counts), f"Flight SQL released no count at all: {expected}"
    assert not any(n is not None and 1 <= n <= T for n in counts), expected

    start = audit_length(srv)
    proc, out = run_superset(srv, caller, sub, kind, expected, tmp_work)
    refused = failed_statements(audit_records(srv, sub, start))
    tail = "\n".join(proc.stdout.splitlines()[-40:]) + "\n" + proc.stderr[-3000:]

    assert proc.returncode == 0, f"superset_check.py exited {proc.returncode}:\n{tail}"
    assert refused == [], f"the door refused statements Superset sent: {refused}"

    chart = json.loads((out / "chart-data.json").read_text())
    assert chart == expected, f"chart data {chart} differs from Flight SQL's {expected}"
    assert not any(r["participants"] is not None and 1 <= r["participants"] <= T for r in chart), chart
    # The SQL Superset sent (the dataset's SQL wrapped as a subquery, or built on the table), asked
    # through Flight SQL by the same principal, gives the same protected answer.
    sent = (out / "chart-query.sql").read_text()
    assert chart_rows(caller.rows(sent)) == chart, sent
    assert (out / "chart.png").stat().st_size > 10_000, "no screenshot of the chart"
