"""Tables and single shards on an S3-compatible store (moto), with the memory and disk caches."""

from __future__ import annotations

import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tomli_w

from conftest import GEN_SHARDS
from generated_queries import GEN_QUERIES
from helpers import (
    StrataServer,
    assert_tables_equal,
    check,
    duck_query,
    free_port,
    metric_total,
    one_line_error,
    scrape_metrics,
)

BUCKET = "strata-test"
PREFIX = "ds"
STORE = "s3"
# Tables moved wholly to the store; concept gets an explicit path inside the store.
S3_TABLES = {
    "measurement": "measurement",
    "activity_summary": "activity_summary",
    "concept": "vocab/concept",
    "concept_ancestor": "concept_ancestor",
    "variant": "variant",
    "genotype": "genotype",
}
SPLIT_TABLE = "condition_occurrence"
S3_SHARDS = [k for k in range(GEN_SHARDS) if k >= GEN_SHARDS // 2]  # upper half on S3
CACHE_QUERY = (
    "SELECT measurement_concept_id, COUNT(*) AS n, AVG(value_as_number) AS mean_value "
    "FROM measurement GROUP BY measurement_concept_id HAVING COUNT(DISTINCT person_id) > 20"
)


def _upload_dir(s3, local: Path, key_prefix: str) -> int:
    n = 0
    for f in sorted(local.rglob("*")):
        if f.is_file():
            key = f"{key_prefix}/{f.relative_to(local).as_posix()}"
            s3.upload_file(str(f), BUCKET, key)
            n += 1
    return n


@pytest.fixture(scope="module")
def s3_dataset(gen_dataset, s3_client, moto_server, work_root) -> Path:
    """A copy of the generated dataset with some tables, and half the shards of one, on S3."""
    s3 = s3_client
    existing = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET)
    for table, path in S3_TABLES.items():
        assert _upload_dir(s3, gen_dataset / table, f"{PREFIX}/{path}") > 0, table
    for k in S3_SHARDS:
        assert _upload_dir(s3, gen_dataset / SPLIT_TABLE / f"shard={k}", f"{PREFIX}/split/{SPLIT_TABLE}/shard={k}") > 0

    out = work_root / "s3-dataset"
    shutil.copytree(gen_dataset, out)
    # The server must read these from S3: remove the local copies.
    for table in S3_TABLES:
        shutil.rmtree(out / table)
    for k in S3_SHARDS:
        shutil.rmtree(out / SPLIT_TABLE / f"shard={k}")

    cat = tomllib.loads((gen_dataset / "catalog.toml").read_text())
    stores = cat.setdefault("stores", {})
    stores[STORE] = {
        "url": f"s3://{BUCKET}/{PREFIX}",
        "endpoint": moto_server,
        "region": "us-east-1",
        "allow_http": True,
    }
    tables = cat["tables"]
    for table, path in S3_TABLES.items():
        tables[table]["store"] = STORE
        tables[table]["path"] = path
    tables[SPLIT_TABLE]["shard_locations"] = {
        str(k): f"{STORE}:split/{SPLIT_TABLE}/shard={k}" for k in S3_SHARDS
    }
    (out / "catalog.toml").write_text(tomli_w.dumps(cat))
    return out


@pytest.fixture(scope="module")
def s3_server(s3_dataset, work_root, s3_env):
    srv = StrataServer(
        s3_dataset,
        extra_args=["--cache-dir", work_root / "s3-cache-shared"],
        env=s3_env,
        log_dir=work_root / "logs-s3-server",
    )
    srv.start()
    yield srv
    srv.stop()
    assert "panicked" not in srv.all_stderr(), srv.all_stderr()[-4000:]


def _person_in_shard(gen_dataset, table, k) -> int:
    f = sorted((gen_dataset / table / f"shard={k}").glob("*.parquet"))[0]
    return min(pq.read_table(f, columns=["person_id"]).column("person_id").to_pylist())


S3_QUERY_NAMES = [
    "t2d_prevalence_by_sex_age",
    "metformin_within_365_days_of_t2d",
    "latest_hba1c_per_person",
    "fitbit_steps_by_cohort",
    "brca1_carriers",
    "conditions_with_names",
]


@pytest.mark.parametrize("name", S3_QUERY_NAMES)
def test_s3_query_matches_local(s3_server, gen_duck, name):
    check(s3_server, gen_duck, GEN_QUERIES[name])


@pytest.mark.parametrize("table", list(S3_TABLES) + [SPLIT_TABLE])
def test_s3_table_counts(s3_server, gen_duck, table):
    check(s3_server, gen_duck, f"SELECT COUNT(*) AS n FROM {table}")


def test_split_table_rows_equal(s3_server, gen_duck):
    sql = f"SELECT condition_occurrence_id, person_id, condition_concept_id, condition_start_date FROM {SPLIT_TABLE}"
    check(s3_server, gen_duck, sql, sort_by=["condition_occurrence_id"])


def test_split_table_point_lookups(s3_server, gen_duck, gen_dataset):
    for k in range(GEN_SHARDS):
        pid = _person_in_shard(gen_dataset, SPLIT_TABLE, k)
        sql = f"SELECT * FROM {SPLIT_TABLE} WHERE person_id = {pid}"
        got, rec = s3_server.query_with_record(sql)
        assert_tables_equal(got, duck_query(gen_duck, sql), sort_by=True)
        assert rec["shards_scanned"] == 1, rec
        if k in S3_SHARDS:
            assert rec["object_store_gets"] > 0 or rec["cache_memory_hits"] + rec["cache_disk_hits"] > 0, (
                f"shard {k} lives on S3 but the log shows no store reads or cache hits: {rec}"
            )
        else:
            assert rec["object_store_gets"] == 0, f"shard {k} is local but the query read S3: {rec}"


