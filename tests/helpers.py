"""Shared helpers of the Strata Python test-suite.

Everything here talks to the real `strata` binary (built by `cargo build --workspace --bins`) and to
reference engines (DuckDB over the same Parquet files).  Other test modules import these names:

    strata_bin, run_strata, StrataServer, duck_over, assert_tables_equal, check,
    repo_root, shared_data_dir, free_port, one_line_error,
    make_keys, mint, passport_server, run_sql, Caller,
    status_text, assert_unauthenticated, assert_permission_denied

Test modules never import from each other: what two modules share lives here (functions) or in
conftest.py (fixtures: the session's passport keys, `mint_token`, `start_passport_server` and the
shared passport servers).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa

REPO_ROOT = Path(__file__).resolve().parent.parent

# Tables of the synthetic dataset (DESIGN.md, "Tables").
VOCABULARY_TABLES = ["concept", "concept_ancestor", "concept_relationship"]
EHR_TABLES = [
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
]
SURVEY_TABLES = ["ds_survey"]
WEARABLE_TABLES = [
    "activity_summary",
    "heart_rate_minute_level",
    "heart_rate_summary",
    "steps_intraday",
    "sleep_daily_summary",
    "sleep_level",
]
VARIANT_TABLES = ["variant", "genotype"]
PERSON_KEYED_TABLES = EHR_TABLES + SURVEY_TABLES + WEARABLE_TABLES
ALL_TABLES = VOCABULARY_TABLES + PERSON_KEYED_TABLES + VARIANT_TABLES


# --------------------------------------------------------------------------------------------------
# Paths and the binary
# --------------------------------------------------------------------------------------------------


def repo_root() -> Path:
    return REPO_ROOT


def shared_data_dir() -> Path:
    """`../shared/data` relative to the project root (override: STRATA_SHARED_DATA)."""
    env = os.environ.get("STRATA_SHARED_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"


def strata_bin() -> Path:
    """Path of the `strata` binary: $STRATA_BIN, else the cargo target dir's debug build."""
    env = os.environ.get("STRATA_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return Path(target) / "debug" / "strata"
    # scripts/test.sh uses this shared target dir when it exists; mirror that for direct pytest runs.
    cache = Path.home() / ".cache" / "strata-target"
    if cache.is_dir() and (cache / "debug" / "strata").exists():
        return cache / "debug" / "strata"
    return REPO_ROOT / "target" / "debug" / "strata"


class StrataCommandError(subprocess.CalledProcessError):
    """A failed `strata` run whose str() shows the command, exit code, stdout and stderr."""

    def __str__(self) -> str:  # pragma: no cover - formatting only
        return (
            f"command {shlex.join(map(str, self.cmd))} exited with {self.returncode}\n"
            f"--- stdout ---\n{_tail(self.stdout)}\n--- stderr ---\n{_tail(self.stderr)}"
        )


def _tail(text: str | None, limit: int = 6000) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else "…" + text[-limit:]


def _merged_env(env: dict[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.setdefault("RUST_BACKTRACE", "1")
    if env:
        merged.update({k: str(v) for k, v in env.items()})
    return merged


def run_strata(
    *args: Any,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run `strata ARGS…` and return the CompletedProcess (text mode).

    `env` entries are added to (override) the current environment.  With check=True a non-zero exit
    raises StrataCommandError (a CalledProcessError) whose message includes stderr.
    """
    binary = strata_bin()
    if not binary.exists():
        raise AssertionError(
            f"strata binary not found at {binary}; build it with `cargo build --workspace --bins` "
            "or set STRATA_BIN"
        )
    cmd = [str(binary), *map(str, args)]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=_merged_env(env),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"command {shlex.join(cmd)} did not finish within {timeout}s\n"
            f"--- stderr ---\n{_tail(_decode(e.stderr))}"
        ) from None
    if check and proc.returncode != 0:
        raise StrataCommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def _decode(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b if isinstance(b, str) else b.decode("utf-8", "replace")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOG_LINE = re.compile(r"^(\{.*\}|\d{4}-\d\d-\d\dT\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\b.*)$")


def one_line_error(proc: subprocess.CompletedProcess, *must_mention: str, allow_logs: bool = False) -> str:
    """Assert the contract for bad input: non-zero exit, no panic, a single `error: …` line.

    With allow_logs, log records written before the failure (JSON or text tracing lines, as
    `strata serve` prints while starting) may precede the error line.  Returns the error line;
    `must_mention` strings must appear (case-insensitively) in it.
    """
    where = f"command {shlex.join(map(str, proc.args))}"
    stderr = proc.stderr or ""
    assert proc.returncode != 0, f"{where} should fail but exited 0\nstderr:\n{_tail(stderr)}"
    assert "panicked" not in stderr, f"{where} panicked:\n{_tail(stderr)}"
    assert proc.returncode not in (-6, 101, 134), (
        f"{where} died with {proc.returncode} (panic/abort)\nstderr:\n{_tail(stderr)}"
    )
    lines = [_ANSI.sub("", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    if allow_logs:
        lines = [ln for ln in lines if not _LOG_LINE.match(ln)]
    assert len(lines) == 1, (
        f"{where} should print exactly one error line on stderr, got {len(lines)}:\n{_tail(stderr)}"
    )
    line = lines[0]
    assert line.lower().startswith("error:"), f"{where}: stderr line should start with 'error:': {line!r}"
    for word in must_mention:
        assert word.lower() in line.lower(), f"{where}: error should mention {word!r}: {line!r}"
    return line


def shard_of(person_id: int, shards: int) -> int:
    """The layout's shard of a participant: SplitMix64 finalizer of person_id, mod shards
    (engine/src/layout.rs; fixed forever, as datasets on disk depend on it)."""
    mask = (1 << 64) - 1
    z = (person_id + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) % shards


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class StrataServer:
    """`strata serve` on a free local port, as a context manager.

        with StrataServer(dataset) as srv:
            table = srv.query("SELECT COUNT(*) AS n FROM person")
            rec = srv.last_query_record()

    stderr (JSON log lines with `--log-format json`, added unless extra_args names a log format) goes
    to a file; `log_records()` parses it.
    """

    READY_TIMEOUT = 60.0

    def __init__(
        self,
        dataset: str | os.PathLike,
        extra_args: Sequence[Any] = (),
        env: dict[str, str] | None = None,
        token: str | None = None,
        log_dir: str | os.PathLike | None = None,
        pg: bool = False,
    ):
        self.dataset = Path(dataset)
        # With `pg`, the PostgreSQL-wire door listens too (`srv.pg_port`).
        self.pg = pg
        self.pg_port: int | None = None
        # A PEM root certificate: the server speaks TLS ([tls] in its config), clients verify it.
        self.tls_root: str | None = None
        # PEM certificate chain and key of this client, for a server that asks for them (mutual
        # TLS: `client_ca` in [tls]).
        self.tls_client: tuple[str, str] | None = None
        # A server that must refuse every query (its audit log cannot be written, say) is ready
        # when the readiness query is refused with this text.
        self.ready_refusal: str | None = None
        self.extra_args = [str(a) for a in extra_args]
        self.env = env
        self.token = token
        self.host = "127.0.0.1"
        self.port: int | None = None
        # Set: every start listens on this port (a server others were configured to reach).
        self.fixed_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log_dir = Path(log_dir) if log_dir else None
        self._own_log_dir: tempfile.TemporaryDirectory | None = None
        self.stderr_path: Path | None = None
        self.stdout_path: Path | None = None
        self._conn = None
        self._connections: list = []
        self._start_count = 0
        self.returncode: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        assert self.port is not None, "server not started"
        return f"grpc{'+tls' if self.tls_root else ''}://{self.host}:{self.port}"

    def command(self) -> list[str]:
        args = [str(strata_bin()), "serve", "--dataset", str(self.dataset), "--listen", f"{self.host}:{self.port}"]
        if "--log-format" not in self.extra_args:
            args += ["--log-format", "json"]
        if self.pg_port is not None:
            args += ["--pg-listen", f"{self.host}:{self.pg_port}"]
        return args + self.extra_args

    def start(self) -> "StrataServer":
        assert self.proc is None, "already started"
        binary = strata_bin()
        assert binary.exists(), f"strata binary not found at {binary} (set STRATA_BIN)"
        if self._log_dir is None:
            self._own_log_dir = tempfile.TemporaryDirectory(prefix="strata-serve-")
            self._log_dir = Path(self._own_log_dir.name)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        last_err = None
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self._start_count += 1
            self.port = self.fixed_port or free_port()
            self.pg_port = free_port() if self.pg else None
            self.stderr_path = self._log_dir / f"serve-{self.port}-{self._start_count}.stderr"
            self.stdout_path = self._log_dir / f"serve-{self.port}-{self._start_count}.stdout"
            with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
                self.proc = subprocess.Popen(
                    self.command(),
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    env=_merged_env(self.env),
                    start_new_session=True,
                )
            try:
                self._wait_ready()
                return self
            except _PortTaken as e:
                last_err = e
                self._kill()
                continue
            except BaseException:
                self._kill()
                raise
        raise AssertionError(f"could not start strata serve: {last_err}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.READY_TIMEOUT
        # 1. TCP port accepts connections.
        while True:
            code = self.proc.poll()
            if code is not None:
                stderr = self.stderr()
                if "address already in use" in stderr.lower() or "addrinuse" in stderr.lower():
                    raise _PortTaken(stderr)
                raise AssertionError(
                    f"strata serve exited with {code} before listening\n"
                    f"command: {shlex.join(self.command())}\n--- stderr ---\n{_tail(stderr)}"
                )
            if _port_open(self.host, self.port):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"strata serve did not listen on {self.host}:{self.port} within "
                    f"{self.READY_TIMEOUT}s\n--- stderr ---\n{_tail(self.stderr())}"
                )
            time.sleep(0.1)
        # 2. A Flight SQL query works.
        last = None
        while True:
            try:
                t = self.query("SELECT 1 AS one")
                if t.num_rows == 1:
                    return
                last = f"SELECT 1 returned {t.num_rows} rows"
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last = f"{type(e).__name__}: {e}"
                self._reset_conn()
                if self.ready_refusal and self.ready_refusal in str(e):
                    return
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"strata serve exited with {code} during readiness check ({last})\n"
                    f"--- stderr ---\n{_tail(self.stderr())}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"strata serve not ready within {self.READY_TIMEOUT}s: last error: {last}\n"
                    f"--- stderr ---\n{_tail(self.stderr())}"
                )
            time.sleep(0.25)

    def _reset_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(timeout=15)
        self.returncode = self.proc.returncode
        self.proc = None

    def stop(self) -> None:
        for c in self._connections:
            with contextlib.suppress(Exception):
                c.close()
        self._connections.clear()
        self._conn = None
        self._kill()

    def restart(self) -> "StrataServer":
        self.stop()
        return self.start()

    def __enter__(self) -> "StrataServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- client ------------------------------------------------------------------------------------

    def connect(self, token: str | None = None, **db_kwargs: str):
        """A new ADBC Flight SQL DB-API connection (autocommit).  Closed by stop()."""
        import adbc_driver_flightsql
        import adbc_driver_flightsql.dbapi as flight_sql

        kwargs = {
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: "240",
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: "240",
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_UPDATE.value: "240",
        }
        token = token if token is not None else self.token
        if token:
            kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
        if self.tls_root:
            kwargs["adbc.flight.sql.client_option.tls_root_certs"] = self.tls_root
        if self.tls_client:
            kwargs["adbc.flight.sql.client_option.mtls_cert_chain"] = self.tls_client[0]
            kwargs["adbc.flight.sql.client_option.mtls_private_key"] = self.tls_client[1]
        kwargs.update(db_kwargs)
        conn = flight_sql.connect(self.uri, db_kwargs=kwargs, autocommit=True)
        self._connections.append(conn)
        return conn

    def conn(self):
        """The server's shared connection (made on first use)."""
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one statement and return all its rows (params → an ADBC prepared statement)."""
        cur = self.conn().cursor()
        try:
            if params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
            return cur.fetch_arrow_table()
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    # -- logs --------------------------------------------------------------------------------------

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def all_stderr(self) -> str:
        """stderr of every start of this server (restart() keeps the earlier files)."""
        if self._log_dir is None:
            return ""
        return "".join(p.read_text(errors="replace") for p in sorted(self._log_dir.glob("serve-*.stderr")))

    def log_records(self) -> list[dict]:
        """JSON objects logged on stderr by the current process (non-JSON lines are skipped)."""
        records = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                records.append(obj)
        return records

    def query_records(self) -> list[dict]:
        return [r for r in self.log_records() if r.get("message") == "query"]

    def last_query_record(self, wait: float = 5.0) -> dict:
        """The newest `"message": "query"` log record (waits up to `wait` s for one to appear)."""
        deadline = time.monotonic() + wait
        while True:
            recs = self.query_records()
            if recs:
                return recs[-1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    'no log record with "message": "query" on the server\'s stderr; last lines:\n'
                    + _tail("\n".join(self.stderr().splitlines()[-20:]))
                )
            time.sleep(0.05)

    def query_with_record(self, sql: str, params: Sequence[Any] | None = None, wait: float = 10.0):
        """Run `sql` and return (table, its query log record).

        Waits until a new query record appears (the server may log after the stream ends) and
        prefers the newest new record whose `statement` is this SQL.
        """
        before = len(self.query_records())
        table = self.query(sql, params)
        deadline = time.monotonic() + wait
        while True:
            recs = self.query_records()[before:]
            matching = [r for r in recs if _same_sql(r.get("statement"), sql)]
            if matching:
                return table, matching[-1]
            if time.monotonic() > deadline:
                if recs:
                    return table, recs[-1]
                raise AssertionError(
                    f'no new "query" log record after running {sql!r}; last stderr lines:\n'
                    + _tail("\n".join(self.stderr().splitlines()[-20:]))
                )
            time.sleep(0.05)


def passport_server(
    dataset, keys, root: Path, name: str, token: str, config: str = "", env: dict | None = None
) -> StrataServer:
    """`strata serve --jwks KEYS/jwks.json --config …` (not started) with its own state folder
    `root/<name>-state` (`srv.state_dir`, `srv.audit_path`), logs under `root/logs-<name>`, `config`
    (TOML) appended to the config file, and `token` for its readiness check."""
    state = Path(root) / f"{name}-state"
    config_file = Path(root) / f"{name}.toml"
    config_file.write_text(f'state_dir = "{state}"\n{config}')
    srv = StrataServer(
        dataset,
        extra_args=["--jwks", Path(keys) / "jwks.json", "--config", config_file],
        token=token,
        log_dir=Path(root) / f"logs-{name}",
        pg=True,
        env=env,
    )
    srv.state_dir = state
    srv.audit_path = state / "audit.jsonl"
    return srv


# --------------------------------------------------------------------------------------------------
# moto: a real S3-compatible server (PyPI `moto[server]`)
# --------------------------------------------------------------------------------------------------


def start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    """A moto S3 server on a free local port: (process, endpoint `http://127.0.0.1:PORT`)."""
    import urllib.request

    log = open(log_path, "wb")
    for _attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(Exception):
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=2) as r:
                    if r.status == 200:
                        log.close()
                        return proc, endpoint
            time.sleep(0.2)
        stop_process(proc)
    log.close()
    raise AssertionError("moto server did not start:\n" + Path(log_path).read_text(errors="replace")[-4000:])


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------------
# Prometheus metrics (`[telemetry] metrics_listen`)
# --------------------------------------------------------------------------------------------------


def scrape_metrics(port: int) -> dict[tuple, float]:
    """The exposition on /metrics as {(name, (label, value)…): value}."""
    text = __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = tuple(
            sorted(tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",") if kv)
        )
        out[(name, tuple((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def metric_total(metrics, name, **labels) -> float:
    return sum(
        v
        for (n, ls), v in metrics.items()
        if n == name and all((k, str(val)) in ls for k, val in labels.items())
    )


# --------------------------------------------------------------------------------------------------
# Passports (DESIGN.md, "Passports"): dev keys, tokens, and callers
# --------------------------------------------------------------------------------------------------


def make_keys(out: Path, *extra) -> Path:
    """`strata keys --out OUT`: a dev issuer (private key, jwks.json, issuer) in `out`."""
    run_strata("keys", "--out", out, *extra, timeout=120)
    return out


def mint(keys: Path, tier: str = "registered", sub: str = "alice", *extra) -> str:
    """`strata token`: a passport for `sub` at `tier` signed by the issuer in `keys`."""
    proc = run_strata("token", "--tier", tier, "--sub", sub, "--keys", keys, *extra, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"`strata token` should print exactly one line, got:\n{proc.stdout}"
    return lines[0].strip()


def audit(srv) -> list[dict]:
    """The records of a passport server's audit log (`srv.audit_path`), oldest first."""
    return [json.loads(line) for line in srv.audit_path.read_text().splitlines() if line.strip()]


def run_sql(server: StrataServer, token: str | None, sql: str):
    """One statement on a fresh connection with `token` ("" = no authorization header)."""
    conn = server.connect(token=token if token is not None else "")
    try:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            return cur.fetch_arrow_table()
        finally:
            with contextlib.suppress(Exception):
                cur.close()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def status_text(exc: BaseException) -> str:
    """An error's text lower-cased without `_` and spaces: `PERMISSION_DENIED` → `permissiondenied`."""
    return "".join(str(exc).lower().replace("_", "").split())


def assert_unauthenticated(exc: BaseException, token: str | None = None) -> None:
    text = str(exc)
    assert "unauthenticated" in status_text(exc), f"expected UNAUTHENTICATED, got: {text}"
    if token:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in text, "the error message echoes the token"


def assert_permission_denied(exc: BaseException) -> None:
    assert "permissiondenied" in status_text(exc), f"expected PERMISSION_DENIED, got: {exc}"


class Caller:
    """One principal: its own passport (from `mint`, the `mint_token` fixture), so its own
    release history."""

    def __init__(self, server, mint, sub, tier="controlled", egress=None):
        extra = ["--egress", egress] if egress else []
        self.server = server
        self.token = mint(tier, sub, *extra, "--ttl", "1d")

    def table(self, sql):
        conn = self.server.connect(token=self.token)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetch_arrow_table()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def rows(self, sql):
        return self.table(sql).to_pylist()

    def value(self, sql):
        rows = self.rows(sql)
        assert len(rows) == 1, rows
        return next(iter(rows[0].values()))

    def refused(self, sql, status="permissiondenied"):
        import pytest

        with pytest.raises(Exception) as err:
            self.rows(sql)
        assert status in status_text(err.value), str(err.value)
        return str(err.value)


class _PortTaken(Exception):
    pass


def _same_sql(a: Any, b: str) -> bool:
    if not isinstance(a, str):
        return False
    norm = lambda s: " ".join(s.split()).rstrip(";").lower()  # noqa: E731
    return norm(a) == norm(b)


# --------------------------------------------------------------------------------------------------
# Reference engine
# --------------------------------------------------------------------------------------------------


def dataset_table_dirs(dataset_dir: str | os.PathLike) -> dict[str, Path]:
    """Table name → folder for every folder of the dataset that holds Parquet files."""
    ds = Path(dataset_dir)
    out = {}
    for child in sorted(ds.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and any(child.rglob("*.parquet")):
            out[child.name] = child
    return out


def duck_over(dataset_dir: str | os.PathLike, tables: Iterable[str] | None = None):
    """A DuckDB connection with one view per table folder of the dataset (or of a flat folder of
    `<table>.parquet` files, as the GiBleed export is)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    ds = Path(dataset_dir)
    wanted = set(tables) if tables is not None else None
    for name, path in dataset_table_dirs(ds).items():
        if wanted is not None and name not in wanted:
            continue
        glob = str(path / "**" / "*.parquet").replace("'", "''")
        con.execute(
            f'CREATE VIEW "{name}" AS SELECT * FROM '
            f"read_parquet('{glob}', hive_partitioning=false, union_by_name=true)"
        )
    for f in sorted(ds.glob("*.parquet")):
        name = f.stem
        if wanted is not None and name not in wanted:
            continue
        p = str(f).replace("'", "''")
        con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{p}')")
    return con


def duck_query(con, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
    res = con.execute(sql, params) if params is not None else con.execute(sql)
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):  # DuckDB 2.x, 1.x, older
        if hasattr(res, name):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DuckDB 2 warns about an extra copy
                t = getattr(res, name)()
            break
    else:  # pragma: no cover
        raise AttributeError("DuckDB result has no arrow export")
    if isinstance(t, pa.RecordBatchReader):
        t = t.read_all()
    return t


# --------------------------------------------------------------------------------------------------
# Comparing results
# --------------------------------------------------------------------------------------------------


def _to_columns(t) -> tuple[list[str], list[list[Any]]]:
    if isinstance(t, pa.RecordBatchReader):
        t = t.read_all()
    if isinstance(t, pa.RecordBatch):
        t = pa.Table.from_batches([t])
    if isinstance(t, pa.Table):
        return list(t.column_names), [t.column(i).to_pylist() for i in range(t.num_columns)]
    # pandas DataFrame
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(t, pd.DataFrame):
        cols = list(map(str, t.columns))
        values = []
        for c in t.columns:
            col = []
            for v in t[c].tolist():
                if v is pd.NaT or (v is not None and not isinstance(v, str) and _is_na(v)):
                    v = None
                elif isinstance(v, pd.Timestamp):
                    v = v.to_pydatetime()
                col.append(v)
            values.append(col)
        return cols, values
    raise TypeError(f"cannot compare value of type {type(t).__name__}")


def _is_na(v: Any) -> bool:
    try:
        import pandas as pd

        r = pd.isna(v)
        return bool(r) if isinstance(r, (bool,)) or getattr(r, "shape", None) == () else False
    except Exception:  # noqa: BLE001
        return False


def _norm(v: Any) -> Any:
    """Normalize a value so engines with different physical types compare equal."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalar
        with contextlib.suppress(Exception):
            v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, decimal.Decimal):
        if v == v.to_integral_value():
            return int(v)
        return float(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return v
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    return v


def _sort_key(row: tuple) -> tuple:
    key = []
    for v in row:
        if v is None:
            key.append((0, 0, ""))
        elif isinstance(v, bool):
            key.append((1, int(v), ""))
        elif isinstance(v, (int, float)):
            # round floats so values equal within tolerance sort alike
            key.append((1, float(f"{float(v):.9g}"), ""))
        elif isinstance(v, _dt.datetime):
            key.append((2, v.timestamp() if v.tzinfo else (v - _dt.datetime(1970, 1, 1)).total_seconds(), ""))
        elif isinstance(v, _dt.date):
            key.append((2, float(v.toordinal() - 719163) * 86400.0, ""))
        else:
            key.append((3, 0, repr(v)))
    return tuple(key)


def _values_equal(a: Any, b: Any, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
    if isinstance(a, _dt.datetime) and isinstance(b, _dt.datetime):
        return a == b
    if isinstance(a, _dt.date) and isinstance(b, _dt.date):
        # one side a date, the other a datetime: equal only at midnight of that date
        # (engines differ on the type of date + interval)
        dt_a = a if isinstance(a, _dt.datetime) else _dt.datetime.combine(a, _dt.time())
        dt_b = b if isinstance(b, _dt.datetime) else _dt.datetime.combine(b, _dt.time())
        return dt_a == dt_b
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_values_equal(x, y, tol) for x, y in zip(a, b))
    return a == b


def assert_tables_equal(a, b, sort_by=None, float_tol: float = 1e-9, check_names: bool = True) -> None:
    """Assert two results (pyarrow Table/RecordBatch/reader or pandas DataFrame) hold the same rows.

    Values are compared after normalizing physical types (Int32 vs Int64, Decimal vs int, …);
    floats with a relative/absolute tolerance.  `sort_by`: None keeps row order; a column name or a
    list of names sorts both sides by those columns (then by all columns); True sorts by all
    columns.  Column names are compared case-insensitively.
    """
    names_a, cols_a = _to_columns(a)
    names_b, cols_b = _to_columns(b)
    if check_names:
        assert [n.lower() for n in names_a] == [n.lower() for n in names_b], (
            f"column names differ:\n  left:  {names_a}\n  right: {names_b}"
        )
    else:
        assert len(names_a) == len(names_b), f"column counts differ: {names_a} vs {names_b}"
    rows_a = [tuple(_norm(c[i]) for c in cols_a) for i in range(len(cols_a[0]) if cols_a else 0)]
    rows_b = [tuple(_norm(c[i]) for c in cols_b) for i in range(len(cols_b[0]) if cols_b else 0)]
    assert len(rows_a) == len(rows_b), (
        f"row counts differ: left {len(rows_a)}, right {len(rows_b)}\n"
        f"  left head:  {rows_a[:5]}\n  right head: {rows_b[:5]}"
    )
    if sort_by is not None and sort_by is not False:
        if sort_by is True:
            idx = list(range(len(names_a)))
        else:
            keys = [sort_by] if isinstance(sort_by, str) else list(sort_by)
            lower = [n.lower() for n in names_a]
            idx = [lower.index(k.lower()) for k in keys]
            idx += [i for i in range(len(names_a)) if i not in idx]

        def key(r):
            return _sort_key(tuple(r[i] for i in idx))

        rows_a.sort(key=key)
        rows_b.sort(key=key)
    mismatches = []
    for n, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        if len(ra) != len(rb) or not all(_values_equal(x, y, float_tol) for x, y in zip(ra, rb)):
            mismatches.append((n, ra, rb))
            if len(mismatches) >= 5:
                break
    if mismatches:
        detail = "\n".join(f"  row {n}:\n    left:  {ra}\n    right: {rb}" for n, ra, rb in mismatches)
        raise AssertionError(f"results differ ({len(rows_a)} rows, columns {names_a}):\n{detail}")


def check(server, duck, sql, params=None, sort_by=True, allow_empty=False, float_tol=1e-9):
    """Run `sql` on Strata and on DuckDB; assert identical results; return Strata's table."""
    expected = duck_query(duck, sql, params)
    if not allow_empty:
        assert expected.num_rows > 0, f"reference query returned no rows (test data too thin?):\n{sql}"
    got = server.query(sql, params)
    assert_tables_equal(got, expected, sort_by=sort_by, float_tol=float_tol)
    return got


# --------------------------------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------------------------------


def wait_for(pred, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# Protected answers compared whole: rows and the strata.* suppression report
# --------------------------------------------------------------------------------------------------


def outcome(caller: Caller, sql: str):
    """The table (with its strata.* schema metadata), or the refusal's text."""
    try:
        table = caller.table(sql)
    except Exception as e:  # noqa: BLE001 - the refusal is the outcome compared
        return ("refused", status_text(e)[:300])
    meta = {
        k.decode(): v.decode()
        for k, v in (table.schema.metadata or {}).items()
        if k.decode().startswith("strata.")
    }
    return ("table", table, meta)


def assert_same_outcome(a, b, what: str) -> None:
    assert a[0] == b[0], f"{what}: reference {a[0]} ({a[1] if a[0] == 'refused' else ''}), compared {b[0]} ({b[1] if b[0] == 'refused' else ''})"
    if a[0] == "refused":
        assert a[1] == b[1], f"{what}: refusals differ"
        return
    assert_tables_equal(a[1], b[1], sort_by=True, float_tol=1e-9)
    assert a[2] == b[2], f"{what}: suppression reports differ: {a[2]} vs {b[2]}"


# --------------------------------------------------------------------------------------------------
# Certificates (openssl): a CA and certificates it signed, for TLS tests
# --------------------------------------------------------------------------------------------------


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def certificate_authority(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}-ca.key", folder / f"{name}-ca.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={name} CA")  # fmt: skip
    return cert, key


def signed(folder: Path, name: str, ca: tuple[Path, Path], server: bool) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")  # fmt: skip
    ext = folder / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", cert, "-days", "1", "-extfile", ext)  # fmt: skip
    return cert, key
