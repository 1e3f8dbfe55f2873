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
- Workers with a certificate (`[tls]`, mutual with `client_ca`) are reached over TLS (`[cluster]
  ca_file`, `client_cert`): the answers are the single node's, the secret is still checked; a
  coordinator with another CA, without a client certificate, or speaking TLS to one side only is
  refused cleanly (UNAVAILABLE, nothing executed); a worker with a certificate listens beyond
  loopback without the clear-text consent; unreadable TLS files stop the start.
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
    certificate_authority,
    free_port,
    one_line_error,
    outcome,
    run_strata,
    signed,
    status_text,
    strata_bin,
)
from research_queries import GENERATED

CIRCE = Path(__file__).resolve().parent / "cohorts" / "circe"
# The coordinators log why a plan stayed on them (debugging a failure starts there).
DEBUG = {"STRATA_LOG": "info,strata_cluster=debug"}
T = 20


class Worker:
    """`strata worker` on a fixed port (listening on `host`, reached on 127.0.0.1); its JSON log
    counts the fragments it ran."""

    def __init__(
        self, dataset: Path, port: int, config: Path, secret_file: Path, log: Path, host: str = "127.0.0.1"
    ):
        self.dataset, self.port, self.config, self.secret_file, self.log, self.host = (
            dataset,
            port,
            config,
            secret_file,
            log,
            host,
        )
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Worker":
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [
                    str(strata_bin()), "worker", "--dataset", str(self.dataset),
                    "--listen", self.listen, "--config", str(self.config),
                    "--cluster-secret-file", str(self.secret_file), "--log-format", "json",
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                text=True,
            )
        line = self.proc.stdout.readline()
        assert f"listening on {self.listen}" in line, (
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


def worker_config(root: Path, state: str, log: str, extra: str = "") -> Path:
    config = root / f"{log}-worker.toml"
    config.write_text(f'state_dir = "{root / (state + "-state")}"\n{extra}')
    return config


def start_workers(
    dataset: Path, root: Path, state: str, key: Path, log: str, extra: str = "", host: str = "127.0.0.1"
) -> list[Worker]:
    """Two workers over `dataset` with the state folder `root/<state>-state` (its date-shift
    secret) and `extra` in their config: with one, every stage has one task and nothing is
    shipped."""
    config = worker_config(root, state, log, extra)
    return [
        Worker(dataset, free_port(), config, key, root / f"{log}-{i}.log", host).start() for i in range(2)
    ]


def cluster_config(workers: list[Worker], key: Path, extra: str = "") -> str:
    """`[cluster]` over `workers`, `extra` added to it."""
    addresses = ", ".join(f'"{w.address}"' for w in workers)
    # One byte per partition: every scan with files is spread over the workers.
    return (
        f'[cluster]\nworkers = [{addresses}]\nsecret_file = "{key}"\n'
        f"scan_bytes_per_partition = 1\nconnect_timeout_secs = 2\n{extra}"
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


# --------------------------------------------------------------------------------------------------
# TLS between the coordinator and the workers
# --------------------------------------------------------------------------------------------------

GROUPED = "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id"


def listener_tls(cert: tuple[Path, Path], client_ca: Path | None = None) -> str:
    """A worker's `[tls]`: its certificate, and with `client_ca` mutual TLS."""
    text = f'[tls]\ncert = "{cert[0]}"\nkey = "{cert[1]}"\n'
    return text + (f'client_ca = "{client_ca}"\n' if client_ca else "")


def caller_tls(ca: Path, client: tuple[Path, Path] | None = None) -> str:
    """`[cluster]` keys of a node that calls TLS workers: their CA, and its client certificate."""
    text = f'ca_file = "{ca}"\n'
    return text + (f'client_cert = "{client[0]}"\nclient_key = "{client[1]}"\n' if client else "")


def fragments(workers: list[Worker]) -> int:
    return sum(w.fragments() for w in workers)


def coordinator_of(cluster, start, dataset, name: str, workers: list[Worker], extra: str):
    """A coordinator of `workers` with `extra` in its `[cluster]` and the reference's date-shift
    secret (`start` is the `start_passport_server` fixture)."""
    root = cluster["root"]
    write_state(root, name, (root / "cluster-coord-state" / "date-shift.key").read_text())
    config = cluster_config(workers, cluster["key"], extra)
    return start(dataset, name, config=config, root=root, env=DEBUG)


@pytest.fixture(scope="module")
def tls_cluster(cluster, gen_dataset, start_passport_server):
    """Two workers that speak mutual TLS (a certificate of the cluster's CA for 127.0.0.1, and a
    client certificate of that CA required of every caller, the other worker included) and their
    coordinator, same dataset and date-shift secret as `cluster`'s single-node reference."""
    root = cluster["root"]
    folder = root / "certificates"
    folder.mkdir()
    ca = certificate_authority(folder, "cluster")
    rogue = certificate_authority(folder, "rogue")
    certs = {
        "ca": ca,
        "rogue": rogue,
        "worker": signed(folder, "worker", ca, server=True),
        "node": signed(folder, "node", ca, server=False),
        "rogue-node": signed(folder, "rogue-node", rogue, server=False),
    }
    write_state(root, "cluster-tls", (root / "cluster-coord-state" / "date-shift.key").read_text())
    extra = caller_tls(ca[0], certs["node"])
    config = listener_tls(certs["worker"], ca[0]) + "[cluster]\n" + extra
    workers = start_workers(gen_dataset, root, "cluster-tls", cluster["key"], "tls-worker", config)
    coord = coordinator_of(cluster, start_passport_server, gen_dataset, "cluster-tls", workers, extra)
    yield {"coord": coord, "workers": workers, "certs": certs}
    for w in workers:
        w.stop()
    assert not any(w.panicked() for w in workers), "a worker panicked"


def test_a_tls_cluster_answers_equal_single_node(tls_cluster, cluster, mint_token):
    workers = tls_cluster["workers"]
    before = [w.fragments() for w in workers]
    statements = [PROBES[0], PROBES[3], PROBES[6], cohort_sql("gen_t2d_confirmed")]
    tables = 0
    for tier in ("controlled", "registered"):
        sub = f"cluster-tls-{tier}-{secrets.token_hex(4)}"
        ref = Caller(cluster["ref"], mint_token, sub, tier)
        coord = Caller(tls_cluster["coord"], mint_token, sub, tier)
        for sql in statements:
            a, b = outcome(ref, sql), outcome(coord, sql)
            assert_same_outcome(a, b, f"{tier}: {sql}")
            tables += a[0] == "table"
    assert tables >= len(statements), f"only {tables} answered"
    # Both workers ran fragments: the coordinator's calls and the workers' shuffle reads from
    # each other (both over mutual TLS) went through.
    assert all(w.fragments() > n for w, n in zip(workers, before)), [w.fragments() for w in workers]


def call_tls_worker(worker: Worker, token: str, ca: Path, client: tuple[Path, Path] | None):
    """GetWorkerInfo over TLS, verifying the worker against `ca`, presenting `client`."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    channel = grpc.secure_channel(worker.address, credentials)
    try:
        method = channel.unary_unary(
            "/worker.WorkerService/GetWorkerInfo",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        return method(b"", metadata=[("authorization", f"Bearer {token}")], timeout=10)
    finally:
        channel.close()


def test_a_tls_worker_still_takes_the_cluster_secret_only(tls_cluster, cluster):
    worker, certs = tls_cluster["workers"][0], tls_cluster["certs"]
    secret = cluster["key"].read_text()
    assert call_tls_worker(worker, secret, certs["ca"][0], certs["node"]) is not None
    # The right certificate with another secret: refused by the secret check.
    with pytest.raises(grpc.RpcError) as err:
        call_tls_worker(worker, secrets.token_hex(32), certs["ca"][0], certs["node"])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
    # The right secret without TLS, or without a client certificate: no call at all.
    with pytest.raises(grpc.RpcError) as err:
        call_worker(worker, secret)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    with pytest.raises(grpc.RpcError) as err:
        call_tls_worker(worker, secret, certs["ca"][0], None)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value


def assert_refused_cleanly(coord, mint_token, sub: str, workers: list[Worker]) -> None:
    """A query through `coord` fails quickly with the cluster's UNAVAILABLE error (never a hang or
    a partial count) and no fragment ran on `workers`; the audit log says so."""
    before = fragments(workers)
    caller = Caller(coord, mint_token, sub, "controlled")
    started = time.monotonic()
    with pytest.raises(Exception) as err:
        caller.rows(GROUPED)
    elapsed = time.monotonic() - started
    assert "cluster worker failed or could not be reached" in str(err.value), str(err.value)
    assert "unavailable" in status_text(err.value), str(err.value)
    assert elapsed < 30, f"the refusal took {elapsed:.0f} s"
    assert fragments(workers) == before, "a fragment ran"
    coord.stop()
    records = [json.loads(line) for line in coord.audit_path.read_text().splitlines()]
    assert any(r.get("outcome") == "error" and "cluster worker" in (r.get("error") or "") for r in records)


def test_a_coordinator_with_another_ca_is_refused(
    tls_cluster, cluster, gen_dataset, start_passport_server, mint_token
):
    """The workers' certificates are not signed by the CA this coordinator trusts (its client
    certificate is the right one)."""
    certs, workers = tls_cluster["certs"], tls_cluster["workers"]
    extra = caller_tls(certs["rogue"][0], certs["node"])
    coord = coordinator_of(cluster, start_passport_server, gen_dataset, "cluster-rogueca", workers, extra)
    assert_refused_cleanly(coord, mint_token, "rogueca", workers)


@pytest.mark.parametrize("client", [None, "rogue-node"])
def test_mutual_tls_refuses_a_coordinator_without_a_cluster_client_certificate(
    tls_cluster, cluster, gen_dataset, start_passport_server, mint_token, client
):
    """The right CA, but no client certificate, or one the workers' client CA did not sign."""
    certs, workers = tls_cluster["certs"], tls_cluster["workers"]
    name = f"cluster-noclient-{client or 'none'}"
    extra = caller_tls(certs["ca"][0], certs[client] if client else None)
    coord = coordinator_of(cluster, start_passport_server, gen_dataset, name, workers, extra)
    assert_refused_cleanly(coord, mint_token, name, workers)


