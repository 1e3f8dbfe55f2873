"""`strata generate`: determinism, layout, catalog, types, sharding, planted rare groups, bad input."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pyarrow.types as pat
import pytest

from conftest import GEN_PERSONS, GEN_SEED, GEN_SHARDS
from helpers import (
    ALL_TABLES,
    PERSON_KEYED_TABLES,
    VARIANT_TABLES,
    VOCABULARY_TABLES,
    duck_over,
    one_line_error,
    repo_root,
    run_strata,
    shard_of,
)

SMALL = 800
PLANTED_COUNTS = (1, 5, 19, 20, 21, 40)


def file_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def small_pair(work_root):
    """Two datasets from the same seed and one from another seed (800 persons, 3 shards)."""
    base = work_root / "gen-small"
    a, b, c = base / "a" / "ds", base / "b" / "ds", base / "c" / "ds"
    for out, seed in ((a, 11), (b, 11), (c, 12)):
        out.parent.mkdir(parents=True, exist_ok=True)
        run_strata("generate", "--out", out, "--persons", SMALL, "--shards", 3, "--seed", seed)
    return a, b, c


def test_same_seed_gives_byte_identical_files(small_pair):
    a, b, _ = small_pair
    ha, hb = file_hashes(a), file_hashes(b)
    assert ha, f"generate wrote no files in {a}"
    assert sorted(ha) == sorted(hb), f"file sets differ: {sorted(set(ha) ^ set(hb))[:20]}"
    differing = [p for p in ha if ha[p] != hb[p]]
    assert not differing, f"same seed produced different bytes in: {differing[:20]}"


def test_different_seed_gives_different_data(small_pair):
    a, _, c = small_pair
    ha, hc = file_hashes(a), file_hashes(c)
    parquet = [p for p in ha if p.endswith(".parquet") and p in hc]
    assert parquet, "no common parquet files between the two seeds' datasets"
    person_files = [p for p in parquet if p.startswith("person/")]
    assert person_files, "no person files"
    assert any(ha[p] != hc[p] for p in person_files), "seed 11 and seed 12 give identical person files"
    same = [p for p in parquet if ha[p] == hc[p] and p.split("/")[0] in PERSON_KEYED_TABLES]
    # Vocabulary may be identical across seeds, participant data should not be.
    assert len(same) < len([p for p in parquet if p.split("/")[0] in PERSON_KEYED_TABLES]) / 2, (
        f"most participant files are identical across seeds: {same[:10]}"
    )


def test_small_dataset_has_requested_person_count(small_pair):
    a, _, _ = small_pair
    con = duck_over(a, tables=["person"])
    n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT person_id) FROM person").fetchone()
    assert (n, distinct) == (SMALL, SMALL)


# --------------------------------------------------------------------------------------------------
# Layout and catalog
# --------------------------------------------------------------------------------------------------


def test_every_design_table_present(gen_dataset):
    missing = [t for t in ALL_TABLES if not (gen_dataset / t).is_dir()]
    assert not missing, f"tables missing from the generated dataset: {missing}"


@pytest.mark.parametrize("table", PERSON_KEYED_TABLES)
def test_person_keyed_layout(gen_dataset, table):
    tdir = gen_dataset / table
    assert tdir.is_dir(), f"{table}/ missing"
    subdirs = sorted(p.name for p in tdir.iterdir() if p.is_dir())
    expected = [f"shard={k}" for k in range(GEN_SHARDS)]
    assert subdirs == sorted(expected), f"{table}: shard folders {subdirs}, expected {expected}"
    for k in range(GEN_SHARDS):
        part = tdir / f"shard={k}" / "part-0.parquet"
        assert part.is_file(), f"{part} missing"
    stray = [p.name for p in tdir.iterdir() if p.is_file()]
    assert not stray, f"{table}: files outside shard folders: {stray}"


@pytest.mark.parametrize("table", VARIANT_TABLES)
def test_variant_layout(gen_dataset, table):
    tdir = gen_dataset / table
    subdirs = sorted(p.name for p in tdir.iterdir() if p.is_dir())
    assert subdirs, f"{table}: no contig folders"
    bad = [s for s in subdirs if not re.fullmatch(r"contig=chr[0-9XYM]+", s)]
    assert not bad, f"{table}: unexpected folders {bad}"
    assert "contig=chr17" in subdirs, f"{table}: no chr17 (BRCA1 queries need it): {subdirs}"
    for s in subdirs:
        assert (tdir / s / "part-0.parquet").is_file(), f"{table}/{s}/part-0.parquet missing"
        contig = s.split("=", 1)[1]
        t = pq.read_table(tdir / s / "part-0.parquet", columns=["contig"])
        values = set(t.column("contig").to_pylist())
        assert values <= {contig}, f"{table}/{s} holds rows of contigs {values}"


@pytest.mark.parametrize("table", VOCABULARY_TABLES)
def test_vocabulary_layout(gen_dataset, table):
    assert (gen_dataset / table / "part-0.parquet").is_file()


def test_catalog_lists_every_table(gen_dataset):
    text = (gen_dataset / "catalog.toml").read_text()
    cat = tomllib.loads(text)
    assert isinstance(cat.get("tables"), dict), f"catalog.toml has no [tables.*]: {sorted(cat)}"
    # Hidden folders are the server's state (`.strata-server`), not tables.
    on_disk = {p.name for p in gen_dataset.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert set(cat["tables"]) == on_disk, (
        f"catalog tables {sorted(cat['tables'])} differ from table folders {sorted(on_disk)}"
    )
    for t in ALL_TABLES:
        assert isinstance(cat["tables"].get(t), dict), f"[tables.{t}] missing or not a table"
    tiers = {t: cat["tables"][t].get("tier") for t in ALL_TABLES}
    want = {t: ("public" if t in VOCABULARY_TABLES else "controlled" if t in VARIANT_TABLES else "registered")
            for t in ALL_TABLES}
    assert tiers == want, f"table tiers differ from DESIGN.md: {tiers}"
    col_tiers = cat["tables"]["person"].get("column_tiers", {})
    assert col_tiers.get("birth_datetime") == "controlled", f"person.birth_datetime not controlled: {col_tiers}"
    # A dataset must be relocatable (copied, uploaded to object storage): no absolute own path.
    assert str(gen_dataset.resolve()) not in text, "catalog.toml embeds the dataset's absolute path"


def _check_types(schema, where):
    problems = []
    for f in schema:
        n, t = f.name, f.type
        if n == "person_id" and not pat.is_int64(t):
            problems.append(f"{n}: {t} (want int64)")
        elif n.endswith("_concept_id") and not pat.is_int32(t):
            problems.append(f"{n}: {t} (want int32)")
        elif n.endswith("_datetime") and not (pat.is_timestamp(t) and t.unit == "us"):
            problems.append(f"{n}: {t} (want timestamp[us])")
        elif n.endswith("_date") and not pat.is_date32(t):
            problems.append(f"{n}: {t} (want date32)")
    assert not problems, f"{where}: " + "; ".join(problems)


@pytest.mark.parametrize("table", ALL_TABLES)
def test_column_types(gen_dataset, table):
    files = sorted((gen_dataset / table).rglob("*.parquet"))
    assert files, f"{table}: no parquet files"
    schemas = [pq.read_schema(f) for f in files]
    for f, s in zip(files, schemas):
        _check_types(s, str(f.relative_to(gen_dataset)))
    first = schemas[0].remove_metadata()
    for f, s in zip(files[1:], schemas[1:]):
        assert s.remove_metadata().equals(first), f"{f.relative_to(gen_dataset)}: schema differs from {files[0].name}"
    if table in PERSON_KEYED_TABLES:
        assert "person_id" in first.names, f"{table} has no person_id column"


def test_every_table_has_rows(gen_duck):
    empty = []
    for t in ALL_TABLES:
        (n,) = gen_duck.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()
        if n == 0:
            empty.append(t)
    assert not empty, f"tables without rows in a {GEN_PERSONS}-person dataset: {empty}"


def test_person_count(gen_duck):
    n, d = gen_duck.execute("SELECT COUNT(*), COUNT(DISTINCT person_id) FROM person").fetchone()
    assert (n, d) == (GEN_PERSONS, GEN_PERSONS)


# --------------------------------------------------------------------------------------------------
# Sharding
# --------------------------------------------------------------------------------------------------


def _shard_persons(dataset: Path, table: str) -> dict[int, set[int]]:
    out = {}
    for k in range(GEN_SHARDS):
        files = sorted((dataset / table / f"shard={k}").glob("*.parquet"))
        ids: set[int] = set()
        for f in files:
            ids.update(pq.read_table(f, columns=["person_id"]).column("person_id").to_pylist())
        out[k] = ids
    return out


def test_shards_partition_persons_consistently(gen_dataset):
    person = _shard_persons(gen_dataset, "person")
    all_ids = set().union(*person.values())
    assert len(all_ids) == GEN_PERSONS
    for i in range(GEN_SHARDS):
        for j in range(i + 1, GEN_SHARDS):
            both = person[i] & person[j]
            assert not both, f"person ids in shard {i} and {j}: {sorted(both)[:5]}"
    assert all(person[k] for k in range(GEN_SHARDS)), f"an empty person shard: { {k: len(v) for k, v in person.items()} }"
    home = {pid: k for k, ids in person.items() for pid in ids}
    for table in PERSON_KEYED_TABLES:
        if table == "person":
            continue
        shards = _shard_persons(gen_dataset, table)
        for k, ids in shards.items():
            unknown = ids - all_ids
            assert not unknown, f"{table} shard {k}: person ids not in person: {sorted(unknown)[:5]}"
            wrong = [pid for pid in ids if home[pid] != k]
            assert not wrong, (
                f"{table} shard {k}: persons whose person rows are in another shard: "
                f"{[(p, home[p]) for p in wrong[:5]]}"
            )


def test_shard_files_hold_the_persons_hashing_to_them(gen_dataset):
    """shard k = hash(person_id) mod K with the layout's hash (helpers.shard_of)."""
    for table in PERSON_KEYED_TABLES:
        for k, ids in _shard_persons(gen_dataset, table).items():
            wrong = sorted(pid for pid in ids if shard_of(pid, GEN_SHARDS) != k)
            assert not wrong, (
                f"{table}/shard={k} holds persons hashing elsewhere: "
                f"{[(p, shard_of(p, GEN_SHARDS)) for p in wrong[:5]]}"
            )


