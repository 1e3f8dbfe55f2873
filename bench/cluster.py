#!/usr/bin/env python3
"""Scale-out figures: the benchmark's research queries through a single node and through a
coordinator (`strata serve --workers`) with 1, 2 and 4 `strata worker` processes, each process
pinned to cores with taskset, on the same dataset in one run.

    .venv/bin/python bench/cluster.py --persons 1000000          # bench/data/p1000000, made once

Every configuration answers with a controlled-tier passport (disclosure control on), and its
answers must equal the single node's (the run stops otherwise). Per configuration and query: the
median of --runs timed runs after one warm-up, the speedup over the single node, and the plan
fragments each worker ran; per configuration: the CPU seconds each worker spent, the workers'
throughput (the single node's scanned bytes for the whole workload over the time, per worker) and
peak RSS. Results go to bench/results/cluster-<persons>.json. Build: release.

Workers are pinned round-robin to --cores; the coordinator may use all of them. On a machine with
fewer cores than workers the workers share cores: the figure then measures the cost of spreading
a plan, not more hardware.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

ROOT = bench.ROOT
QUERIES = bench.QUERIES


def pinned(cores: str, *command) -> list:
    return ["taskset", "-c", cores, *map(str, command)]


def start_worker(bin_dir: Path, dataset: Path, core: str, config: Path, key: Path, log: Path):
    port = bench.free_port()
    with open(log, "w") as err:
        proc = subprocess.Popen(
            pinned(core, bin_dir / "strata", "worker", "--dataset", dataset, "--listen", f"127.0.0.1:{port}",
                   "--config", config, "--cluster-secret-file", key, "--log-format", "json"),
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"worker did not start; see {log}")
    return proc, f"127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def configuration(bin_dir, dataset, work, n_workers, cores, runs, token, extra):
    """Times of every query through a coordinator with `n_workers` workers (0: a single node)."""
    config = work / "bench-server.toml"
    key = work / "cluster.key"
    workers = []
    core_list = cores.split(",")
    for i in range(n_workers):
        log = work / f"worker-{n_workers}-{i}.log"
        workers.append((*start_worker(bin_dir, dataset, core_list[i % len(core_list)], config, key, log), log))
    serve_config = work / f"coordinator-{n_workers}.toml"
    text = config.read_text()
    if workers:
        addresses = ", ".join(f'"{addr}"' for _, addr, _ in workers)
        text += f'\n[cluster]\nworkers = [{addresses}]\nsecret_file = "{key}"\n'
    serve_config.write_text(text)
    log = work / f"coordinator-{n_workers}.log"
    args = [a if a != config else serve_config for a in extra]
    server = None
    try:
        server, port = bench.start_strata(bin_dir, dataset, log, "--log-format", "json", *args,
                                          prefix=tuple(pinned(cores)), ready_secs=300)
        conn = flight_sql.connect(f"grpc://127.0.0.1:{port}",
                                  db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"})
        cur = conn.cursor()
        before = {addr: cpu_seconds(p.pid) for p, addr, _ in workers}
        coordinator_before = cpu_seconds(server.pid)
        out = {"queries": {}}
        for q in QUERIES:
            def run(sql=q["sql"]):
                cur.execute(sql)
                return cur.fetch_arrow_table()
            fragments = [log_.read_text().count("executing a plan fragment") for _, _, log_ in workers]
            times = bench.timed(run, runs)
            answer = run()
            after = [log_.read_text().count("executing a plan fragment") for _, _, log_ in workers]
            out["queries"][q["name"]] = {
                "median_ms": statistics.median(times),
                "times_ms": times,
                "answer": answer,
                "fragments_per_worker": [(b - a) // (runs + 2) for a, b in zip(fragments, after)],
            }
        out["worker_cpu_s"] = [cpu_seconds(p.pid) - before[addr] for p, addr, _ in workers]
        out["coordinator_cpu_s"] = cpu_seconds(server.pid) - coordinator_before
        out["executions"] = runs + 2
        out["worker_peak_rss_mb"] = [bench.peak_rss_mb(p.pid) for p, _, _ in workers]
        out["coordinator_peak_rss_mb"] = bench.peak_rss_mb(server.pid)
        cur.close()
        conn.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        for p, _, _ in workers:
            p.terminate()
            p.wait(timeout=30)
    return out


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Equal as multisets of rows; floats to 1e-9 (a distributed sum adds in another order)."""
    def key(row):
        return tuple((v is None, str(type(v)), v if not isinstance(v, float) else round(v, 6)) for v in row.values())

    rows_a, rows_b = sorted(a.to_pylist(), key=key), sorted(b.to_pylist(), key=key)
    if a.column_names != b.column_names or len(rows_a) != len(rows_b):
        return False
    for ra, rb in zip(rows_a, rows_b):
        for va, vb in zip(ra.values(), rb.values()):
            if isinstance(va, float) and isinstance(vb, float):
                if abs(va - vb) > 1e-9 * max(1.0, abs(va), abs(vb)):
                    return False
            elif va != vb:
                return False
    return True


