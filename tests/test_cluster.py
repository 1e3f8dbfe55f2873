"""Scale-out (DESIGN.md, "Scale-out"): a coordinator (`strata serve --workers`) and `strata worker`
processes on 127.0.0.1.

- Protected answers through the cluster equal a single-node server's on the same dataset and
  date-shift secret: research SQL, cohorts and adversarial probes, as a row-level (controlled), a
  registered and an aggregates-only (public) principal; the workers really executed fragments.
- Workers take plans from their coordinator only: a call without the cluster secret, or with
  another, is refused before anything is decoded; a worker speaks no Flight SQL.
- A worker killed while queries run gives errors, never a wrong or partial count; restarted, it
  serves again.
- A worker whose registered tier differs from the coordinator's (another date-shift secret)
  refuses registered-tier fragments.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from helpers import (
    Caller,
    assert_same_outcome,
    assert_tables_equal,
    free_port,
    outcome,
    status_text,
    strata_bin,
)
from research_queries import GENERATED

CIRCE = Path(__file__).resolve().parent / "cohorts" / "circe"
# The coordinators log why a plan stayed on them (debugging a failure starts there).
DEBUG = {"STRATA_LOG": "info,strata_cluster=debug"}
T = 20


class Worker:
    """`strata worker` on a fixed local port; its JSON log counts the fragments it ran."""

    def __init__(self, dataset: Path, port: int, config: Path, secret_file: Path, log: Path):
        self.dataset, self.port, self.config, self.secret_file, self.log = (
            dataset,
            port,
            config,
            secret_file,
            log,
        )
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Worker":
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [
                    str(strata_bin()), "worker", "--dataset", str(self.dataset),
                    "--listen", self.address, "--config", str(self.config),
                    "--cluster-secret-file", str(self.secret_file), "--log-format", "json",
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                text=True,
            )
        line = self.proc.stdout.readline()
        assert f"listening on {self.address}" in line, (
            f"worker did not start: {line!r}\n{self.log.read_text()[-3000:]}"
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def fragments(self) -> int:
        return self.log.read_text().count("executing a plan fragment")

    def panicked(self) -> bool:
        return "panicked" in self.log.read_text()


def write_state(root: Path, name: str, date_key: str) -> None:
    state = root / f"{name}-state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "date-shift.key").write_text(date_key)


def secret_file(path: Path, value: str) -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


def worker_config(root: Path, name: str) -> Path:
    config = root / f"{name}-worker.toml"
    config.write_text(f'state_dir = "{root / (name + "-state")}"\n')
    return config


def start_workers(dataset: Path, root: Path, state: str, key: Path, log: str) -> list[Worker]:
    """Two workers over `dataset` with the state folder `root/<state>-state` (its date-shift
    secret): with one, every stage has one task and nothing is shipped."""
    config = worker_config(root, state)
    return [
        Worker(dataset, free_port(), config, key, root / f"{log}-{i}.log").start() for i in range(2)
    ]


def cluster_config(workers: list[Worker], key: Path) -> str:
    addresses = ", ".join(f'"{w.address}"' for w in workers)
    # One byte per partition: every scan with files is spread over the workers.
    return (
        f'[cluster]\nworkers = [{addresses}]\nsecret_file = "{key}"\n'
        "scan_bytes_per_partition = 1\nconnect_timeout_secs = 2\n"
    )


@pytest.fixture(scope="module")
def cluster(gen_dataset, start_passport_server, tmp_path_factory):
    """A single-node reference and a coordinator with two workers, same dataset and date-shift
    secret (own state folders, audit logs and release ledgers)."""
    root = tmp_path_factory.mktemp("cluster")
    date_key = secrets.token_hex(32)
    for name in ("cluster-ref", "cluster-coord"):
        write_state(root, name, date_key)
    key = secret_file(root / "cluster.key", secrets.token_hex(32))
    workers = start_workers(gen_dataset, root, "cluster-coord", key, "worker")
    ref = start_passport_server(gen_dataset, "cluster-ref", root=root)
    coord = start_passport_server(
        gen_dataset, "cluster-coord", config=cluster_config(workers, key), root=root, env=DEBUG
    )
    yield {"ref": ref, "coord": coord, "workers": workers, "root": root, "key": key}
    for w in workers:
        w.stop()
    assert not any(w.panicked() for w in workers), "a worker panicked"


def cohort_sql(name: str) -> str:
    definition = json.loads((CIRCE / f"{name}.json").read_text())
    literal = "'" + json.dumps(definition).replace("'", "''") + "'"
    return (
        "SELECT p.gender_concept_id, COUNT(DISTINCT c.person_id) AS n "
        f"FROM cohort({literal}) c JOIN person p ON p.person_id = c.person_id "
        "GROUP BY p.gender_concept_id"
    )


# Probes of the disclosure rules: small groups, differencing pairs, a top-N of small cells, a
# per-person intermediate, margins.
PROBES = [
    "SELECT year_of_birth, COUNT(*) AS n FROM person GROUP BY year_of_birth",
    "SELECT COUNT(*) AS n FROM person WHERE year_of_birth >= 1940",
    "SELECT COUNT(*) AS n FROM person WHERE year_of_birth > 1940",
    "SELECT condition_concept_id, COUNT(DISTINCT person_id) AS n FROM condition_occurrence "
    "GROUP BY condition_concept_id ORDER BY n DESC LIMIT 15",
    "SELECT gender_concept_id, race_concept_id, COUNT(*) AS n FROM person "
    "GROUP BY ROLLUP (gender_concept_id, race_concept_id)",
    "SELECT AVG(quantity) AS q, SUM(days_supply) AS d, drug_concept_id FROM drug_exposure "
    "GROUP BY drug_concept_id",
    "SELECT n_visits, COUNT(*) AS persons FROM (SELECT person_id, COUNT(*) AS n_visits "
    "FROM visit_occurrence GROUP BY person_id) GROUP BY n_visits",
    "SELECT visit_concept_id, COUNT(*) AS n FROM visit_occurrence v JOIN person p "
    "ON p.person_id = v.person_id WHERE p.year_of_birth < 1960 GROUP BY visit_concept_id",
    # Scalar subqueries: one row (answered), several rows (an error on both, never a guess).
    "SELECT gender_concept_id, COUNT(*) AS n FROM person "
    "WHERE year_of_birth > (SELECT MIN(year_of_birth) + 10 FROM person) GROUP BY gender_concept_id",
    "SELECT gender_concept_id, COUNT(*) AS n FROM person "
    "WHERE year_of_birth > (SELECT year_of_birth FROM person) GROUP BY gender_concept_id",
]


@pytest.mark.parametrize(
    "tier,egress",
    [("controlled", None), ("registered", None), ("controlled", "aggregates")],
)
def test_cluster_answers_equal_single_node(cluster, mint_token, tier, egress):
    sub = f"cluster-{tier}-{secrets.token_hex(4)}"
    ref = Caller(cluster["ref"], mint_token, sub, tier, egress)
    coord = Caller(cluster["coord"], mint_token, sub, tier, egress)
    before = sum(w.fragments() for w in cluster["workers"])
    statements = [(q.name, q.sql) for q in GENERATED]
    statements += [(f"probe {i}", sql) for i, sql in enumerate(PROBES)]
    statements += [(f"cohort {n}", cohort_sql(n)) for n in ("gen_t2d_confirmed", "gen_a1c_high")]
    tables = 0
    for what, sql in statements:
        a, b = outcome(ref, sql), outcome(coord, sql)
        assert_same_outcome(a, b, what)
        if a[0] == "table":
            tables += 1
            if egress == "aggregates":
                for row in b[1].to_pylist():
                    for k, v in row.items():
                        if isinstance(v, int) and k in ("n", "persons", "treated"):
                            assert not 1 <= v <= T, f"{what}: count {v} released"
    assert tables >= len(statements) // 2, f"only {tables} of {len(statements)} answered"
    shipped = sum(w.fragments() for w in cluster["workers"]) - before
    # Both workers ran fragments of these statements (random routing over two workers).
    assert shipped >= len(statements) // 2, f"only {shipped} fragments reached the workers"
    assert all(w.fragments() > 0 for w in cluster["workers"])


def test_a_point_lookup_stays_on_the_coordinator(cluster, mint_token):
    """A selective scan reads a few pages whatever its files' size: spread over workers it
    would cost round trips and save nothing, so it runs on one node (the answer is the same)."""
    controlled = Caller(cluster["coord"], mint_token, "cluster-lookup")
    reference = Caller(cluster["ref"], mint_token, "cluster-lookup")
    before = sum(w.fragments() for w in cluster["workers"])
    for sql in [
        "SELECT * FROM person WHERE person_id = 42",
        "SELECT person_id, COUNT(*) AS n FROM condition_occurrence WHERE person_id IN (7, 8, 9) "
        "GROUP BY person_id",
    ]:
        assert_same_outcome(outcome(reference, sql), outcome(controlled, sql), sql)
    assert sum(w.fragments() for w in cluster["workers"]) == before, "a point lookup was shipped"
    # A selective range is not a lookup (at scale it is many rows): still spread, as is the
    # table scanned whole (every scan is spread in this cluster).
    sql = (
        "SELECT condition_concept_id, COUNT(*) AS n FROM condition_occurrence "
        "WHERE person_id BETWEEN 100 AND 300 GROUP BY condition_concept_id"
    )
    assert_same_outcome(outcome(reference, sql), outcome(controlled, sql), sql)
    assert sum(w.fragments() for w in cluster["workers"]) > before, "the range was not shipped"
    before = sum(w.fragments() for w in cluster["workers"])
    controlled.rows("SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id")
    assert sum(w.fragments() for w in cluster["workers"]) > before


def call_worker(worker: Worker, token: str | None):
    """GetWorkerInfo (an empty request) on the worker, as any gRPC client could send it."""
    channel = grpc.insecure_channel(worker.address)
    try:
        method = channel.unary_unary(
            "/worker.WorkerService/GetWorkerInfo",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        metadata = [("authorization", f"Bearer {token}")] if token is not None else []
        return method(b"", metadata=metadata, timeout=10)
    finally:
        channel.close()


def test_workers_take_calls_with_the_cluster_secret_only(cluster):
    worker = cluster["workers"][0]
    for token in (None, "", secrets.token_hex(32), cluster["key"].read_text()[:-1] + "0"):
        if token == cluster["key"].read_text():
            continue
        with pytest.raises(grpc.RpcError) as err:
            call_worker(worker, token)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
    # The coordinator's secret is accepted (the call itself then succeeds).
    assert call_worker(worker, cluster["key"].read_text()) is not None


def test_a_worker_has_no_flight_sql_door(cluster):
    import adbc_driver_flightsql.dbapi as flightsql

    worker = cluster["workers"][0]
    with pytest.raises(Exception) as err:
        conn = flightsql.connect(f"grpc://{worker.address}")
        try:
            cur = conn.cursor()
            cur.execute("SELECT COUNT(*) FROM person")
            cur.fetchall()
        finally:
            conn.close()
    text = status_text(err.value)
    assert "unauthenticated" in text or "unimplemented" in text, text


def test_a_coordinator_without_the_secret_gets_a_clean_error(
    cluster, gen_dataset, start_passport_server, mint_token
):
    root = cluster["root"]
    write_state(root, "cluster-stranger", (root / "cluster-coord-state" / "date-shift.key").read_text())
    other = secret_file(root / "stranger.key", secrets.token_hex(32))
    stranger = start_passport_server(
        gen_dataset, "cluster-stranger", config=cluster_config(cluster["workers"], other), root=root, env=DEBUG
    )
    caller = Caller(stranger, mint_token, "stranger", "controlled")
    with pytest.raises(Exception) as err:
        caller.rows("SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id")
    assert "cluster worker failed or could not be reached" in str(err.value), str(err.value)
    assert "unavailable" in status_text(err.value), str(err.value)
    stranger.stop()
    ends = [json.loads(line) for line in stranger.audit_path.read_text().splitlines()]
    failed = [r for r in ends if r.get("outcome") == "error" and "cluster worker" in (r.get("error") or "")]
    assert failed, "no audit record of the failed query"


def test_killed_worker_gives_errors_never_partial_counts(cluster, mint_token):
    sql = (
        "SELECT visit_concept_id, COUNT(*) AS n, COUNT(DISTINCT person_id) AS p "
        "FROM visit_occurrence GROUP BY visit_concept_id"
    )
    ref = Caller(cluster["ref"], mint_token, "kill-ref", "controlled")
    coord = Caller(cluster["coord"], mint_token, "kill-coord", "controlled")
    expected = ref.table(sql)
    results = {"right": 0, "errors": 0, "wrong": []}
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                got = coord.table(sql)
            except Exception as e:  # noqa: BLE001 - an error is an allowed outcome
                results["errors"] += 1
                results.setdefault("texts", set()).add(str(e).split("\n")[0][:300])
                continue
            try:
                assert_tables_equal(expected, got, sort_by=True)
                results["right"] += 1
            except AssertionError as e:
                results["wrong"].append(str(e)[:500])

    thread = threading.Thread(target=run)
    thread.start()
    victim = cluster["workers"][1]
    try:
        time.sleep(2)
        victim.kill()
        time.sleep(3)
        victim.start()
        time.sleep(3)
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not results["wrong"], results["wrong"][:3]
    assert results["errors"] >= 1, results
    # The client is told what happened (a worker, worth a retry), not the transport's internals.
    for text in results["texts"]:
        assert "cluster worker failed or could not be reached" in text, text
        assert "127.0.0.1" not in text, text
    assert results["right"] >= 2, results
    # Restarted, the worker serves again.
    assert_tables_equal(expected, coord.table(sql), sort_by=True)


def test_worker_with_another_registered_tier_refuses_its_fragments(
    cluster, gen_dataset, start_passport_server, mint_token
):
    root = cluster["root"]
    write_state(root, "cluster-odd", secrets.token_hex(32))
    odd = start_workers(gen_dataset, root, "cluster-odd", cluster["key"], "odd")
    try:
        write_state(root, "cluster-oddcoord", (root / "cluster-coord-state" / "date-shift.key").read_text())
        coord = start_passport_server(
            gen_dataset, "cluster-oddcoord", config=cluster_config(odd, cluster["key"]), root=root, env=DEBUG
        )
        sql = "SELECT year_of_birth, COUNT(*) AS n FROM person GROUP BY year_of_birth"
        registered = Caller(coord, mint_token, "odd-registered", "registered")
        with pytest.raises(Exception) as err:
            registered.rows(sql)
        assert "registered tier differs" in str(err.value), str(err.value)
        controlled = Caller(coord, mint_token, "odd-controlled", "controlled")
        reference = Caller(cluster["ref"], mint_token, "odd-controlled", "controlled")
        assert_tables_equal(reference.table(sql), controlled.table(sql), sort_by=True)
        assert sum(w.fragments() for w in odd) > 0
        coord.stop()
    finally:
        for w in odd:
            w.stop()


def test_the_query_memory_limit_holds_on_the_workers(
    cluster, gen_dataset, start_passport_server, mint_token
):
    """A hash join's build side cannot spill: past the query's limit (shared by the tasks of a
    stage) the query fails on the workers as on one node, naming the setting; nothing is
    released."""
    root = cluster["root"]
    write_state(root, "cluster-small", (root / "cluster-coord-state" / "date-shift.key").read_text())
    config = cluster_config(cluster["workers"], cluster["key"]) + "[limits]\nquery_memory_mb = 16\n"
    small = start_passport_server(gen_dataset, "cluster-small", config=config, root=root, env=DEBUG)
    before = sum(w.fragments() for w in cluster["workers"])
    join = "SELECT a.*, b.* FROM measurement a JOIN measurement b ON a.measurement_id = b.measurement_id"
    bob = Caller(small, mint_token, "cluster-memory-bob")
    with pytest.raises(Exception) as err:
        bob.rows(join)
    message = str(err.value)
    assert "memory" in message and "limits.query_memory_mb" in message, message
    assert sum(w.fragments() for w in cluster["workers"]) > before, "the join was not shipped"
    small.stop()


def test_workers_of_another_dataset_refuse_its_fragments(
    cluster, gen_dataset, gibleed_dataset, start_passport_server, mint_token
):
    """Plans name the coordinator's files: a worker serving other files (another dataset, a stale
    copy) refuses them instead of answering over its own."""
    root = cluster["root"]
    date_key = (root / "cluster-coord-state" / "date-shift.key").read_text()
    write_state(root, "cluster-other", date_key)
    other = start_workers(gibleed_dataset, root, "cluster-other", cluster["key"], "other")
    try:
        write_state(root, "cluster-othercoord", date_key)
        coord = start_passport_server(
            gen_dataset, "cluster-othercoord", config=cluster_config(other, cluster["key"]),
            root=root, env=DEBUG,
        )
        caller = Caller(coord, mint_token, "other-controlled", "controlled")
        with pytest.raises(Exception) as err:
            caller.rows("SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id")
        assert "other files than its coordinator's dataset" in str(err.value), str(err.value)
        coord.stop()
    finally:
        for w in other:
            w.stop()


def test_a_worker_refuses_a_non_loopback_address_without_consent(gen_dataset, tmp_path):
    key = secret_file(tmp_path / "cluster.key", secrets.token_hex(32))
    proc = subprocess.run(
        [str(strata_bin()), "worker", "--dataset", str(gen_dataset), "--listen", "0.0.0.0:0",
         "--cluster-secret-file", str(key)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "--allow-plaintext-network" in proc.stderr and "unencrypted" in proc.stderr, proc.stderr
