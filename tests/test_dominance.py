"""Dominance (DESIGN.md "Disclosure control", every principal): a SUM or AVG cell, and anything
computed from one, is suppressed when a few participants dominate it — the (n, k) rule (n = 2,
k = 90 %) and the p % rule (p = 10 %). The generator plants two omeprazole users with quantities
far above everyone else's (`generate`'s module doc); ACRO, the tool trusted research
environments use for output checking, run on the per-participant contributions DuckDB computes
from the same Parquet files, is the independent oracle of which cells are disclosive.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import Caller, duck_query, repo_root

T = 20
OMEPRAZOLE = 923645
DOMINANT_QUANTITY = 50_000.0

# Omeprazole quantity by sex and 20-year birth cohort: cells of 10..60 users, the two dominant
# contributors in one or two of them.
STRATA_SQL = f"""
    SELECT p.gender_concept_id AS r, CAST(FLOOR(p.year_of_birth / 20.0) * 20 AS INT) AS c,
           SUM(d.quantity) AS total, AVG(d.quantity) AS mean, COUNT(DISTINCT d.person_id) AS n,
           SUM(d.quantity) / COUNT(*) AS ratio
    FROM drug_exposure d JOIN person p ON p.person_id = d.person_id
    WHERE d.drug_concept_id = {OMEPRAZOLE}
    GROUP BY 1, 2"""

# Each participant's contribution to each cell, for ACRO.
CONTRIBUTIONS_SQL = f"""
    SELECT p.gender_concept_id AS r, CAST(FLOOR(p.year_of_birth / 20.0) * 20 AS INT) AS c,
           d.person_id AS who, SUM(d.quantity) AS v
    FROM drug_exposure d JOIN person p ON p.person_id = d.person_id
    WHERE d.drug_concept_id = {OMEPRAZOLE}
    GROUP BY 1, 2, 3"""


def acro_python() -> Path:
    p = Path(os.environ.get("STRATA_ACRO_PYTHON", repo_root() / ".venv-acro" / "bin" / "python"))
    assert p.exists(), f"ACRO's venv is missing ({p}): run ./scripts/test.sh"
    return p


def acro_checks(rows) -> dict[tuple[str, str], list[str]]:
    spec = {"threshold": T, "n": 2, "k": 90, "p": 10, "rows": [[r["r"], r["c"], r["v"]] for r in rows]}
    proc = subprocess.run(
        [str(acro_python()), str(repo_root() / "tests" / "acro_oracle.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {tuple(k.split("|")): v for k, v in json.loads(proc.stdout).items()}


@pytest.fixture(scope="module")
def contributions(gen_duck):
    return duck_query(gen_duck, CONTRIBUTIONS_SQL).to_pylist()


@pytest.fixture(scope="module")
def oracle(contributions):
    return acro_checks(contributions)


@pytest.fixture(scope="module")
def truth(gen_duck):
    sql = STRATA_SQL.replace("SUM(d.quantity) / COUNT(*)", "SUM(d.quantity) / COUNT(*)::DOUBLE")
    return {(str(r["r"]), str(r["c"])): r for r in duck_query(gen_duck, sql).to_pylist()}


def test_dominant_contributors_are_planted(gen_duck):
    """The planted data makes the oracle decide something: two participants hold most of the
    omeprazole quantity of their cells, and nobody else comes near."""
    rows = duck_query(
        gen_duck,
        f"SELECT person_id, SUM(quantity) AS q FROM drug_exposure WHERE drug_concept_id = {OMEPRAZOLE} "
        f"AND quantity = {DOMINANT_QUANTITY} GROUP BY 1",
    ).to_pylist()
    assert len(rows) == 2
    whole = duck_query(
        gen_duck, f"SELECT COUNT(DISTINCT person_id) AS n, SUM(quantity) AS q FROM drug_exposure WHERE drug_concept_id = {OMEPRAZOLE}"
    ).to_pylist()[0]
    assert whole["n"] > 100
    # The whole omeprazole total is not dominated (the rest is more than 10 % of it) ...
    assert sum(r["q"] for r in rows) < 0.9 * whole["q"]


@pytest.mark.parametrize("egress", ["rows", "aggregates"])
def test_dominated_cells_are_suppressed_where_acro_says_they_are_disclosive(
    egress, gen_passport_server, mint_token, oracle, truth
):
    c = Caller(gen_passport_server, mint_token, f"dominance-{egress}", egress=None if egress == "rows" else egress)
    t = c.table(STRATA_SQL)
    got = {(str(r["r"]), str(r["c"])): r for r in t.to_pylist()}
    assert set(got) == set(truth)
    dominance_only = threshold = 0
    for key, row in got.items():
        checks = oracle[key]
        dominated = "NKCheck" in checks or "PPercentCheck" in checks
        small = "MinimumThresholdCheck" in checks
        assert small == (1 <= truth[key]["n"] <= T), (key, checks, truth[key])
        # Released exactly where ACRO finds the cell safe.
        want = dict(truth[key])
        if egress == "aggregates":
            # Computed from the rounded row count, as an aggregates-only principal sees it.
            rows = round(want["total"] / want["ratio"])
            want["ratio"] = want["total"] / (-(-rows // 20) * 20)
        for col in ("total", "mean", "ratio"):
            if dominated or small:
                assert row[col] is None, (key, col, checks, row)
            else:
                assert row[col] == pytest.approx(want[col]), (key, col, row, want)
        # The participant count is not a magnitude: only the threshold applies to it.
        if small:
            assert row["n"] is None
        else:
            n = truth[key]["n"]
            assert row["n"] == (n if egress == "rows" else -(-n // 20) * 20)
        dominance_only += dominated and not small
        threshold += small
    assert dominance_only >= 1, "no dominated cell above the threshold: the test proves nothing"
    md = t.schema.metadata
    # Three magnitude cells per dominated row; all four cells of a small row.
    assert int(md[b"strata.suppressed.dominance"]) == 3 * dominance_only
    assert int(md[b"strata.suppressed.threshold"]) == 4 * threshold
    assert int(md[b"strata.suppressed_cells"]) == 3 * dominance_only + 4 * threshold


def test_a_large_total_holding_the_dominant_contributors_is_released(gen_passport_server, mint_token, gen_duck):
    c = Caller(gen_passport_server, mint_token, "dominance-total")
    sql = f"SELECT SUM(quantity) AS q, AVG(quantity) AS a FROM drug_exposure WHERE drug_concept_id = {OMEPRAZOLE}"
    got = c.rows(sql)[0]
    want = duck_query(gen_duck, sql).to_pylist()[0]
    assert got["q"] == pytest.approx(want["q"]) and got["a"] == pytest.approx(want["a"])


def test_dominated_values_do_not_leak_through_outer_queries(gen_passport_server, mint_token):
    """A dominated cell used by an outer query of an aggregates-only principal is seen
    suppressed; a row-level principal's outer expression over it is masked at the output."""
    inner = STRATA_SQL
    released = [
        r["total"]
        for r in Caller(gen_passport_server, mint_token, "dominance-outer-dash-1", egress="aggregates").rows(inner)
        if r["total"] is not None
    ]
    dash = Caller(gen_passport_server, mint_token, "dominance-outer-dash-2", egress="aggregates")
    # The largest total the dashboard can see is never a dominated one.
    best = dash.rows(f"SELECT MAX(total) AS m FROM ({inner}) t")[0]["m"]
    assert best == pytest.approx(max(released))
    rows = Caller(gen_passport_server, mint_token, "dominance-outer-rows")
    doubled = {(str(r["r"]), str(r["c"])): r["x"] for r in rows.rows(f"SELECT r, c, total * 2 AS x FROM ({inner}) t")}
    direct = {(str(r["r"]), str(r["c"])): r["total"] for r in rows.rows(inner)}
    assert any(v is None for v in direct.values())
    for key, x in doubled.items():
        assert (x is None) == (direct[key] is None), key