def test_genotype_refers_to_variants_and_persons(gen_duck):
    (orphans,) = gen_duck.execute(
        "SELECT COUNT(*) FROM genotype g WHERE NOT EXISTS (SELECT 1 FROM variant v WHERE v.vid = g.vid)"
    ).fetchone()
    assert orphans == 0, f"{orphans} genotype rows with a vid not in variant"
    (unknown,) = gen_duck.execute(
        "SELECT COUNT(*) FROM genotype g WHERE g.person_id NOT IN (SELECT person_id FROM person)"
    ).fetchone()
    assert unknown == 0
    (dups,) = gen_duck.execute("SELECT COUNT(*) - COUNT(DISTINCT vid) FROM variant").fetchone()
    assert dups == 0, "variant.vid is not unique"
    (badvid,) = gen_duck.execute(
        "SELECT COUNT(*) FROM variant WHERE vid <> regexp_replace(contig, '^chr', '') || '-' "
        "|| CAST(position AS VARCHAR) || '-' "
        "|| ref_allele || '-' || alt_allele"
    ).fetchone()
    assert badvid == 0, "variant.vid is not chrom-pos-ref-alt"


def test_brca1_region_has_carriers(gen_duck):
    (n,) = gen_duck.execute(
        "SELECT COUNT(DISTINCT g.person_id) FROM genotype g JOIN variant v ON g.vid = v.vid "
        "WHERE v.contig = 'chr17' AND v.position BETWEEN 43044295 AND 43125483"
    ).fetchone()
    assert n > 0, "no genotype calls in the BRCA1 region"