@pytest.mark.parametrize("side", ["coordinator", "workers"])
def test_tls_on_one_side_only_is_refused_cleanly(
    tls_cluster, cluster, gen_dataset, start_passport_server, mint_token, side
):
    """Clear text toward TLS workers, or TLS toward clear-text workers."""
    certs, name = tls_cluster["certs"], f"cluster-oneside-{side}"
    if side == "coordinator":
        workers, extra = tls_cluster["workers"], ""
    else:
        workers, extra = cluster["workers"], caller_tls(certs["ca"][0], certs["node"])
    coord = coordinator_of(cluster, start_passport_server, gen_dataset, name, workers, extra)
    assert_refused_cleanly(coord, mint_token, name, workers)


def test_workers_verify_each_other(tls_cluster, cluster, gen_dataset, start_passport_server, mint_token):
    """Workers read each other's outputs over TLS too: workers that trust another CA than the one
    of their certificates run the coordinator's fragments, but their reads from each other fail
    the query (UNAVAILABLE, never a partial count)."""
    certs, root = tls_cluster["certs"], cluster["root"]
    config = listener_tls(certs["worker"], certs["ca"][0]) + "[cluster]\n"
    config += caller_tls(certs["rogue"][0], certs["node"])
    workers = start_workers(gen_dataset, root, "cluster-tls", cluster["key"], "distrust-worker", config)
    try:
        extra = caller_tls(certs["ca"][0], certs["node"])
        coord = coordinator_of(cluster, start_passport_server, gen_dataset, "cluster-distrust", workers, extra)
        with pytest.raises(Exception) as err:
            Caller(coord, mint_token, "distrust").rows(GROUPED)
        assert "cluster worker failed or could not be reached" in str(err.value), str(err.value)
        assert "unavailable" in status_text(err.value), str(err.value)
        assert fragments(workers) > 0, "the coordinator did not reach the workers"
        coord.stop()
    finally:
        for w in workers:
            w.stop()


