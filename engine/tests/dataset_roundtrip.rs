//! Writes a dataset with the engine's writer, opens it, and queries it: rows land in the shard
//! their person hashes to, and a point lookup opens exactly one shard.

use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use strata_engine::layout::shard_of;
use strata_engine::writer::{DatasetWriter, TableSpec};
use strata_engine::{Dataset, DatasetOptions, Tier};

const SHARDS: u32 = 4;

fn write_dataset(dir: &std::path::Path) {
    let mut w = DatasetWriter::create(dir, "t", "test", SHARDS).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Int64, false),
        Field::new("gender_concept_id", DataType::Int32, false),
    ]));
    let mut t = w
        .table(TableSpec::standard("person", &schema), schema.clone())
        .unwrap();
    let ids: Vec<i64> = (1..=1000).collect();
    let genders: Vec<i32> = ids
        .iter()
        .map(|i| if i % 2 == 0 { 8507 } else { 8532 })
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int32Array::from(genders)),
        ],
    )
    .unwrap();
    t.write(&batch).unwrap();
    w.add_table(t.finish().unwrap());

    let schema = Arc::new(Schema::new(vec![
        Field::new("concept_id", DataType::Int32, false),
        Field::new("concept_name", DataType::Utf8, false),
    ]));
    let mut t = w
        .table(TableSpec::standard("concept", &schema), schema.clone())
        .unwrap();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![8507, 8532])),
            Arc::new(StringArray::from(vec!["MALE", "FEMALE"])),
        ],
    )
    .unwrap();
    t.write(&batch).unwrap();
    w.add_table(t.finish().unwrap());
    w.finish().unwrap();
}

/// The dataset of `write_dataset`, written to a temporary folder and opened.
async fn opened() -> (tempfile::TempDir, std::path::PathBuf, Dataset) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    write_dataset(&dir);
    let dataset = Dataset::open(&dir, &DatasetOptions::default())
        .await
        .unwrap();
    (tmp, dir, dataset)
}

async fn explain(ctx: &datafusion::prelude::SessionContext, sql: &str) -> String {
    let batches = ctx
        .sql(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn rows_land_in_their_shard_and_point_lookups_open_one_shard() {
    let (_tmp, dir, dataset) = opened().await;
    assert_eq!(dataset.catalog().tables["person"].tier, Tier::Registered);
    assert_eq!(dataset.catalog().tables["concept"].tier, Tier::Public);
    for k in 0..SHARDS {
        let file = dir.join(format!("person/shard={k}/part-0.parquet"));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for id in batch.column(0).as_primitive::<Int64Type>().values() {
                assert_eq!(shard_of(*id, SHARDS), k, "person {id} in the wrong shard");
            }
        }
    }

    let (ctx, recorder) = dataset.session().unwrap();
    let rows = ctx
        .sql("SELECT c.concept_name FROM person p JOIN concept c ON c.concept_id = p.gender_concept_id WHERE p.person_id = 77")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let names: Vec<String> = rows
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names, vec!["FEMALE".to_string()]);
    let person_scan = recorder
        .records()
        .into_iter()
        .find(|r| r.table == "person")
        .unwrap();
    assert_eq!(
        (person_scan.shards_scanned, person_scan.shards_total),
        (1, SHARDS as usize)
    );

    let (ctx, _) = dataset.session().unwrap();
    let count = ctx
        .sql("SELECT COUNT(*) FROM person")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        count[0].column(0).as_primitive::<Int64Type>().value(0),
        1000
    );
}

/// The scan carries the row counts read from the files' footers (the optimizer's join order
/// needs them), and nothing more, and turns late materialization on only for a selective filter
/// on the person key.
#[tokio::test]
async fn scans_carry_footer_statistics_and_choose_late_materialization() {
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

    let (_tmp, _, dataset) = opened().await;
    let (ctx, _) = dataset.session().unwrap();

    let scan = dataset.tables()["person"].clone();
    let state = ctx.state();
    let plan = datafusion::catalog::TableProvider::scan(scan.as_ref(), &state, None, &[], None)
        .await
        .unwrap();
    let stats = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .unwrap();
    // The row count, inexact: DataFusion answers COUNT/MIN/MAX from exact statistics, which
    // would put values into plans outside disclosure control; column bounds are not given.
    assert_eq!(
        stats.num_rows,
        datafusion::common::stats::Precision::Inexact(1000)
    );
    assert!(
        stats
            .column_statistics
            .iter()
            .all(|c| c.max_value == datafusion::common::stats::Precision::Absent)
    );

    // The person key: late materialization (the reader evaluates the predicate itself).
    let text = explain(
        &ctx,
        "SELECT gender_concept_id FROM person WHERE person_id = 77",
    )
    .await;
    assert!(
        !text.contains("FilterExec"),
        "the reader filters the person: {text}"
    );
    // Another column: the reader leaves the filter to a FilterExec above it.
    let text = explain(
        &ctx,
        "SELECT person_id FROM person WHERE gender_concept_id = 8507",
    )
    .await;
    assert!(
        text.contains("FilterExec"),
        "filtered above the scan: {text}"
    );
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    {
        let w = DatasetWriter::create(&dir, "t", "test", SHARDS).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "person_id",
            DataType::Utf8,
            false,
        )]));
        assert!(
            w.table(TableSpec::standard("person", &schema), schema)
                .is_err()
        );
        // dropped without finish()
    }
    assert!(!dir.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "staging folder left behind: {leftovers:?}"
    );
}

/// The optimizer knows a scan's rows but no column bounds; a filter it cannot bound is taken to
/// keep DataFusion's default fifth of the rows, through a grouping too, so a LEFT JOIN of a
/// whole table with a filtered distinct list of the same table builds its hash table on the
/// list (the join's sides swap: a RIGHT join). Had the filter been taken to keep every row, the
/// sides would look alike and the whole table would be built.
#[tokio::test]
async fn a_filtered_side_is_estimated_smaller_and_built() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path());
    let dataset = Dataset::open(dir.path(), &DatasetOptions::default())
        .await
        .unwrap();
    let (ctx, _) = dataset.session().unwrap();
    let sql = "SELECT COUNT(t.person_id) FROM person p LEFT JOIN \
               (SELECT DISTINCT person_id FROM person WHERE gender_concept_id = 8507) t \
               ON t.person_id = p.person_id";
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    assert!(text.contains("join_type=Right"), "{text}");
    let counted = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(
        counted[0].column(0).as_primitive::<Int64Type>().value(0),
        500
    );
}
