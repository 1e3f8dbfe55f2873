"""Faults (issue 15, item 5): a missing shard, a corrupt Parquet file, the S3 server stopped
mid-query, SIGKILL during a burst of queries, a full disk under the audit log. Each gives a clean
error or a whole answer, never a partial count; nothing acknowledged is lost; a restarted server
serves again with its release ledger intact. (A client gone mid-stream: tests/test_limits.py,
`test_a_client_that_goes_away_cancels_its_query`.)"""

import json
import os
import random
import shutil
import signal
import struct
import threading
import time
from pathlib import Path

import psycopg
import pytest
import tomli_w
import tomllib

from conftest import GEN_SHARDS
from helpers import (
    Caller,
    StrataServer,
    passport_server,
    run_strata,
    shard_of,
    start_moto,
    status_text,
    stop_process,
)

SUM = "SELECT SUM(value_as_number) AS s, COUNT(value_as_number) AS n FROM measurement"


def linked_copy(src: Path, dst: Path) -> Path:
    """A copy of a dataset whose Parquet files are hard links (cheap); files a test damages are
    first replaced by a real copy."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def own_copy(path: Path) -> Path:
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)
    return path


def shard_file(dataset: Path, table: str, shard: int) -> Path:
    files = sorted((dataset / table / f"shard={shard}").glob("*.parquet"))
    assert files, (table, shard)
    return files[0]


def scramble_data_pages(path: Path, seed: int = 7):
    """Overwrites everything between the magic and the footer: every column chunk is garbage, the
    footer (schema, row counts, statistics) intact."""
    data = bytearray(own_copy(path).read_bytes())
    footer = struct.unpack("<I", data[-8:-4])[0]
    rng = random.Random(seed)
    for i in range(4, len(data) - 8 - footer):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))


def code(message: str) -> str:
    """The gRPC status code ADBC puts in its message: `(DataLoss; DoGet: …)`."""
    import re

    found = re.search(r"\((\w+); ", message)
    return found.group(1) if found else ""


def refused(fn) -> str:
    with pytest.raises(Exception) as err:
        fn()
    return str(err.value)


def one_line(message: str) -> str:
    return message.strip().splitlines()[0]


# ------------------------------------------------------------------------------------------------
# Missing and corrupt files
# ------------------------------------------------------------------------------------------------


def test_a_dataset_with_a_missing_shard_does_not_start(gen_dataset, tmp_path):
    dataset = linked_copy(gen_dataset, tmp_path / "ds")
    for f in (dataset / "measurement" / "shard=1").glob("*.parquet"):
        f.unlink()
    proc = run_strata("serve", "--dataset", dataset, "--listen", "127.0.0.1:0", check=False, timeout=60)
    assert proc.returncode != 0
    assert "table measurement: shard 1 has no files" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "damage",
    [
        # The last bytes of the footer's metadata overwritten: it no longer decodes.
        lambda data: data.__setitem__(slice(-12, -8), b"\xff\xff\xff\x7f"),
        # The footer's length pointing before the file's start: parquet 59.3.2 subtracts with
        # overflow on it (push_decoder.rs:391), so the dataset checks it first.
        lambda data: data.__setitem__(slice(-8, -4), struct.pack("<I", len(data))),
        # No trailing magic.
        lambda data: data.__setitem__(slice(-4, None), b"PAR2"),
    ],
    ids=["metadata", "footer-length", "magic"],
)
@pytest.mark.parametrize("shard", [0, 2], ids=["first-file", "later-file"])
def test_a_dataset_with_a_corrupt_file_does_not_start_and_names_it(gen_dataset, tmp_path, damage, shard):
    """The table's first file is read for its schema, the others for their statistics: both
    check the footer first."""
    dataset = linked_copy(gen_dataset, tmp_path / "ds")
    broken = shard_file(dataset, "measurement", shard)
    data = bytearray(own_copy(broken).read_bytes())
    damage(data)
    broken.write_bytes(bytes(data))
    proc = run_strata("serve", "--dataset", dataset, "--listen", "127.0.0.1:0", check=False, timeout=60)
    assert proc.returncode != 0
    assert "measurement" in proc.stderr and f"shard={shard}" in proc.stderr, proc.stderr
    assert "panicked" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def test_files_lost_or_damaged_while_serving_give_clean_errors(gen_dataset, gen_duck, tmp_path, mint_token,
                                                               passport_keys, work_root):  # fmt: skip
    """A file deleted under a running server, and one whose data pages are overwritten (its footer
    intact, as read at start): a query that needs them fails with a clear one-line error (gRPC
    DATA_LOSS, SQLSTATE XX001); one that does not, answers exactly; nothing partial comes out."""
    dataset = linked_copy(gen_dataset, tmp_path / "ds")
    token = mint_token("controlled", "faults-ready", "--ttl", "1d")
    srv = passport_server(dataset, passport_keys, work_root, "faults-files", token)
    alice = Caller(srv, mint_token, "faults-files")
    with srv:
        whole = alice.rows(SUM)[0]
        expected = gen_duck.execute("SELECT SUM(value_as_number), COUNT(value_as_number) FROM measurement").fetchone()
        assert (whole["s"], whole["n"]) == pytest.approx(expected)
        # Data pages overwritten: decoding fails.
        scramble_data_pages(shard_file(dataset, "measurement", 2))
        message = refused(lambda: alice.rows(SUM + " WHERE value_as_number > -1"))
        assert code(message) == "DataLoss", message
        assert "stored data could not be read: a data file does not decode" in message, message
        # A file gone: the same; the server's log names the file (the client gets no paths).
        gone = shard_file(dataset, "drug_exposure", 1)
        gone.unlink()
        message = refused(lambda: alice.rows("SELECT SUM(days_supply) AS d FROM drug_exposure"))
        assert code(message) == "DataLoss", message
        assert "a data file is missing" in message and "shard=1" not in message, message
        assert f"drug_exposure/shard=1/{gone.name}" in srv.all_stderr()
        # What does not need them still answers, exactly.
        person = alice.value("SELECT COUNT(*) AS n FROM person")
        assert person == gen_duck.execute("SELECT COUNT(*) FROM person").fetchone()[0]
        # A participant of another shard: shard pruning reads only theirs.
        candidates = [r[0] for r in gen_duck.execute("SELECT DISTINCT person_id FROM measurement ORDER BY 1 LIMIT 50").fetchall()]
        other = next(p for p in candidates if shard_of(p, GEN_SHARDS) != 2)
        intact = f"SELECT value_as_number FROM measurement WHERE person_id = {other} ORDER BY 1"
        assert [r["value_as_number"] for r in alice.rows(intact)] == [
            r[0] for r in gen_duck.execute(intact).fetchall()
        ]
        # The PostgreSQL door says the same in its own words.
        with psycopg.connect(host="127.0.0.1", port=srv.pg_port, user="faults-files", password=alice.token,
                             dbname="strata") as conn:  # fmt: skip
            with pytest.raises(psycopg.Error) as err:
                conn.execute(SUM + " WHERE value_as_number > -2").fetchall()
            assert err.value.sqlstate == "XX001", err.value
    # The audit end records say error, with the reason.
    records = [json.loads(line) for line in srv.audit_path.read_text().splitlines()]
    failed = [r for r in records if r["phase"] == "end" and r["outcome"] == "error"]
    assert len(failed) >= 3 and all("stored data could not be read" in r["error"] for r in failed), failed


# ------------------------------------------------------------------------------------------------
# The object store going away
# ------------------------------------------------------------------------------------------------


def test_the_s3_server_stopped_mid_query_gives_an_error_not_a_shorter_answer(
    gen_dataset, gen_duck, tmp_path, s3_env
):
    """measurement on its own moto server; a client reads the first batch of the whole table, the
    store is killed, the client reads on: the stream ends with an error (UNAVAILABLE), never early
    with fewer rows. A new query that needs the store fails the same way, within the store's retry
    time, and the server serves local tables meanwhile."""
    import boto3

    proc, endpoint = start_moto(tmp_path / "moto.log")
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=s3_env["AWS_REGION"])
        s3.create_bucket(Bucket="faults")
        dataset = linked_copy(gen_dataset, tmp_path / "ds")
        for f in sorted((gen_dataset / "measurement").rglob("*.parquet")):
            s3.upload_file(str(f), "faults", f"m/{f.relative_to(gen_dataset).as_posix()}")
        shutil.rmtree(dataset / "measurement")
        catalog = tomllib.loads((dataset / "catalog.toml").read_text())
        catalog.setdefault("stores", {})["s3"] = {
            "url": "s3://faults/m",
            "endpoint": endpoint,
            "region": "us-east-1",
            "allow_http": True,
            "retry_timeout_secs": 2,
        }
        catalog["tables"]["measurement"]["store"] = "s3"
        catalog["tables"]["measurement"]["path"] = "measurement"
        (dataset / "catalog.toml").unlink()
        (dataset / "catalog.toml").write_text(tomli_w.dumps(catalog))
        expected = gen_duck.execute("SELECT COUNT(*) FROM measurement").fetchone()[0]
        # No memory cache: every read after the store stops must reach it.
        with StrataServer(dataset, extra_args=["--cache-memory-mb", "0"], env=s3_env,
                          log_dir=tmp_path / "logs") as srv:  # fmt: skip
            conn = srv.connect()
            cur = conn.cursor()
            cur.execute("SELECT measurement_id, person_id FROM measurement")
            reader = cur.fetch_record_batch()
            rows = reader.read_next_batch().num_rows
            stop_process(proc)
            try:
                for batch in reader:
                    rows += batch.num_rows
                ended = None
            except Exception as e:  # noqa: BLE001
                ended = str(e)
            # Either every row arrived (all of it was read before the store went) or an error:
            # never fewer rows without one.
            assert ended is not None or rows == expected, (rows, expected)
            started = time.monotonic()
            message = refused(lambda: srv.query(SUM))
            assert code(message) == "Unavailable", message
            assert "stored data could not be read: the data store did not answer" in message, message
            assert time.monotonic() - started < 60
            assert srv.query("SELECT COUNT(*) AS n FROM person").column("n")[0].as_py() > 0
            if ended is not None:
                assert code(ended) == "Unavailable", ended
            for handle in (reader, cur, conn):
                try:
                    handle.close()
                except Exception:  # noqa: BLE001
                    pass
    finally:
        stop_process(proc)


# ------------------------------------------------------------------------------------------------
# SIGKILL during a burst
# ------------------------------------------------------------------------------------------------


def test_sigkill_during_a_burst_loses_nothing_acknowledged(gen_dataset, gen_duck, start_passport_server, mint_token):
    """Eight clients query in a loop: five read rows, three aggregates-only principals release
    counts; the server is killed with SIGKILL. Every query a client got an answer for has its
    start record on disk, the log parses line by line, and the restarted server serves again
    with every release answered before the kill in its ledger: a count differing from one by a
    single participant is withheld for its principal, not for a principal without that history."""
    srv = start_passport_server(gen_dataset, "faults-kill")
    answered: list[str] = []
    answers = [0] * 8
    released: dict[int, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    readers, releasers = range(5), range(5, 8)
    # Each releaser's count: everyone not born in one year (aggregates-only principals may filter
    # on attributes, not compute with the person key).
    years = [r[0] for r in gen_duck.execute(
        "SELECT year_of_birth FROM person GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT 3").fetchall()]  # fmt: skip
    excluded = dict(zip(releasers, years))
    callers = {k: Caller(srv, mint_token, f"faults-kill-{k}", egress="aggregates" if k in releasers else None)
               for k in range(8)}  # fmt: skip

    def client(k: int):
        me = callers[k]
        i = 0
        while not stop.is_set():
            if k in releasers:
                sql = f"SELECT COUNT(*) AS n FROM person p WHERE year_of_birth <> {excluded[k]}"
            else:
                sql = f"SELECT person_id, {k * 100000 + i} AS tag FROM person ORDER BY person_id LIMIT 5"
            try:
                table = me.table(sql)
                with lock:
                    answered.append(sql)
                    answers[k] += 1
                    if k in releasers and table.column("n")[0].as_py() is not None:
                        released[k] = sql
            except Exception:  # noqa: BLE001 - the kill ends some mid-way
                pass
            i += 1

    workers = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 60
        while len(released) < len(releasers) or min(answers) < 2:
            assert time.monotonic() < deadline, f"the burst did not get going: {answers}, released {released}"
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(timeout=10)
    finally:
        # The clients end before anything closes their connections under them.
        stop.set()
        for w in workers:
            w.join(timeout=120)
    assert not any(w.is_alive() for w in workers)
    srv.proc = None
    records = [json.loads(line) for line in srv.audit_path.read_text().splitlines()]  # every line whole
    started = {r["statement"] for r in records if r["phase"] == "start"}
    lost = [sql for sql in answered if sql not in started]
    assert not lost, f"{len(lost)} answered queries have no start record: {lost[:3]}"
    srv.start()
    for k, sql in released.items():
        # The released count less the five planted participants (those not born that year).
        differs = (
            f"{sql} AND NOT EXISTS (SELECT 1 FROM condition_occurrence c "
            "WHERE c.person_id = p.person_id AND c.condition_concept_id = 441267)"
        )
        assert callers[k].value(differs) is None, f"principal {k}'s release before the kill was forgotten"
        fresh = Caller(srv, mint_token, f"faults-kill-fresh-{k}", egress="aggregates")
        assert fresh.value(differs) is not None, "withheld without any history: the check proves nothing"


# ------------------------------------------------------------------------------------------------
# A full disk under the audit log
# ------------------------------------------------------------------------------------------------


def test_a_full_disk_under_the_audit_log_releases_nothing(gen_dataset, passport_keys, work_root, mint_token):
    """The audit log on /dev/full (every write: no space left): no query runs — its start record
    cannot be made durable — and the refusal says why (UNAVAILABLE; SQLSTATE 58030)."""
    token = mint_token("controlled", "faults-full-ready", "--ttl", "1d")
    srv = passport_server(gen_dataset, passport_keys, work_root, "faults-full", token, '[audit]\npath = "/dev/full"\n')
    srv.ready_refusal = "audit log is unavailable"
    srv.start()
    try:
        full_disk_refuses_everything(srv, mint_token)
    finally:
        srv.stop()


def full_disk_refuses_everything(srv, mint_token):
    alice = Caller(srv, mint_token, "faults-full-alice")
    message = refused(lambda: alice.rows("SELECT person_id FROM person LIMIT 3"))
    assert code(message) == "Unavailable" and "audit log is unavailable" in message, message
    message = refused(lambda: alice.rows("SELECT COUNT(*) AS n FROM person"))
    assert "audit log is unavailable" in message, message
    with psycopg.connect(host="127.0.0.1", port=srv.pg_port, user="faults-full-alice", password=alice.token,
                         dbname="strata") as conn:  # fmt: skip
        with pytest.raises(psycopg.Error) as err:
            conn.execute("SELECT person_id FROM person LIMIT 3").fetchall()
        assert err.value.sqlstate == "58030", err.value
    assert "audit log write failed" in srv.all_stderr()
