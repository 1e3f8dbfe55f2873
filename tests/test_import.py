"""`strata import omop` and `strata import vcf` against real third-party data.

- GiBleed (OMOP CDM 5.3 Parquet written by DuckDB) is imported with 4 shards and compared with its
  source through DuckDB: every table's row count, column names and types, and per-column
  checksums (non-null count and sum of hash) are equal; the layout is the contract's.
- The 1000 Genomes chr22 slice is imported into that dataset and checked against an independent
  parse of the VCF text here (gzip + split): one variant row per ALT allele, AC/AN/AF as the calls
  give them, genotype rows only for non-reference calls.
- Bad input of each kind gives one `error: …` line, a non-zero exit, and no dataset left behind.
"""

from __future__ import annotations

import gzip
import re
import shutil
import tomllib
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from helpers import one_line_error, run_strata, shard_of, shared_data_dir

SHARDS = 4
GIBLEED = shared_data_dir() / "gibleed"
VCF = shared_data_dir() / "vcf" / "chr22_1kg_slice.vcf.gz"
VOCABULARY = [
    "concept",
    "concept_ancestor",
    "concept_relationship",
    "concept_synonym",
    "concept_class",
    "vocabulary",
    "domain",
    "relationship",
    "source_to_concept_map",
]
# GiBleed's participant tables (OMOP CDM: those with a person_id column).
PERSON_KEYED = [
    "person",
    "observation_period",
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "device_exposure",
    "measurement",
    "observation",
    "death",
    "note",
    "specimen",
    "payer_plan_period",
    "drug_era",
    "dose_era",
    "condition_era",
]


def sql_str(p: Path | str) -> str:
    return "'" + str(p).replace("'", "''") + "'"


def source_rel(table: str) -> str:
    return f"read_parquet({sql_str(GIBLEED / f'{table}.parquet')})"


def dataset_rel(ds: Path, table: str) -> str:
    return f"read_parquet({sql_str(ds / table / '**' / '*.parquet')}, hive_partitioning=false)"


def profile(con, rel: str) -> tuple[list[tuple[str, str]], list]:
    """(column names and types, [row count, then per column: non-null count, sum of hash])."""
    cols = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
    exprs = ["count(*)"]
    for name, _ in cols:
        q = '"' + name.replace('"', '""') + '"'
        exprs += [f"count({q})", f"coalesce(sum(hash({q})), 0)"]
    return cols, list(con.execute(f"SELECT {', '.join(exprs)} FROM {rel}").fetchone())


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes (to prove a dataset untouched)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def no_traceback(proc):
    assert "Traceback" not in proc.stderr and "RUST_BACKTRACE" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def gibleed_tables() -> list[str]:
    assert (GIBLEED / "person.parquet").is_file(), f"GiBleed data not found at {GIBLEED}"
    return sorted(p.stem for p in GIBLEED.glob("*.parquet"))


@pytest.fixture(scope="module")
def omop_ds(work_root, gibleed_tables) -> Path:
    out = work_root / "import-gibleed"
    run_strata("import", "omop", "--from", GIBLEED, "--out", out, "--shards", SHARDS)
    return out


@pytest.fixture(scope="module")
def duck():
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    yield con
    con.close()


# --------------------------------------------------------------------------------------------------
# import omop
# --------------------------------------------------------------------------------------------------


def test_gibleed_tables_equal_their_source(omop_ds, gibleed_tables, duck):
    catalog = tomllib.loads((omop_ds / "catalog.toml").read_text())
    assert sorted(catalog["tables"]) == gibleed_tables
    for table in gibleed_tables:
        src_cols, src = profile(duck, source_rel(table))
        dst_cols, dst = profile(duck, dataset_rel(omop_ds, table))
        assert dst_cols == src_cols, f"{table}: columns or types differ"
        assert dst[0] == src[0], f"{table}: {dst[0]} rows imported, source has {src[0]}"
        for i, (name, _) in enumerate(src_cols):
            assert dst[1 + 2 * i] == src[1 + 2 * i], f"{table}.{name}: non-null counts differ"
            assert dst[2 + 2 * i] == src[2 + 2 * i], f"{table}.{name}: checksums differ"
        assert catalog["tables"][table]["rows"] == src[0], f"{table}: catalog row count"
    # The README's facts about GiBleed, as imported.
    counts = {t: duck.execute(f"SELECT count(*) FROM {dataset_rel(omop_ds, t)}").fetchone()[0]
              for t in ["person", "condition_occurrence", "drug_exposure", "measurement",
                        "procedure_occurrence", "concept", "concept_ancestor", "death"]}
    assert counts == {
        "person": 2694,
        "condition_occurrence": 65332,
        "drug_exposure": 67707,
        "measurement": 44053,
        "procedure_occurrence": 37409,
        "concept": 444,
        "concept_ancestor": 65690,
        "death": 0,
    }