def test_a_tls_worker_listens_beyond_loopback_without_consent(
    tls_cluster, cluster, gen_dataset, start_passport_server, mint_token
):
    """With a certificate (TLS without client certificates here), a worker listens on every
    interface without --allow-plaintext-network and warns of nothing unencrypted; a coordinator
    that trusts its CA gets the single node's answers through it."""
    certs, root = tls_cluster["certs"], cluster["root"]
    config = listener_tls(certs["worker"]) + "[cluster]\n" + caller_tls(certs["ca"][0])
    workers = start_workers(
        gen_dataset, root, "cluster-tls", cluster["key"], "open-worker", config, host="0.0.0.0"
    )
    try:
        extra = caller_tls(certs["ca"][0])
        coord = coordinator_of(cluster, start_passport_server, gen_dataset, "cluster-open", workers, extra)
        sql = PROBES[0]
        a = outcome(Caller(cluster["ref"], mint_token, "open-tls"), sql)
        b = outcome(Caller(coord, mint_token, "open-tls"), sql)
        assert a[0] == "table", a[1]
        assert_same_outcome(a, b, sql)
        assert all(w.fragments() > 0 for w in workers), [w.fragments() for w in workers]
        coord.stop()
    finally:
        for w in workers:
            w.stop()
    for w in workers:
        assert "unencrypted" not in w.log.read_text()