# --------------------------------------------------------------------------------------------------
# Vocabulary and clinical content
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("concept_id", [201826, 320128, 3004410, 8507, 8532, 1503297])
def test_known_concepts_present(gen_duck, concept_id):
    (n,) = gen_duck.execute("SELECT COUNT(*) FROM concept WHERE concept_id = ?", [concept_id]).fetchone()
    assert n == 1, f"concept {concept_id} missing from concept"


def test_concept_ancestor_is_consistent(gen_duck):
    (self_rows,) = gen_duck.execute(
        "SELECT COUNT(*) FROM concept_ancestor WHERE ancestor_concept_id = 201826 AND descendant_concept_id = 201826"
    ).fetchone()
    assert self_rows == 1, "concept_ancestor lacks the 201826→201826 self row"
    (unknown,) = gen_duck.execute(
        "SELECT COUNT(*) FROM concept_ancestor a WHERE a.descendant_concept_id NOT IN (SELECT concept_id FROM concept) "
        "OR a.ancestor_concept_id NOT IN (SELECT concept_id FROM concept)"
    ).fetchone()
    assert unknown == 0, "concept_ancestor refers to concepts missing from concept"
    (t2d_people,) = gen_duck.execute(
        "SELECT COUNT(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id IN "
        "(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 201826)"
    ).fetchone()
    assert t2d_people > 100, f"only {t2d_people} type 2 diabetes patients in {GEN_PERSONS} persons"
    # Ancestor queries must matter: metformin exposures are recorded as clinical drugs below the
    # ingredient, and conditions sit below broader concepts (e.g. 201820 diabetes mellitus).
    (metformin_children,) = gen_duck.execute(
        "SELECT COUNT(*) FROM drug_exposure WHERE drug_concept_id IN "
        "(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 1503297 "
        " AND descendant_concept_id <> 1503297)"
    ).fetchone()
    assert metformin_children > 0, "no drug rows use a descendant of metformin 1503297"
    (below_broader,) = gen_duck.execute(
        "SELECT COUNT(*) FROM condition_occurrence WHERE condition_concept_id IN "
        "(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id <> descendant_concept_id)"
    ).fetchone()
    assert below_broader > 0, "no condition rows lie below a broader concept in concept_ancestor"


