//! End-to-end checks of generated datasets, read back from their Parquet files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
}

fn read_table(dataset: &Path, table: &str) -> RecordBatch {
    let mut files = Vec::new();
    parquet_files(&dataset.join(table), &mut files);
    assert!(!files.is_empty(), "no files for {table}");
    let mut batches = Vec::new();
    let mut schema = None;
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap()).unwrap();
        schema = Some(reader.schema().clone());
        for b in reader.build().unwrap() {
            batches.push(b.unwrap());
        }
    }
    concat_batches(&schema.unwrap(), &batches).unwrap()
}

fn i64s(b: &RecordBatch, col: &str) -> Vec<i64> {
    b.column_by_name(col)
        .unwrap_or_else(|| panic!("no column {col}"))
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn opt_i64s(b: &RecordBatch, col: &str) -> Vec<Option<i64>> {
    b.column_by_name(col)
        .unwrap()
        .as_primitive::<Int64Type>()
        .iter()
        .collect()
}

fn i32s(b: &RecordBatch, col: &str) -> Vec<Option<i32>> {
    b.column_by_name(col)
        .unwrap()
        .as_primitive::<Int32Type>()
        .iter()
        .collect()
}

fn dates(b: &RecordBatch, col: &str) -> Vec<Option<i32>> {
    b.column_by_name(col)
        .unwrap()
        .as_primitive::<Date32Type>()
        .iter()
        .collect()
}

fn strings(b: &RecordBatch, col: &str) -> Vec<String> {
    let a = b.column_by_name(col).unwrap();
    let a = a.as_string::<i32>();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

fn generate_into(dir: &Path, persons: u64, seed: u64) -> GenerateSummary {
    generate(&GenerateOptions {
        out: dir.to_path_buf(),
        persons,
        shards: 3,
        seed,
        progress: false,
    })
    .unwrap()
}

#[test]
fn same_seed_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let c = tmp.path().join("c");
    generate_into(&a, 250, 42);
    generate_into(&b, 250, 42);
    generate_into(&c, 250, 43);
    let (mut fa, mut fb, mut fc) = (Vec::new(), Vec::new(), Vec::new());
    parquet_files(&a, &mut fa);
    parquet_files(&b, &mut fb);
    parquet_files(&c, &mut fc);
    assert_eq!(fa.len(), fb.len());
    let mut differs = false;
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.strip_prefix(&a).unwrap(), y.strip_prefix(&b).unwrap());
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} differs",
            x.display()
        );
    }
    for (x, z) in fa.iter().zip(&fc) {
        if x.strip_prefix(&a).unwrap() == z.strip_prefix(&c).unwrap()
            && std::fs::read(x).unwrap() != std::fs::read(z).unwrap()
        {
            differs = true;
        }
    }
    assert!(differs, "another seed gave the same data");
    assert_eq!(
        std::fs::read_to_string(a.join("catalog.toml")).unwrap(),
        std::fs::read_to_string(b.join("catalog.toml")).unwrap()
    );
}

#[test]
fn bad_input_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (persons, shards) in [(0, 4), (10, 0)] {
        let err = generate(&GenerateOptions {
            out: tmp.path().join("x"),
            persons,
            shards,
            seed: 1,
            progress: false,
        })
        .unwrap_err();
        assert!(matches!(err, TestdataError::Input(_)), "{err}");
        let msg = err.to_string();
        assert!(!msg.contains('\n') && msg.contains("--"), "{msg}");
        assert!(!tmp.path().join("x").exists());
    }
}