def test_memory_cache_serves_repeated_query(s3_dataset, gen_duck, work_root, s3_env):
    cache = work_root / "s3-cache-mem"
    metrics_port = free_port()
    config = work_root / "s3-cache-mem.toml"
    config.write_text(f'[telemetry]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n')
    series = [
        ("strata_cache_hits_total", "memory", "cache_memory_hits"),
        ("strata_cache_misses_total", "memory", "cache_memory_misses"),
        ("strata_cache_hits_total", "disk", "cache_disk_hits"),
        ("strata_object_store_gets_total", None, "object_store_gets"),
    ]

    def counters():
        metrics = scrape_metrics(metrics_port)
        return [metric_total(metrics, name, **({"tier": tier} if tier else {})) for name, tier, _ in series]

    with StrataServer(s3_dataset, extra_args=["--cache-dir", cache, "--config", config], env=s3_env,
                      log_dir=work_root / "logs-s3-mem") as srv:
        time.sleep(1.5)  # the counters are sampled each second: past the start's own reads
        before = counters()
        t1, first = srv.query_with_record(CACHE_QUERY)
        t2, second = srv.query_with_record(CACHE_QUERY)
        # Prometheus sees what the two queries' log lines report.
        want = [first[key] + second[key] for _, _, key in series]
        deadline = time.monotonic() + 10
        while True:
            got = [after - b for after, b in zip(counters(), before)]
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got == want, series
    assert_tables_equal(t1, duck_query(gen_duck, CACHE_QUERY), sort_by=True)
    assert_tables_equal(t2, t1, sort_by=True)
    assert first["object_store_gets"] > 0, f"first run read nothing from the store: {first}"
    assert second["object_store_gets"] < first["object_store_gets"], (
        f"second run did not read less from the store: first {first}, second {second}"
    )
    assert second["cache_memory_hits"] > 0, f"no memory-cache hits on the second run: {second}"


def test_disk_cache_survives_restart(s3_dataset, gen_duck, work_root, s3_env):
    cache = work_root / "s3-cache-disk"
    srv = StrataServer(s3_dataset, extra_args=["--cache-dir", cache], env=s3_env,
                       log_dir=work_root / "logs-s3-disk")
    with srv:
        _, first = srv.query_with_record(CACHE_QUERY)
        time.sleep(1.0)  # let background cache writes land
    assert first["object_store_gets"] > 0, first
    assert cache.is_dir() and any(p.is_file() for p in cache.rglob("*")), "nothing written to --cache-dir"
    with srv:  # a new process over the same cache folder
        t, again = srv.query_with_record(CACHE_QUERY)
    assert_tables_equal(t, duck_query(gen_duck, CACHE_QUERY), sort_by=True)
    assert again["cache_disk_hits"] > 0, f"restarted server had no disk-cache hits: {again}"
    assert again["object_store_gets"] < first["object_store_gets"], (first, again)


def test_cache_limits_accepted(s3_dataset, gen_duck, work_root, s3_env):
    args = ["--cache-dir", work_root / "s3-cache-small", "--cache-memory-mb", "1", "--cache-disk-mb", "2"]
    with StrataServer(s3_dataset, extra_args=args, env=s3_env, log_dir=work_root / "logs-s3-small") as srv:
        check(srv, gen_duck, CACHE_QUERY)
        check(srv, gen_duck, GEN_QUERIES["latest_hba1c_per_person"])
    cache_bytes = sum(p.stat().st_size for p in (work_root / "s3-cache-small").rglob("*") if p.is_file())
    assert cache_bytes <= 2 * 1024 * 1024 * 1.1, f"disk cache holds {cache_bytes} bytes, limit 2 MB"


def test_missing_bucket_is_a_clean_error(s3_dataset, work_root, s3_env, tmp_work):
    ds = tmp_work / "ds"
    shutil.copytree(s3_dataset, ds)
    cat = tomllib.loads((ds / "catalog.toml").read_text())
    cat["stores"][STORE]["url"] = "s3://no-such-bucket/ds"
    (ds / "catalog.toml").write_text(tomli_w.dumps(cat))
    srv = StrataServer(ds, env=s3_env, log_dir=tmp_work / "logs")
    started = False
    try:
        srv.start()
        started = True
    except AssertionError as e:
        # Refusing to start is fine if it is a one-line error without a panic.
        assert "panicked" not in str(e), str(e)
        proc = subprocess.CompletedProcess(srv.command(), srv.returncode, "", srv.all_stderr())
        one_line_error(proc, allow_logs=True)
    if started:
        try:
            import adbc_driver_manager

            with pytest.raises(adbc_driver_manager.Error) as info:
                srv.query("SELECT COUNT(*) AS n FROM measurement")
            assert "\n" not in str(info.value).strip(), str(info.value)
            assert srv.alive()
            # Local tables still work.
            assert srv.query("SELECT COUNT(*) AS n FROM person").num_rows == 1
        finally:
            srv.stop()
    assert "panicked" not in srv.all_stderr()
