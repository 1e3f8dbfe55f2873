"""The ACRO oracle: which cells of a table ACRO (the statistical disclosure control tool trusted
research environments use, https://github.com/AI-SDC/ACRO) finds disclosive.

Runs in its own venv (`.venv-acro`: ACRO pins pandas < 3). Reads JSON on stdin:

    {"threshold": 20, "n": 2, "k": 90, "p": 10,
     "rows": [[row_key, column_key, value], ...]}   one row per contributor and cell

and prints JSON: {"<row_key>|<column_key>": ["NKCheck", "PPercentCheck", ...], ...} for every
cell of `SUM(value)` by row and column key, with the checks it fails ([] when it passes).
"""

from __future__ import annotations

import json
import logging
import sys

import pandas as pd
from acro import ACRO


def main() -> None:
    spec = json.load(sys.stdin)
    logging.disable(logging.CRITICAL)
    acro = ACRO(suppress=False)
    risk = acro.sdc_checks.risk_appetite
    # ACRO's threshold flags counts below it; Strata's suppresses counts up to it.
    risk["safe_threshold"] = spec["threshold"] + 1
    risk["safe_nk_n"] = spec["n"]
    risk["safe_nk_k"] = spec["k"] / 100.0
    risk["safe_pratio_p"] = spec["p"] / 100.0
    df = pd.DataFrame(spec["rows"], columns=["r", "c", "v"])
    df["r"] = df["r"].astype(str)
    df["c"] = df["c"].astype(str)
    df["v"] = df["v"].astype(float)
    acro.crosstab(df.r, df.c, values=df.v, aggfunc="sum")
    record = acro.results.get(acro.results.get_keys()[-1])
    outcome = record.outcome
    out = {}
    for r in outcome.index:
        for c in outcome.columns:
            text = str(outcome.loc[r, c])
            checks = [] if text.strip() == "ok" else [t.strip() for t in text.split(";") if t.strip()]
            out[f"{r}|{c}"] = checks
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