/// Everything a generated dataset promises, checked on one 1,000-participant dataset.
#[test]
fn generated_dataset_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let summary = generate_into(&ds, 1_000, 7);
    let rows: BTreeMap<String, u64> = summary.tables.iter().cloned().collect();
    for t in tables::PERSON_TABLES.iter().chain(
        [
            "concept",
            "concept_ancestor",
            "concept_relationship",
            "variant",
            "genotype",
        ]
        .iter(),
    ) {
        assert!(
            rows.get(*t).copied().unwrap_or(0) > 0,
            "table {t} is empty: {rows:?}"
        );
    }
    assert_eq!(rows["person"], 1_000);

    // Vocabulary: every concept used anywhere is in `concept`.
    let concept = read_table(&ds, "concept");
    let known: BTreeSet<i32> = i32s(&concept, "concept_id").into_iter().flatten().collect();
    for t in tables::PERSON_TABLES {
        let b = read_table(&ds, t);
        for f in b.schema().fields() {
            if f.name().ends_with("concept_id") {
                for v in i32s(&b, f.name()).into_iter().flatten() {
                    assert!(
                        known.contains(&v),
                        "{t}.{} = {v} is not in concept",
                        f.name()
                    );
                }
            }
        }
    }
    let ancestor = read_table(&ds, "concept_ancestor");
    let pairs: BTreeSet<(i32, i32)> = i32s(&ancestor, "ancestor_concept_id")
        .into_iter()
        .zip(i32s(&ancestor, "descendant_concept_id"))
        .map(|(a, d)| (a.unwrap(), d.unwrap()))
        .collect();
    assert!(pairs.contains(&(201820, 201826)));
    assert!(pairs.contains(&(201826, 201826)));
    assert!(pairs.contains(&(1503297, 40163924)));

    // Person table: sorted shard files, birth datetime filled, some 89+, some missing days.
    let person = read_table(&ds, "person");
    assert_eq!(
        person
            .column_by_name("birth_datetime")
            .unwrap()
            .null_count(),
        0
    );
    let pids = i64s(&person, "person_id");
    assert_eq!(pids.iter().copied().collect::<BTreeSet<_>>().len(), 1_000);

    // Planted rare conditions: exact participant counts, more rows than participants overall.
    let cond = read_table(&ds, "condition_occurrence");
    let cpid = i64s(&cond, "person_id");
    let cconcept: Vec<i32> = i32s(&cond, "condition_concept_id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let mut planted_rows = 0;
    let mut planted_people = 0;
    for g in PLANTED {
        let people: BTreeSet<i64> = cpid
            .iter()
            .zip(&cconcept)
            .filter(|(_, c)| **c == g.concept_id)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(people.len(), g.participants, "concept {}", g.concept_id);
        planted_people += people.len();
        planted_rows += cconcept.iter().filter(|c| **c == g.concept_id).count();
    }
    assert!(
        planted_rows > planted_people,
        "planted conditions should recur"
    );

    // Every event is inside its visit and inside the participant's observation period, and
    // before death.
    let period = read_table(&ds, "observation_period");
    let mut periods: BTreeMap<i64, (i32, i32)> = BTreeMap::new();
    for ((p, s), e) in i64s(&period, "person_id")
        .into_iter()
        .zip(dates(&period, "observation_period_start_date"))
        .zip(dates(&period, "observation_period_end_date"))
    {
        assert!(
            periods.insert(p, (s.unwrap(), e.unwrap())).is_none(),
            "two periods for {p}"
        );
    }
    let death = read_table(&ds, "death");
    let deaths: BTreeMap<i64, i32> = i64s(&death, "person_id")
        .into_iter()
        .zip(dates(&death, "death_date"))
        .map(|(p, d)| (p, d.unwrap()))
        .collect();
    let visits = read_table(&ds, "visit_occurrence");
    let mut visit_span: BTreeMap<i64, (i64, i32, i32)> = BTreeMap::new();
    for (((id, p), s), e) in i64s(&visits, "visit_occurrence_id")
        .into_iter()
        .zip(i64s(&visits, "person_id"))
        .zip(dates(&visits, "visit_start_date"))
        .zip(dates(&visits, "visit_end_date"))
    {
        visit_span.insert(id, (p, s.unwrap(), e.unwrap()));
    }
    let check = |table: &str, date_col: &str, in_visit: bool| {
        let b = read_table(&ds, table);
        let ps = i64s(&b, "person_id");
        let ds_ = dates(&b, date_col);
        let vs = if b.schema().column_with_name("visit_occurrence_id").is_some() {
            opt_i64s(&b, "visit_occurrence_id")
        } else {
            vec![None; b.num_rows()]
        };
        for ((p, d), v) in ps.iter().zip(ds_).zip(vs) {
            let d = d.unwrap();
            let (s, e) = periods[p];
            assert!(
                s <= d && d <= e,
                "{table}: {p} event on {d} outside period {s}..{e}"
            );
            if let Some(dd) = deaths.get(p) {
                assert!(d < *dd, "{table}: {p} event on {d} after death {dd}");
            }
            if let Some(v) = v.filter(|_| in_visit) {
                let (vp, vs, ve) = visit_span[&v];
                assert_eq!(vp, *p, "{table}: visit of another participant");
                assert!(
                    vs <= d && d <= ve,
                    "{table}: event on {d} outside its visit {vs}..{ve}"
                );
            }
        }
    };
    check("condition_occurrence", "condition_start_date", true);
    check("drug_exposure", "drug_exposure_start_date", true);
    check("drug_exposure", "drug_exposure_end_date", false);
    check("procedure_occurrence", "procedure_date", true);
    check("measurement", "measurement_date", true);
    check("observation", "observation_date", true);
    check("visit_occurrence", "visit_end_date", true);

    // Surveys stand in `observation` too.
    let survey = read_table(&ds, "ds_survey");
    let obs = read_table(&ds, "observation");
    let survey_obs = i32s(&obs, "observation_type_concept_id")
        .iter()
        .filter(|t| **t == Some(45905771))
        .count();
    assert_eq!(survey_obs, survey.num_rows());

    // Type 2 diabetics have higher HbA1c than others.
    let m = read_table(&ds, "measurement");
    let diabetic: BTreeSet<i64> = cpid
        .iter()
        .zip(&cconcept)
        .filter(|(_, c)| **c == 201826)
        .map(|(p, _)| *p)
        .collect();
    let (mut dm, mut other) = (Vec::new(), Vec::new());
    let values = m
        .column_by_name("value_as_number")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    for (i, (p, c)) in i64s(&m, "person_id")
        .into_iter()
        .zip(i32s(&m, "measurement_concept_id"))
        .enumerate()
    {
        if c == Some(3004410) {
            if diabetic.contains(&p) {
                dm.push(values.value(i))
            } else {
                other.push(values.value(i))
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(!dm.is_empty() && !other.is_empty());
    assert!(
        mean(&dm) > mean(&other) + 0.8,
        "HbA1c: diabetics {} vs others {}",
        mean(&dm),
        mean(&other)
    );

    // Genomics: AC/AN/AF agree with the genotype calls; variants sorted within each contig.
    let variant = read_table(&ds, "variant");
    let genotype = read_table(&ds, "genotype");
    let sequenced: BTreeSet<i64> = i64s(&genotype, "person_id").into_iter().collect();
    let mut ac: BTreeMap<String, i64> = BTreeMap::new();
    for (vid, gt) in strings(&genotype, "vid")
        .into_iter()
        .zip(strings(&genotype, "gt"))
    {
        *ac.entry(vid).or_default() += match gt.as_str() {
            "0/1" => 1,
            "1/1" => 2,
            other => panic!("unexpected gt {other}"),
        };
    }
    let an = i64s(&variant, "gvs_all_an");
    let vac = i64s(&variant, "gvs_all_ac");
    let af = variant
        .column_by_name("gvs_all_af")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let vids = strings(&variant, "vid");
    assert_eq!(
        vids.len(),
        ac.len(),
        "every variant has calls and every call a variant"
    );
    for i in 0..vids.len() {
        assert_eq!(ac[&vids[i]], vac[i], "{}", vids[i]);
        assert!(an[i] >= 2 * sequenced.len() as i64);
        assert!((af.value(i) - vac[i] as f64 / an[i] as f64).abs() < 1e-12);
    }
    let wgs = an[0] / 2;
    assert!((120..=280).contains(&wgs), "{wgs} sequenced of 1000");
    let contigs = strings(&variant, "contig");
    let positions = i64s(&variant, "position");
    for i in 1..vids.len() {
        if contigs[i] == contigs[i - 1] {
            assert!(positions[i] > positions[i - 1]);
        }
        let chrom = contigs[i].strip_prefix("chr").unwrap();
        assert!(
            vids[i].starts_with(&format!("{chrom}-{}-", positions[i])),
            "{}",
            vids[i]
        );
    }
    assert!(matches!(
        variant
            .schema()
            .field_with_name("position")
            .unwrap()
            .data_type(),
        DataType::Int64
    ));

    // Fitbit for a minority; minute-level rows for those participants only.
    let activity = read_table(&ds, "activity_summary");
    let fitbit: BTreeSet<i64> = i64s(&activity, "person_id").into_iter().collect();
    assert!(
        (90..=220).contains(&fitbit.len()),
        "{} Fitbit participants",
        fitbit.len()
    );
    let hr = read_table(&ds, "heart_rate_minute_level");
    assert!(i64s(&hr, "person_id").iter().all(|p| fitbit.contains(p)));
}
