"""Bad input on the command line: one `error: …` line on stderr, non-zero exit, never a panic."""

from __future__ import annotations

import shutil
import socket
import tomllib

import pytest
import tomli_w

from helpers import free_port, one_line_error, run_strata

SERVE_TIMEOUT = 60  # a serve that should fail at startup must not start serving


@pytest.fixture(scope="module")
def tiny_dataset(work_root):
    out = work_root / "tiny"
    run_strata("generate", "--out", out, "--persons", 100, "--shards", 2, "--seed", 3)
    return out


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _serve(ds, *extra):
    return run_strata(
        "serve", "--dataset", ds, "--listen", f"127.0.0.1:{free_port()}", *extra,
        check=False, timeout=SERVE_TIMEOUT,
    )


def serve_error(proc, *mention):
    """`strata serve` may log its start-up before failing; the error itself is one line."""
    return one_line_error(proc, *mention, allow_logs=True)


def test_help_lists_commands():
    proc = run_strata("--help")
    for word in ("generate", "import", "serve", "demo"):
        assert word in proc.stdout, f"`strata --help` does not mention {word}:\n{proc.stdout}"


def test_serve_missing_dataset(tmp_work):
    missing = tmp_work / "nope"
    serve_error(_serve(missing), "nope")
    assert not missing.exists(), "serve created the missing dataset folder"


def test_serve_folder_without_catalog(tmp_work):
    (tmp_work / "empty").mkdir()
    serve_error(_serve(tmp_work / "empty"), "catalog")


def test_serve_garbage_catalog(tiny_dataset, tmp_work):
    ds = _copy(tiny_dataset, tmp_work / "ds")
    (ds / "catalog.toml").write_bytes(b"\x00\xff this is [[[ not toml = = =\n")
    serve_error(_serve(ds), "catalog")


def test_serve_catalog_wrong_shape(tiny_dataset, tmp_work):
    ds = _copy(tiny_dataset, tmp_work / "ds")
    (ds / "catalog.toml").write_text('tables = "person"\n')
    serve_error(_serve(ds), "catalog")


def test_serve_unknown_store(tiny_dataset, tmp_work):
    ds = _copy(tiny_dataset, tmp_work / "ds")
    cat = tomllib.loads((ds / "catalog.toml").read_text())
    cat["tables"]["measurement"]["store"] = "nowhere"
    (ds / "catalog.toml").write_text(tomli_w.dumps(cat))
    serve_error(_serve(ds), "nowhere")


def test_serve_unknown_store_in_shard_location(tiny_dataset, tmp_work):
    ds = _copy(tiny_dataset, tmp_work / "ds")
    cat = tomllib.loads((ds / "catalog.toml").read_text())
    cat["tables"]["condition_occurrence"]["shard_locations"] = {"1": "nowhere:condition_occurrence/shard=1"}
    (ds / "catalog.toml").write_text(tomli_w.dumps(cat))
    serve_error(_serve(ds), "nowhere")


def test_serve_bad_listen_address(tiny_dataset):
    proc = run_strata("serve", "--dataset", tiny_dataset, "--listen", "not-an-address",
                      check=False, timeout=SERVE_TIMEOUT)
    serve_error(proc, "listen")


def test_serve_port_in_use(tiny_dataset):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = run_strata("serve", "--dataset", tiny_dataset, "--listen", f"127.0.0.1:{port}",
                          check=False, timeout=SERVE_TIMEOUT)
    serve_error(proc, str(port))


def test_serve_bad_log_format(tiny_dataset):
    serve_error(_serve(tiny_dataset, "--log-format", "xml"), "log-format")


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--persons", "0"],
        ["generate", "--shards", "0"],
        ["generate", "--persons", "many"],
        ["generate", "--seed", "x"],
        ["generate", "--no-such-flag"],
        ["no-such-command"],
    ],
    ids=["persons-0", "shards-0", "persons-word", "seed-word", "unknown-flag", "unknown-command"],
)
def test_generate_bad_args(tmp_work, args):
    out = tmp_work / "ds"
    full = list(args)
    if args[0] == "generate":
        full += ["--out", str(out)]
    proc = run_strata(*full, check=False, timeout=120)
    one_line_error(proc)
    assert not out.exists()


def test_import_omop_missing_source(tmp_work):
    out = tmp_work / "ds"
    proc = run_strata("import", "omop", "--from", tmp_work / "nope", "--out", out, check=False, timeout=120)
    one_line_error(proc, "nope")
    assert not out.exists()


def test_import_vcf_garbage_file(tmp_work):
    bad = tmp_work / "bad.vcf.gz"
    bad.write_bytes(b"this is not a bgzipped vcf\n" * 10)
    out = tmp_work / "ds"
    proc = run_strata("import", "vcf", "--from", bad, "--out", out, check=False, timeout=120)
    one_line_error(proc)
    assert not (out / "variant").exists() and not (out / "genotype").exists(), "partial variant tables left"