def test_gibleed_layout(omop_ds, gibleed_tables):
    assert (omop_ds / "catalog.toml").is_file()
    catalog = tomllib.loads((omop_ds / "catalog.toml").read_text())
    tables = catalog["tables"]
    for table in PERSON_KEYED:
        assert table in gibleed_tables
        entry = tables[table]
        assert entry["partitioning"] == {"kind": "person", "shards": SHARDS}, table
        assert entry["person_key"] == "person_id"
        assert entry["tier"] == "registered", table
        shard_dirs = sorted(p.name for p in (omop_ds / table).iterdir())
        assert shard_dirs == [f"shard={k}" for k in range(SHARDS)], f"{table}: {shard_dirs}"
        for k in range(SHARDS):
            part = omop_ds / table / f"shard={k}" / "part-0.parquet"
            assert part.is_file(), part
            ids = pq.read_table(part, columns=["person_id"]).column("person_id").to_pylist()
            assert None not in ids, f"{part}: null person_id"
            assert ids == sorted(ids), f"{part}: not sorted by person_id"
            wrong = {p for p in ids if shard_of(p, SHARDS) != k}
            assert not wrong, f"{part}: persons {sorted(wrong)[:5]} belong to other shards"
    for table in VOCABULARY:
        assert tables[table]["partitioning"] == {"kind": "single"}, table
        assert tables[table]["tier"] == "public", table
        assert (omop_ds / table / "part-0.parquet").is_file(), table
        assert not list((omop_ds / table).glob("shard=*")), f"{table} should not be sharded"
    # Tables without participants are kept unsharded; nothing is public that is not vocabulary.
    for table in ["location", "care_site", "provider", "cdm_source", "cost", "fact_relationship"]:
        assert tables[table]["partitioning"] == {"kind": "single"}, table
        assert tables[table]["tier"] != "public", table
    assert tables["person"].get("column_tiers", {}).get("birth_datetime") == "controlled"
    assert not [p for p in omop_ds.parent.iterdir() if p.name.startswith(f".{omop_ds.name}.tmp")]


# --------------------------------------------------------------------------------------------------
# import vcf
# --------------------------------------------------------------------------------------------------


def parse_vcf(path: Path):
    """An independent reading of the VCF text: samples, expected variant rows by vid,
    expected genotype gt by (sample index, vid), and the multi-allelic sites."""
    samples: list[str] = []
    variants: dict[str, dict] = {}
    genotypes: dict[tuple[int, str], str] = {}
    multi: list[tuple[str, int, int]] = []
    alt_count = 0
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith("##"):
                continue
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#CHROM"):
                samples = fields[9:]
                continue
            chrom, pos, ids, ref, alt = fields[0], int(fields[1]), fields[2], fields[3], fields[4]
            alts = [] if alt == "." else alt.split(",")
            fmt = fields[8].split(":") if len(fields) > 8 else []
            gi = fmt.index("GT") if "GT" in fmt else None
            calls = []
            for s in fields[9:]:
                parts = s.split(":")
                gt = parts[gi] if gi is not None and gi < len(parts) else "."
                calls.append([None if a == "." else int(a) for a in re.split(r"[/|]", gt)])
            an = sum(1 for c in calls for a in c if a is not None)
            real = [(i, a) for i, a in enumerate(alts, start=1) if a not in ("<NON_REF>", "<*>")]
            if len(real) > 1:
                multi.append((chrom, pos, len(real)))
            rsid = next((x for x in ids.split(";") if x.startswith("rs")), None)
            for i, a in real:
                alt_count += 1
                vid = f"{chrom.removeprefix('chr')}-{pos}-{ref}-{a}"
                ac = sum(c.count(i) for c in calls)
                assert vid not in variants, f"duplicate vid {vid} in the test data"
                variants[vid] = dict(
                    contig=chrom, position=pos, ref=ref, alt=a, ac=ac, an=an,
                    af=(ac / an if an else None), rsid=rsid,
                )
                for si, c in enumerate(calls):
                    if i in c:
                        marks = sorted("." if x is None else ("1" if x == i else "0") for x in c)
                        genotypes[(si, vid)] = "/".join(marks)
    return samples, variants, genotypes, multi, alt_count


