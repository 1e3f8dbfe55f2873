"""Load, short (issue 15, item 4; the long scenario is bench/load.py): concurrent clients, each its
own principal, mixing research queries, cohort counts and point lookups through one server. No
request may fail and the server's memory must stay bounded; no time is asserted."""

import sys

from helpers import repo_root

sys.path.insert(0, str(repo_root() / "bench"))
import load  # noqa: E402 - bench/load.py, the same driver as the long scenario

from conftest import GEN_PERSONS  # noqa: E402

CLIENTS = 12
PER_CLIENT = 10
# Each query may use up to this much memory ([limits] below); the server's whole footprint stays
# well under the bound whatever the interleaving: its caches, the dataset's footers and statistics,
# and a few queries' worth at once.
QUERY_MEMORY_MB = 256
RSS_BOUND = 3 << 30


def test_concurrent_clients_get_every_answer_in_bounded_memory(gen_dataset, start_passport_server, mint_token):
    srv = start_passport_server(
        gen_dataset,
        "load",
        config=f"[limits]\nquery_memory_mb = {QUERY_MEMORY_MB}\nmax_concurrent_queries = 6\n",
    )
    tokens = [mint_token("controlled", f"load-{k}", "--ttl", "1d") for k in range(CLIENTS)]
    result = load.run_load(
        lambda token: srv.connect(token=token),
        tokens,
        load.workload(GEN_PERSONS),
        GEN_PERSONS,
        per_client=PER_CLIENT,
        pid=srv.proc.pid,
    )
    assert result["errors"] == 0, result["first_errors"]
    assert result["requests"] == CLIENTS * PER_CLIENT
    kinds = result["kinds"]
    assert all(kinds[k]["count"] > 0 for k in ("research", "cohort", "lookup")), kinds
    assert 0 < result["peak_rss_bytes"] < RSS_BOUND, result
    assert result["rss_samples"] >= 5, result
    # No growth from the middle of the run to its end beyond noise: memory per request would show.
    assert result["rss_last_median_bytes"] <= result["rss_middle_median_bytes"] * 1.25 + (64 << 20), result
    # Every query answered is in the audit log, once started and once ended.
    import json

    records = [json.loads(line) for line in srv.audit_path.read_text().splitlines()]
    ends = [r for r in records if r["phase"] == "end" and r["sub"].startswith("load-")]
    assert len(ends) >= CLIENTS * PER_CLIENT and all(r["outcome"] == "ok" for r in ends)
