#!/usr/bin/env python3
"""Strata under load: many concurrent Flight SQL clients (ADBC), each its own principal with a
controlled passport, mixing the research queries of bench/queries.json, cohort counts through
`cohort('<Circe JSON>')` (bench/cohorts.json) and point lookups of one participant's rows.

    .venv/bin/python bench/load.py --persons 100000 --clients 100 --seconds 600

Reports per kind of request the count, errors, p50/p99/max latency; the throughput; the server's
peak RSS and its RSS over the run (sampled every half second: the middle and the last fifth of the
run compared, so that memory that keeps growing shows); and the first errors. Results also go to
bench/results/load-<persons>.json. Build: release. The test suite runs a short version
(tests/test_load.py) through `run_load` below, asserting no errors and bounded memory, never a
time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def workload(persons: int) -> list[tuple[str, str]]:
    """(kind, SQL) items the clients draw from: research queries and cohort counts once each,
    and point lookups (drawn with a random participant at each use)."""
    items = [("research", q["sql"]) for q in json.loads((ROOT / "bench" / "queries.json").read_text())]
    for cohort in json.loads((ROOT / "bench" / "cohorts.json").read_text()):
        definition = (ROOT / cohort["definition"]).read_text().replace("'", "''")
        items.append(("cohort", f"SELECT COUNT(*) AS n FROM cohort('{definition}')"))
    return items


LOOKUP = "SELECT measurement_concept_id, measurement_date, value_as_number FROM measurement WHERE person_id = {}"
# The mix: of every ten requests, five research queries, two cohort counts, three point lookups.
MIX = ["research"] * 5 + ["cohort"] * 2 + ["lookup"] * 3


class RssSampler(threading.Thread):
    """The server's resident memory every half second, and its peak (VmHWM) at the end."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def run(self):
        start = time.monotonic()
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic() - start, self.field("VmRSS")))
            except OSError:
                return
            self.done.wait(0.5)

    def report(self) -> dict:
        self.done.set()
        self.join(timeout=5)
        try:
            peak = self.field("VmHWM")
        except OSError:
            peak = max((r for _, r in self.samples), default=0)
        rss = [r for _, r in self.samples]
        fifth = max(1, len(rss) // 5)
        middle = rss[2 * fifth : 3 * fifth] or rss
        last = rss[-fifth:] or rss
        return {
            "peak_rss_bytes": peak,
            "rss_middle_median_bytes": int(statistics.median(middle)) if middle else 0,
            "rss_last_median_bytes": int(statistics.median(last)) if last else 0,
            "rss_samples": len(rss),
        }


def run_load(connect, tokens: list[str], items, persons: int, seconds: float | None = None,
             per_client: int | None = None, pid: int | None = None, seed: int = 42) -> dict:  # fmt: skip
    """`len(tokens)` clients, each on its own connection (`connect(token)`), draw requests from
    `items` and MIX until `seconds` pass or each has made `per_client` requests."""
    assert seconds or per_client, "bound the run by time or by count"
    latencies: dict[str, list[float]] = {kind: [] for kind in set(MIX)}
    failed: dict[str, list[float]] = {kind: [] for kind in set(MIX)}
    errors: list[str] = []
    lock = threading.Lock()
    by_kind = {kind: [sql for k, sql in items if k == kind] for kind in set(MIX)}
    sampler = RssSampler(pid) if pid else None
    if sampler:
        sampler.start()
    started = time.monotonic()
    deadline = started + seconds if seconds else None

    def client(k: int, token: str):
        rng = random.Random(seed * 1000 + k)
        try:
            conn = connect(token)
        except Exception as e:  # noqa: BLE001 - a client that cannot connect is an error too
            with lock:
                errors.append(f"connect: {str(e).splitlines()[0][:300]}")
            return
        made = 0
        try:
            while (per_client is None or made < per_client) and (deadline is None or time.monotonic() < deadline):
                kind = rng.choice(MIX)
                sql = LOOKUP.format(rng.randint(1, persons)) if kind == "lookup" else rng.choice(by_kind[kind])
                t0 = time.perf_counter()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        cur.fetch_arrow_table()
                    with lock:
                        latencies[kind].append(time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001 - counted and reported, with its time
                    with lock:
                        failed[kind].append(time.perf_counter() - t0)
                        errors.append(f"{kind}: {str(e).splitlines()[0][:300]}")
                made += 1
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    threads = [threading.Thread(target=client, args=(k, t)) for k, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    done = sum(len(v) for v in latencies.values())

    def pct(values, q):
        """Nearest rank: the smallest value with at least q of all at or below it."""
        if not values:
            return None
        ordered = sorted(values)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    result = {
        "clients": len(tokens),
        "seconds": round(elapsed, 1),
        "requests": done,
        "attempts": done + sum(len(v) for v in failed.values()),
        "errors": len(errors),
        "throughput_per_s": round(done / elapsed, 2) if elapsed else None,
        "kinds": {
            kind: {
                "count": len(v),
                "p50_ms": pct(v, 0.50),
                "p99_ms": pct(v, 0.99),
                "max_ms": max(v) * 1000 if v else None,
                "errors": len(failed[kind]),
                "failed_max_ms": max(failed[kind]) * 1000 if failed[kind] else None,
            }
            for kind, v in sorted(latencies.items())
        },
        "first_errors": errors[:5],
    }
    if sampler:
        result.update(sampler.report())
    return result


def main():
    sys.path.insert(0, str(ROOT / "bench"))
    import adbc_driver_flightsql.dbapi as flight_sql
    import run as bench  # bench/run.py: the build, the dataset and the passports

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    bin_dir = bench.target_dir() / "release" if args.no_build else bench.build()
    dataset = ROOT / "bench" / "data" / f"p{args.persons}"
    if not (dataset / "catalog.toml").exists():
        subprocess.run([bin_dir / "strata", "generate", "--out", dataset, "--persons", str(args.persons),
                        "--shards", "8"], check=True)  # fmt: skip
    work = ROOT / "bench" / "data" / "load"
    shutil.rmtree(work / "state", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    server_args, _ = bench.passport(bin_dir, work)
    keys = work / "keys"
    tokens = [
        subprocess.run([bin_dir / "strata", "token", "--keys", keys, "--tier", "controlled", "--sub", f"load-{k}",
                        "--ttl", "1d"], check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
        for k in range(args.clients)
    ]
    log = ROOT / "bench" / "results" / f"server-load-{args.persons}.log"
    server, port = bench.start_strata(bin_dir, dataset, log, *server_args, "--log-format", "json")
    uri = f"grpc://127.0.0.1:{port}"

    def connect(token):
        return flight_sql.connect(uri, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
                                  autocommit=True)  # fmt: skip

    try:
        print(f"{args.clients} clients for {args.seconds:.0f} s against {uri} ({args.persons} persons)", flush=True)
        result = run_load(connect, tokens, workload(args.persons), args.persons, seconds=args.seconds,
                          pid=server.pid)  # fmt: skip
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    result["persons"] = args.persons
    out = ROOT / "bench" / "results" / f"load-{args.persons}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