def _condition_person_counts(con) -> dict[int, int]:
    return dict(
        con.execute(
            "SELECT condition_concept_id, COUNT(DISTINCT person_id) FROM condition_occurrence GROUP BY 1"
        ).fetchall()
    )


@pytest.fixture(scope="module")
def gen_2000(work_root):
    out = work_root / "gen-2000"
    run_strata("generate", "--out", out, "--persons", 2000, "--shards", 2, "--seed", GEN_SEED + 1)
    return out


def documented_planted_groups() -> dict[int, int]:
    """concept_id -> participants from the table in the generator's module doc
    (testdata/src/generate/mod.rs, section "Planted rare conditions")."""
    src = (repo_root() / "testdata" / "src" / "generate" / "mod.rs").read_text()
    section = src.split("Planted rare conditions", 1)
    assert len(section) == 2, "generate's module doc has no 'Planted rare conditions' section"
    groups = {}
    for line in section[1].splitlines()[1:]:
        if not line.startswith("//!"):
            break
        m = re.match(r"^//!\s*\|\s*(\d+)\s*\|[^|]*\|\s*(\d+)\s*\|\s*$", line)
        if m:
            groups[int(m.group(1))] = int(m.group(2))
    return groups


def test_planted_groups_documented():
    groups = documented_planted_groups()
    assert sorted(groups.values()) == sorted(PLANTED_COUNTS), f"documented planted groups: {groups}"


@pytest.mark.parametrize("which", ["gen-3000-seed7", "gen-2000-seed8"])
def test_planted_rare_groups_have_exact_sizes(gen_duck, gen_2000, which):
    """Each planted rare condition has exactly its documented number of participants, whatever the
    seed and the size."""
    con = gen_duck if which.startswith("gen-3000") else duck_over(gen_2000, tables=["condition_occurrence"])
    counts = _condition_person_counts(con)
    groups = documented_planted_groups()
    assert groups, "no planted groups documented"
    wrong = {c: (n, counts.get(c, 0)) for c, n in groups.items() if counts.get(c, 0) != n}
    assert not wrong, f"planted concept -> (documented, actual participants): {wrong}"


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, mention",
    [
        (["--persons", "0"], "persons"),
        (["--shards", "0"], "shards"),
        (["--persons", "abc"], "persons"),
        (["--shards", "-3"], "shards"),
    ],
    ids=["persons-0", "shards-0", "persons-abc", "shards-negative"],
)
def test_bad_numbers_rejected(tmp_work, args, mention):
    out = tmp_work / "ds"
    proc = run_strata("generate", "--out", out, *args, check=False, timeout=120)
    one_line_error(proc, mention)
    assert not out.exists(), f"a failed generate left {out} behind"
    leftovers = [p.name for p in tmp_work.iterdir()]
    assert not leftovers, f"a failed generate left files next to the output: {leftovers}"


def test_existing_nonempty_out_rejected(tmp_work):
    out = tmp_work / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    proc = run_strata("generate", "--out", out, "--persons", 50, check=False, timeout=120)
    one_line_error(proc)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"], "generate wrote into a non-empty folder"
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_work.iterdir()) == ["ds"], "generate left a temporary folder behind"


def test_out_is_a_file_rejected(tmp_work):
    out = tmp_work / "ds"
    out.write_text("not a folder")
    proc = run_strata("generate", "--out", out, "--persons", 50, check=False, timeout=120)
    one_line_error(proc)
    assert out.read_text() == "not a folder"


def test_missing_out_rejected(tmp_work):
    proc = run_strata("generate", "--persons", 50, check=False, timeout=120, cwd=tmp_work)
    one_line_error(proc, "--out")
    assert not list(tmp_work.iterdir())
