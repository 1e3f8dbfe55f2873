"""Session fixtures of the Strata Python test-suite.

Datasets and servers are built once per session under `<repo>/.test-work/` (git-ignored); the folder
of a run is removed at the end unless STRATA_KEEP_TEST_WORK=1.

Passports: one dev issuer for the session (`passport_keys`), `mint_token(tier, sub, *flags)` for
tokens it signs, `start_passport_server(dataset, name, …)` for a `strata serve --jwks` of one's own
(its own state: audit log, release ledger, named cohorts), and the shared passport servers of the
synthetic and GiBleed datasets for tests whose principals keep to themselves.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import (
    start_moto,
    stop_process,
    StrataServer,
    duck_over,
    free_port,
    make_keys,
    mint,
    passport_server,
    repo_root,
    run_strata,
    shared_data_dir,
    strata_bin,
)

GEN_PERSONS = 3000
GEN_SHARDS = 4
GEN_SEED = 7
GIBLEED_SHARDS = 4

# Fake credentials for the moto S3 server; set for the whole session so that every `strata serve`
# (which reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and boto3 agree.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "strata-test-key",
    "AWS_SECRET_ACCESS_KEY": "strata-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def pytest_report_header(config):
    b = strata_bin()
    return [f"strata binary: {b} ({'present' if b.exists() else 'MISSING'})", f"shared data: {shared_data_dir()}"]


@pytest.fixture(scope="session")
def work_root() -> Path:
    base = repo_root() / ".test-work"
    base.mkdir(exist_ok=True)
    run = base / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run.mkdir()
    yield run
    if os.environ.get("STRATA_KEEP_TEST_WORK") != "1":
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture()
def tmp_work(work_root, request) -> Path:
    """A fresh folder per test under the session's work folder."""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)[:80]
    d = work_root / "t" / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def _assert_no_panic(srv: StrataServer) -> None:
    """A session server must never have panicked, whatever the tests sent it."""
    text = srv.all_stderr()
    if "panicked" in text:
        at = text.index("panicked")
        pytest.fail(f"strata serve panicked during the session:\n{text[max(0, at - 2000):at + 2000]}")


# --------------------------------------------------------------------------------------------------
# Synthetic dataset
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gen_dataset(work_root) -> Path:
    out = work_root / "gen"
    run_strata(
        "generate", "--out", out, "--persons", GEN_PERSONS, "--shards", GEN_SHARDS, "--seed", GEN_SEED
    )
    assert (out / "catalog.toml").is_file(), f"generate wrote no catalog.toml in {out}"
    return out


@pytest.fixture(scope="session")
def gen_server(gen_dataset, work_root):
    srv = StrataServer(gen_dataset, log_dir=work_root / "logs-gen-server")
    srv.start()
    yield srv
    srv.stop()
    _assert_no_panic(srv)


@pytest.fixture(scope="session")
def gen_duck(gen_dataset):
    con = duck_over(gen_dataset)
    yield con
    con.close()


# --------------------------------------------------------------------------------------------------
# GiBleed (real OMOP data, imported)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gibleed_source() -> Path:
    src = shared_data_dir() / "gibleed"
    assert (src / "person.parquet").is_file(), f"GiBleed data not found at {src}"
    return src


@pytest.fixture(scope="session")
def gibleed_dataset(gibleed_source, work_root) -> Path:
    out = work_root / "gibleed"
    run_strata("import", "omop", "--from", gibleed_source, "--out", out, "--shards", GIBLEED_SHARDS)
    assert (out / "catalog.toml").is_file(), f"import omop wrote no catalog.toml in {out}"
    return out


@pytest.fixture(scope="session")
def gibleed_server(gibleed_dataset, work_root):
    srv = StrataServer(gibleed_dataset, log_dir=work_root / "logs-gibleed-server")
    srv.start()
    yield srv
    srv.stop()
    _assert_no_panic(srv)


@pytest.fixture(scope="session")
def gibleed_duck(gibleed_dataset):
    con = duck_over(gibleed_dataset)
    yield con
    con.close()


# --------------------------------------------------------------------------------------------------
# S3-compatible store (moto)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_env():
    """AWS credentials/region for the session (moto accepts any)."""
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    yield dict(S3_ENV)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def moto_server(s3_env, work_root):
    """A moto S3 server on a free local port; yields its endpoint `http://127.0.0.1:PORT`."""
    proc, endpoint = start_moto(work_root / "moto.log")
    try:
        yield endpoint
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def s3_client(moto_server):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name=S3_ENV["AWS_REGION"],
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    )


# --------------------------------------------------------------------------------------------------
# Passports: keys, tokens and passport servers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def passport_keys(work_root) -> Path:
    """The session's dev issuer (`strata keys`): every passport server of the suite trusts it."""
    return make_keys(work_root / "passport-keys")


@pytest.fixture(scope="session")
def mint_token(passport_keys):
    """`mint_token(tier="registered", sub="alice", *flags)`: a passport signed by the session's
    issuer (`strata token … FLAGS`)."""
    return functools.partial(mint, passport_keys)


@pytest.fixture(scope="session")
def start_passport_server(work_root, passport_keys, mint_token):
    """`start_passport_server(dataset, name, config="", root=None, env=None)`: a started `strata
    serve --jwks` trusting the session's issuer, with its own state folder, config and logs under
    `root` (default: the session's work folder) and `env` added to its environment. Stopped at the end of the session, or earlier by
    `srv.stop()`; a server that panicked fails the session."""
    started = []

    def start(
        dataset, name: str, config: str = "", root: Path | None = None, env: dict | None = None
    ) -> StrataServer:
        token = mint_token("controlled", "ready", "--ttl", "1d")
        srv = passport_server(dataset, passport_keys, root or work_root, name, token, config, env)
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
    for srv in started:
        _assert_no_panic(srv)


@pytest.fixture(scope="session")
def gen_passport_server(gen_dataset, start_passport_server):
    """The passport server of the synthetic dataset shared by the modules whose tests need no
    server of their own (passports, tiers, disclosure, dominance, research SQL, Circe, the cohort
    service, the red team): each test's principal (its `sub`) has its own release ledger and named
    cohorts, and tests that read the audit log or the query log look only at the records after
    their own start."""
    return start_passport_server(gen_dataset, "passport-gen")


@pytest.fixture(scope="session")
def gibleed_passport_server(gibleed_dataset, start_passport_server):
    """The passport server of the imported GiBleed dataset, shared like `gen_passport_server`."""
    return start_passport_server(gibleed_dataset, "passport-gibleed")