def single_node_bytes(log: Path) -> dict:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    out = {}
    for q in QUERIES:
        mine = [r for r in records if r.get("message") == "query" and r.get("statement") == q["sql"]]
        if mine:
            out[q["name"]] = mine[-1].get("bytes_scanned", 0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="0,1,2,4", help="worker counts; 0 is the single node")
    ap.add_argument("--cores", default="0,1", help="cores the processes are pinned to")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    args = ap.parse_args()

    bin_dir = bench.target_dir() / "release" if args.no_build else bench.build()
    dataset = bench.dataset_for(bin_dir, args.persons, args.shards, args.seed, args.dataset)
    work = ROOT / "bench" / "data" / "cluster"
    work.mkdir(parents=True, exist_ok=True)
    extra, token = bench.passport(bin_dir, work)
    # Workers read the coordinator's secrets; neither makes them here, so both exist first.
    state = work / "state"
    state.mkdir(exist_ok=True)
    for name in ("date-shift.key", "cluster.key"):
        path = (state if name == "date-shift.key" else work) / name
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)

    counts = [int(n) for n in args.workers.split(",")]
    results = {}
    for n in counts:
        print(f"{n} workers …", file=sys.stderr)
        results[n] = configuration(bin_dir, dataset, work, n, args.cores, args.runs, token, extra)
    base = results[counts[0]]
    for n in counts[1:]:
        for name, q in results[n]["queries"].items():
            if not same_rows(base["queries"][name]["answer"], q["answer"]):
                raise SystemExit(f"{name}: {n} workers answered differently from the single node")
    scanned = single_node_bytes(work / f"coordinator-{counts[0]}.log")
    total_bytes = sum(scanned.values())

    header = f"{'query':28}" + "".join(f"{f'{n}w ms':>10}{'x':>6}" for n in counts)
    print(f"\npersons={args.persons} runs={args.runs} cores={args.cores} (median ms; x = speedup over {counts[0]} workers)")
    print(header)
    for q in QUERIES:
        name = q["name"]
        line = f"{name:28}"
        for n in counts:
            ms = results[n]["queries"][name]["median_ms"]
            line += f"{ms:10.1f}{base['queries'][name]['median_ms'] / ms:6.2f}"
        print(line)
    summary = {}
    for n in counts:
        total_ms = sum(results[n]["queries"][q["name"]]["median_ms"] for q in QUERIES)
        speedups = [base["queries"][q["name"]]["median_ms"] / results[n]["queries"][q["name"]]["median_ms"]
                    for q in QUERIES]
        summary[n] = {
            "workload_ms": total_ms,
            "geomean_speedup": statistics.geometric_mean(speedups),
            "mb_per_s_per_worker": (total_bytes / 1e6) / (total_ms / 1000) / max(n, 1),
            "worker_cpu_s": results[n]["worker_cpu_s"],
            # CPU of every process per run of the workload: what spreading a plan costs in all.
            "cpu_s_per_workload": (results[n]["coordinator_cpu_s"] + sum(results[n]["worker_cpu_s"]))
            / results[n]["executions"],
            "worker_peak_rss_mb": results[n]["worker_peak_rss_mb"],
            "coordinator_peak_rss_mb": results[n]["coordinator_peak_rss_mb"],
            "shipped_queries": sum(
                1 for q in QUERIES if sum(results[n]["queries"][q["name"]]["fragments_per_worker"]) > 0
            ),
        }
        s = summary[n]
        print(f"{n} workers: workload {total_ms:.0f} ms, geomean speedup {s['geomean_speedup']:.2f}, "
              f"{s['mb_per_s_per_worker']:.0f} MB/s per {'worker' if n else 'node'}, "
              f"queries shipped {s['shipped_queries']}/{len(QUERIES)}, CPU s per workload "
              f"{s['cpu_s_per_workload']:.2f}, worker CPU s "
              f"{[round(c, 1) for c in s['worker_cpu_s']]}, peak RSS MB coordinator "
              f"{s['coordinator_peak_rss_mb']:.0f} workers {[round(r or 0) for r in s['worker_peak_rss_mb']]}")

    out = ROOT / "bench" / "results" / f"cluster-{args.persons}.json"
    for n in counts:
        for q in results[n]["queries"].values():
            q["rows"] = q.pop("answer").num_rows
    out.write_text(json.dumps({
        "version": bench.version(), "persons": args.persons, "cores": args.cores, "runs": args.runs,
        "bytes_scanned_single_node": scanned, "configurations": results, "summary": summary,
    }, indent=1, default=float))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