@pytest.fixture(scope="module")
def vcf_truth():
    assert VCF.is_file(), f"VCF not found at {VCF}"
    return parse_vcf(VCF)


@pytest.fixture(scope="module")
def vcf_ds(omop_ds, vcf_truth) -> Path:
    run_strata("import", "vcf", "--from", VCF, "--out", omop_ds)
    return omop_ds


def test_vcf_variants_match_the_calls(vcf_ds, vcf_truth, duck):
    samples, variants, _, multi, alt_count = vcf_truth
    assert len(samples) == 100 and alt_count >= 100 and multi, "unexpected test data"
    rows = duck.execute(
        "SELECT vid, contig, position, ref_allele, alt_allele, gene_symbol, consequence, dbsnp_rsid, "
        f"clinvar_classification, gvs_all_ac, gvs_all_an, gvs_all_af FROM {dataset_rel(vcf_ds, 'variant')}"
    ).fetchall()
    assert len(rows) == alt_count, "one variant row per ALT allele"
    got = {r[0]: r for r in rows}
    assert set(got) == set(variants)
    for vid, want in variants.items():
        (_, contig, position, ref, alt, gene, csq, rsid, clinvar, ac, an, af) = got[vid]
        assert (contig, position, ref, alt) == (want["contig"], want["position"], want["ref"], want["alt"]), vid
        assert (ac, an) == (want["ac"], want["an"]), f"{vid}: AC/AN {ac}/{an}, calls give {want['ac']}/{want['an']}"
        if want["af"] is None:
            assert af is None, vid
        else:
            assert af == pytest.approx(want["af"], rel=1e-12), vid
        assert rsid == want["rsid"] and clinvar is None and gene is None and csq is None, vid
    # Multi-allelic sites are split into one row per ALT allele.
    for contig, pos, n in multi:
        alts = duck.execute(
            f"SELECT list(alt_allele ORDER BY alt_allele) FROM {dataset_rel(vcf_ds, 'variant')} "
            "WHERE contig = ? AND position = ?",
            [contig, pos],
        ).fetchone()[0]
        assert len(alts) == n and len(set(alts)) == n, f"{contig}:{pos} {alts}"
    assert got["22-10510077-C-A"][1] == "chr22"


def test_vcf_genotypes_are_non_reference_calls(vcf_ds, vcf_truth, duck):
    samples, _, genotypes, _, _ = vcf_truth
    rows = duck.execute(
        f"SELECT person_id, vid, contig, position, gt FROM {dataset_rel(vcf_ds, 'genotype')}"
    ).fetchall()
    assert rows, "the slice has non-reference calls"
    got = {(pid, vid): gt for pid, vid, _, _, gt in rows}
    assert len(got) == len(rows), "one genotype row per person and variant"
    for (_, _, contig, position, gt) in rows:
        assert "1" in gt, f"reference or missing call stored: {gt!r}"
        assert contig == "chr22" and position > 0
    # person_id = position of the sample in the header (first sample = 1).
    want = {(si + 1, vid): gt for (si, vid), gt in genotypes.items()}
    assert got == want
    assert set(got.values()) <= {"0/1", "1/1"}


def test_vcf_layout_and_catalog(vcf_ds):
    catalog = tomllib.loads((vcf_ds / "catalog.toml").read_text())
    for table in ["variant", "genotype"]:
        entry = catalog["tables"][table]
        assert entry["tier"] == "controlled"
        assert entry["partitioning"] == {"kind": "contig", "contigs": ["chr22"]}
        part = vcf_ds / table / "contig=chr22" / "part-0.parquet"
        positions = pq.read_table(part, columns=["position"]).column("position").to_pylist()
        assert positions == sorted(positions), f"{table}: not sorted by position"
        assert entry["rows"] == len(positions)
    assert "person" in catalog["tables"], "the OMOP tables stay"
    assert not [p for p in vcf_ds.iterdir() if p.name.startswith(".")], "staging left behind"