def test_unreadable_or_one_sided_tls_settings_stop_the_start(tls_cluster, cluster, gen_dataset, tmp_path):
    certs, key = tls_cluster["certs"], cluster["key"]
    state = tmp_path / "state"
    state.mkdir()
    (state / "date-shift.key").write_text(secrets.token_hex(32))
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")

    def config(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(f'state_dir = "{state}"\n{text}')
        return path

    def worker(text: str):
        return run_strata(
            "worker", "--dataset", gen_dataset, "--listen", "127.0.0.1:0", "--cluster-secret-file", key,
            "--config", config("worker", text), check=False, timeout=120,
        )  # fmt: skip

    ca, node, cert = certs["ca"][0], certs["node"], certs["worker"]
    cases = [
        # The worker's certificate cannot be read.
        (listener_tls((missing, cert[1])) + "[cluster]\n" + caller_tls(ca), "missing.pem"),
        # A certificate, and no CA for the outputs it reads from the other workers.
        (listener_tls(cert), "ca_file"),
        # A CA for the other workers, and no certificate of its own.
        ("[cluster]\n" + caller_tls(ca), "[tls] cert"),
        # Client certificates required, and none to present to the other workers.
        (listener_tls(cert, ca) + "[cluster]\n" + caller_tls(ca), "client_cert"),
        # The CA of the other workers holds no certificate.
        (listener_tls(cert) + "[cluster]\n" + caller_tls(garbage), "garbage.pem"),
    ]
    for text, mention in cases:
        one_line_error(worker(text), mention)

    def coordinator(text: str):
        cluster_text = f'[cluster]\nworkers = ["127.0.0.1:9", "127.0.0.1:10"]\nsecret_file = "{key}"\n'
        return run_strata(
            "serve", "--dataset", gen_dataset, "--listen", "127.0.0.1:0",
            "--config", config("coordinator", cluster_text + text), check=False, timeout=120,
        )  # fmt: skip

    for text, mention in [
        (caller_tls(missing, node), "missing.pem"),
        (caller_tls(garbage), "no PEM certificate"),
        (caller_tls(ca, (missing, node[1])), "client_cert"),
        (f'client_cert = "{node[0]}"\nclient_key = "{node[1]}"\n', "ca_file"),
    ]:
        one_line_error(coordinator(text), mention, allow_logs=True)
