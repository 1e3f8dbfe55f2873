"""Telemetry (DESIGN.md, "Operations", `[telemetry]`): OpenTelemetry traces over OTLP/gRPC, a span per
request with children for auth, planning, policy rewrite, execution and streaming; and a Prometheus
endpoint with queries, latencies, rows and bytes out, bytes scanned, cache hits and misses per tier,
suppressed cells by reason, egress alerts and audit lag.

The collector is real: an OTLP/gRPC trace service (grpcio on the OpenTelemetry protobuf stubs) in
this process. The scraper is real: Debian's Prometheus, whose HTTP API is asked for what it
scraped. The expected counts come from the server's own audit log."""

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from concurrent import futures

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from helpers import Caller, free_port, run_strata, scrape_metrics as scrape, metric_total as total

# Spans are sent in batches: every 100 ms here instead of every 5 s.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
PROTECTED = "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id"
ROWS = "SELECT person_id FROM person ORDER BY person_id LIMIT 7"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every span it is sent."""

    def __init__(self):
        self.spans: list[dict] = []
        self.service_names: set[str] = set()
        self._lock = threading.Lock()
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")

    def Export(self, request, context):  # noqa: N802 - the gRPC method's name
        with self._lock:
            for resource_spans in request.resource_spans:
                for attr in resource_spans.resource.attributes:
                    if attr.key == "service.name":
                        self.service_names.add(attr.value.string_value)
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace": span.trace_id.hex(),
                                "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attrs": {a.key: _value(a.value) for a in span.attributes},
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                            }
                        )
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, predicate, timeout: float = 15.0) -> list[dict]:
        """The spans once `predicate(spans)` holds (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans never matched; got {[s['name'] for s in spans]}")
            time.sleep(0.1)


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture(scope="module")
def collector():
    c = Collector()
    c.server.start()
    yield c
    c.server.stop(None)


@pytest.fixture(scope="module")
def telemetry_server(gen_dataset, start_passport_server, collector):
    metrics_port = free_port()
    config = (
        "[telemetry]\n"
        f'otlp_endpoint = "http://127.0.0.1:{collector.port}"\n'
        'service_name = "strata-under-test"\n'
        f'metrics_listen = "127.0.0.1:{metrics_port}"\n'
    )
    srv = start_passport_server(gen_dataset, "telemetry", config=config, env=FAST_EXPORT)
    srv.metrics_port = metrics_port
    return srv


def children(spans, parent):
    return [s for s in spans if s["parent"] == parent["id"] and s["trace"] == parent["trace"]]


def descendants(spans, root):
    out, todo = [], [root]
    while todo:
        kids = children(spans, todo.pop())
        out += kids
        todo += kids
    return out


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def traced_query(server, token: str, sql: str):
    """`sql` run as `token` under a caller's span of a fresh trace: (result, trace id, span id)."""
    header, trace_id, caller_span = traceparent()
    with server.connect(token, **{"adbc.flight.sql.rpc.call_header.traceparent": header}) as conn, \
            conn.cursor() as cur:  # fmt: skip
        cur.execute(sql)
        return cur.fetch_arrow_table(), trace_id, caller_span


def test_a_protected_query_is_one_trace_with_a_span_per_step(telemetry_server, collector, mint_token):
    """A caller's `traceparent` makes Strata's request spans children of the caller's span; each
    request has auth, planning with the tier guard, execution with the disclosure rewrite and
    the protection step, and streaming under it."""
    alice = Caller(telemetry_server, mint_token, "telemetry-alice")
    result, trace_id, caller_span = traced_query(telemetry_server, alice.token, PROTECTED)
    assert result.num_rows >= 2

    def complete(spans):
        mine = [s for s in spans if s["trace"] == trace_id]
        return any(s["name"] == "stream" for s in mine) and any(
            s["name"] == "flight DoGet" for s in mine
        )

    spans = [s for s in collector.wait_for(complete) if s["trace"] == trace_id]
    assert "strata-under-test" in collector.service_names
    requests = [s for s in spans if s["attrs"].get("door") == "flight"]
    # ADBC prepares (DoAction), describes (GetFlightInfo) and fetches (DoGet).
    assert {s["name"] for s in requests} >= {"flight DoAction", "flight GetFlightInfo", "flight DoGet"}
    # Every request span hangs off the caller's span: one trace across services.
    assert all(s["parent"] == caller_span for s in requests), spans
    # Each request checks its passport first.
    for request in requests:
        assert "auth" in {s["name"] for s in children(spans, request)}, request["name"]
    # Planning, with the tier guard checking the plan.
    planned = [r for r in requests if any(s["name"] == "plan" for s in descendants(spans, r))]
    assert len(planned) == 1 and planned[0]["name"] == "flight DoAction"
    plan = next(s for s in descendants(spans, planned[0]) if s["name"] == "plan")
    assert {s["attrs"].get("rule") for s in descendants(spans, plan)} >= {"tier_guard"}
    # The protected result is computed when it is described: execution with the disclosure
    # rewrite and the protection step under it, then streaming, in the same request.
    executed = [r for r in requests if any(s["name"] == "execute" for s in descendants(spans, r))]
    assert len(executed) == 1 and executed[0]["name"] == "flight GetFlightInfo"
    under = descendants(spans, executed[0])
    execute = next(s for s in under if s["name"] == "execute")
    below = descendants(spans, execute)
    assert {s["attrs"].get("rule") for s in below if s["name"] == "policy"} >= {"disclosure"}
    assert "protect" in {s["name"] for s in below}
    disclosure = next(s for s in below if s["attrs"].get("rule") == "disclosure")
    assert int(disclosure["attrs"]["protected_aggregates"]) == 1
    stream = next(s for s in under if s["name"] == "stream")
    assert int(stream["attrs"]["rows"]) == result.num_rows
    # Children lie within their parents' time.
    by_id = {s["id"]: s for s in spans}
    for s in spans:
        p = by_id.get(s["parent"])
        if p is not None:
            assert p["start"] <= s["start"] and s["end"] <= p["end"], (s["name"], p["name"])


def test_a_streamed_result_ends_its_stream_span_with_its_rows(telemetry_server, collector, mint_token):
    alice = Caller(telemetry_server, mint_token, "telemetry-rows")
    result, trace_id, _ = traced_query(telemetry_server, alice.token, ROWS)
    assert result.num_rows == 7
    spans = collector.wait_for(
        lambda spans: any(s["trace"] == trace_id and s["name"] == "stream" for s in spans)
    )
    mine = [s for s in spans if s["trace"] == trace_id]
    stream = next(s for s in mine if s["name"] == "stream")
    by_id = {s["id"]: s for s in mine}
    # A row-level result streams from the fetch (DoGet), where it executes.
    request = stream
    while request["parent"] in by_id:
        request = by_id[request["parent"]]
    assert request["name"] == "flight DoGet"
    assert "execute" in {s["name"] for s in descendants(mine, request)}
    assert int(stream["attrs"]["rows"]) == 7
    assert int(stream["attrs"]["bytes"]) > 0


def test_a_refused_passport_is_a_failed_auth_span(telemetry_server, collector):
    header, trace_id, _ = traceparent()
    with pytest.raises(Exception):
        with telemetry_server.connect(
            "not-a-passport", **{"adbc.flight.sql.rpc.call_header.traceparent": header}
        ) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    spans = collector.wait_for(
        lambda spans: any(s["trace"] == trace_id and s["name"] == "auth" for s in spans)
    )
    mine = [s for s in spans if s["trace"] == trace_id]
    assert not [s for s in mine if s["name"] in ("plan", "execute", "stream")], mine


def test_postgresql_statements_are_requests_too(telemetry_server, collector, mint_token):
    bob = Caller(telemetry_server, mint_token, "telemetry-pg")
    before = {s["id"] for s in collector.spans}
    with psycopg.connect(
        host="127.0.0.1", port=telemetry_server.pg_port, user="telemetry-pg", password=bob.token, dbname="strata"
    ) as conn:
        assert len(conn.execute(ROWS).fetchall()) == 7

    def new(spans, name):
        return [s for s in spans if s["name"] == name and s["id"] not in before]

    # One request per statement, each a root (a connection lives long; its statements are
    # the requests): psycopg's BEGIN, then the query.
    spans = collector.wait_for(lambda spans: new(spans, "stream"))
    roots = [s for s in spans if s["attrs"].get("door") == "pg" and s["id"] not in before]
    assert all(root["parent"] == "" for root in roots), roots
    steps = [{s["name"] for s in descendants(spans, root)} for root in roots]
    assert any({"plan", "execute", "stream"} <= names for names in steps), steps


# ------------------------------------------------------------------------------------------------
# Prometheus
# ------------------------------------------------------------------------------------------------


def audit_finals(srv) -> list[dict]:
    records = [json.loads(l) for l in srv.audit_path.read_text().splitlines() if l.strip()]
    return [r for r in records if r["phase"] != "start"]


def settled(srv, port: int, timeout: float = 15.0):
    """The scrape and the audit log's final records once they agree on the number of requests
    (both are written in the background) and the sampled gauges have caught up."""
    deadline = time.monotonic() + timeout
    while True:
        metrics, finals = scrape(port), audit_finals(srv)
        if total(metrics, "strata_requests_total") == len(finals) and total(
            metrics, "strata_queries_running"
        ) == 0:
            return metrics, finals
        if time.monotonic() > deadline:
            raise AssertionError(
                f"metrics count {total(metrics, 'strata_requests_total')} requests, the audit log {len(finals)}"
            )
        time.sleep(0.2)


def test_the_metrics_count_what_the_clients_saw(telemetry_server, mint_token):
    """Three queries and one refusal: the counters move by what the clients counted themselves
    (queries, rows), and by what the audit log says was suppressed."""
    srv = telemetry_server
    before, _ = settled(srv, srv.metrics_port)
    carol = Caller(srv, mint_token, "telemetry-metrics")
    rows = carol.table(PROTECTED).num_rows + carol.table(ROWS).num_rows
    # Small cells are suppressed: counts by year of birth and gender include cells of 1..20.
    small = carol.table("SELECT year_of_birth, gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1, 2")
    rows += small.num_rows
    suppressed = small.column("n").null_count
    assert suppressed > 0
    public = Caller(srv, mint_token, "telemetry-public", tier="public")
    public.refused("SELECT person_id FROM person")
    after, finals = settled(srv, srv.metrics_port)

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("strata_queries_total", door="flight", outcome="ok") == 3
    assert moved("strata_queries_total", outcome="error") == 0
    assert moved("strata_requests_total", outcome="denied") == 1
    assert moved("strata_rows_out_total", door="flight") == rows
    assert moved("strata_query_duration_seconds_count", door="flight") == 3
    assert moved("strata_bytes_out_total") > 0
    assert moved("strata_bytes_scanned_total") > 0
    # Suppressed cells, by reason, as the audit log has them; at least the client's NULLs.
    mine = [r for r in finals if r["phase"] == "end" and r["sub"] == "telemetry-metrics"]
    by_reason = defaultdict(int)
    for r in mine:
        for reason, n in (r.get("suppressed_by_reason") or {}).items():
            by_reason[reason] += n
    assert sum(by_reason.values()) >= suppressed
    for reason, n in by_reason.items():
        assert moved("strata_suppressed_cells_total", reason=reason) == n, reason
    assert after[("strata_audit_pending_records", ())] == 0
    assert after[("strata_audit_lag_seconds", ())] == 0


def test_prometheus_scrapes_the_endpoint(telemetry_server, mint_token, tmp_path):
    """Debian's Prometheus scrapes `metrics_listen`; its API then serves the counters Strata
    exposes, at the values of the endpoint."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is missing (scripts/test.sh installs it)"
    srv = telemetry_server
    Caller(srv, mint_token, "telemetry-scraped").table(PROTECTED)
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: strata\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{srv.metrics_port}']\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),
    )
    try:
        expected, _ = settled(srv, srv.metrics_port)
        want = total(expected, "strata_queries_total")
        assert want >= 1
        deadline = time.monotonic() + 60
        while True:
            got = _prom_query(prom_port, "sum(strata_queries_total)")
            up = _prom_query(prom_port, 'up{job="strata"}')
            if got == want and up == 1:
                break
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"Prometheus has {got} queries (up={up}), expected {want}"
            time.sleep(0.5)
        assert _prom_query(prom_port, "sum(strata_bytes_scanned_total)") == total(
            expected, "strata_bytes_scanned_total"
        )
        assert _prom_query(prom_port, 'count(strata_query_duration_seconds_bucket{door="flight"})') > 5
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _prom_query(port: int, expr: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = json.load(urllib.request.urlopen(url, timeout=5))
    except OSError:
        return None
    result = body.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def test_a_collector_that_is_down_costs_no_answer(gen_dataset, start_passport_server, mint_token):
    """Traces are best effort: with nothing listening at the endpoint, queries still answer."""
    dead = free_port()
    srv = start_passport_server(
        gen_dataset,
        "telemetry-dead-collector",
        config=f'[telemetry]\notlp_endpoint = "http://127.0.0.1:{dead}"\n',
        env=FAST_EXPORT,
    )
    alice = Caller(srv, mint_token, "telemetry-dead")
    for _ in range(3):
        assert alice.table(ROWS).num_rows == 7
    srv.stop()
    assert srv.returncode == 0


@pytest.mark.parametrize(
    "config, message",
    [
        ("[telemetry]\nsample_ratio = 2\n", "sample_ratio"),
        ('[telemetry]\notlp_endpoint = "127.0.0.1:4317"\n', "otlp_endpoint"),
        ("[telemetry]\nmetrics_port = 1\n", "metrics_port"),
    ],
)
def test_bad_telemetry_settings_are_refused_at_start(gen_dataset, tmp_path, config, message):
    path = tmp_path / "bad.toml"
    path.write_text(config)
    proc = run_strata("serve", "--dataset", gen_dataset, "--config", path, "--listen", "127.0.0.1:0", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_a_taken_metrics_port_is_a_clear_error(gen_dataset, tmp_path):
    with contextlib.closing(__import__("socket").socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "taken.toml"
        path.write_text(f'[telemetry]\nmetrics_listen = "127.0.0.1:{port}"\n')
        proc = run_strata(
            "serve", "--dataset", gen_dataset, "--config", path, "--listen", f"127.0.0.1:{free_port()}", check=False
        )
    assert proc.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in proc.stderr, proc.stderr