def test_vcf_sample_map(omop_ds, vcf_ds, vcf_truth, tmp_work, duck):
    samples, _, genotypes, _, _ = vcf_truth
    ds = shutil.copytree(omop_ds, tmp_work / "ds")
    mapping = tmp_work / "samples.csv"
    mapping.write_text("sample,person_id\n" + "".join(f"{s},{5000 + i}\n" for i, s in enumerate(samples)))
    run_strata("import", "vcf", "--from", VCF, "--out", ds, "--samples", mapping)
    got = duck.execute(f"SELECT person_id, vid FROM {dataset_rel(ds, 'genotype')}").fetchall()
    assert sorted(got) == sorted((5000 + si, vid) for (si, vid) in genotypes)

    # A sample without a person_id: an error naming it, the dataset untouched.
    before = tree(ds)
    mapping.write_text("sample,person_id\n" + "".join(f"{s},{i + 1}\n" for i, s in enumerate(samples[1:])))
    proc = run_strata("import", "vcf", "--from", VCF, "--out", ds, "--samples", mapping, check=False)
    one_line_error(proc, samples[0])
    no_traceback(proc)
    assert tree(ds) == before


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def omop_error(src: Path, out: Path, *mention: str) -> str:
    proc = run_strata("import", "omop", "--from", src, "--out", out, "--shards", SHARDS, check=False)
    line = one_line_error(proc, *mention)
    no_traceback(proc)
    assert not out.exists(), f"{out} left behind after: {line}"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "staging left"
    return line


def test_missing_and_empty_from_folder(tmp_work):
    omop_error(tmp_work / "no-such-export", tmp_work / "out", "no-such-export")
    empty = tmp_work / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no tables here")
    omop_error(empty, tmp_work / "out", "no table files")


def test_csv_with_a_wrong_header(tmp_work):
    src = tmp_work / "csv"
    src.mkdir()
    (src / "concept.csv").write_text("concept_id,concept_name,concept_code\n1,a,0123\n")
    (src / "person.csv").write_text("gender_concept_id,year_of_birth\n8507,1950\n")
    omop_error(src, tmp_work / "out", "person.csv", "person_id")
    (src / "person.csv").write_text("person_id,year_of_birth,PERSON_ID\n1,1950,1\n")
    omop_error(src, tmp_work / "out", "person.csv", "duplicate")


def test_csv_export_is_typed_by_the_cdm(tmp_work, duck):
    src = tmp_work / "csv"
    src.mkdir()
    (src / "PERSON.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,birth_datetime,person_source_value\n"
        "2,8532,1980,1980-05-01 10:00:00,007\n1,8507,1950,,x\n"
    )
    (src / "concept.csv").write_text(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
        "concept_code,valid_start_date,valid_end_date,invalid_reason\n"
        "192671,GI bleed,Condition,SNOMED,Clinical Finding,S,0123,1970-01-01,2099-12-31,\n"
    )
    out = tmp_work / "out"
    run_strata("import", "omop", "--from", src, "--out", out, "--shards", 2)
    described = duck.execute(f"DESCRIBE SELECT * FROM {dataset_rel(out, 'person')}").fetchall()
    types = {r[0]: r[1] for r in described}
    assert types == {
        "person_id": "BIGINT",
        "gender_concept_id": "INTEGER",
        "year_of_birth": "INTEGER",
        "birth_datetime": "TIMESTAMP",
        "person_source_value": "VARCHAR",
    }
    code, start = duck.execute(
        f"SELECT concept_code, valid_start_date FROM {dataset_rel(out, 'concept')}"
    ).fetchone()
    assert code == "0123" and str(start) == "1970-01-01"


def test_corrupt_parquet(tmp_work):
    src = shutil.copytree(GIBLEED, tmp_work / "gibleed", copy_function=shutil.copyfile)
    victim = src / "person.parquet"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    omop_error(src, tmp_work / "out", "person.parquet")


def vcf_error(vcf: Path, out: Path, *mention: str) -> str:
    proc = run_strata("import", "vcf", "--from", vcf, "--out", out, check=False)
    line = one_line_error(proc, *mention)
    no_traceback(proc)
    return line


def test_vcf_bad_input(tmp_work, omop_ds):
    plain = tmp_work / "plain.vcf.gz"
    with gzip.open(VCF, "rb") as f:
        text = f.read()
    plain.write_bytes(text)
    # Into a path that is not a dataset: nothing is created.
    vcf_error(plain, tmp_work / "nowhere", "bgzip")
    assert not (tmp_work / "nowhere").exists()
    vcf_error(VCF, tmp_work / "nowhere", "nowhere")
    assert not (tmp_work / "nowhere").exists()
    # Into a real dataset: it stays as it was.
    ds = shutil.copytree(omop_ds, tmp_work / "ds")
    before = tree(ds)
    vcf_error(plain, ds, "plain.vcf.gz", "bgzip")
    plain_gzip = tmp_work / "gzip.vcf.gz"
    plain_gzip.write_bytes(gzip.compress(text))
    vcf_error(plain_gzip, ds, "gzip.vcf.gz", "bgzip")
    vcf_error(tmp_work / "missing.vcf.gz", ds, "missing.vcf.gz")
    assert tree(ds) == before
