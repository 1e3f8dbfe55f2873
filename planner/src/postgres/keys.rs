//! `pg_index` and `pg_constraint` with a primary key for every table that has one: BI tools and
//! ORMs reflect keys from them (Power BI fails on an empty `pg_index`, Superset's dataset editor
//! and SQLAlchemy's inspector ask for the primary key). The system's own rows come from
//! datafusion-pg-catalog; their key columns (`indkey`, `conkey`, stored as text there) become
//! `int2` arrays, as clients `unnest` them.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::scalar::ScalarValue;

/// A table's primary key as the catalog numbers it.
#[derive(Debug)]
pub struct Key {
    pub table: String,
    pub table_oid: i32,
    pub namespace_oid: i32,
    /// `pg_attribute.attnum` of the key column (1-based).
    pub attnum: i16,
}

/// Index and constraint oids of key `n`: above every relation oid a session hands out.
fn index_oid(key: &Key) -> i32 {
    key.table_oid + (1 << 24)
}

fn constraint_oid(key: &Key) -> i32 {
    key.table_oid + (2 << 24)
}

/// Columns of int2 vectors in each table.
const KEY_COLUMNS: &[&str] = &["indkey", "conkey", "confkey"];

/// `system` (the static rows) with its key-column vectors as arrays, and a row per key.
pub fn table(name: &str, system: &[RecordBatch], keys: &[Key]) -> Result<MemTable> {
    let Some(first) = system.first() else {
        return Err(DataFusionError::Internal(format!("{name} has no rows")));
    };
    let schema = amended_schema(name, &first.schema());
    let mut batches = system
        .iter()
        .map(|b| with_vectors(b, &schema))
        .collect::<Result<Vec<_>>>()?;
    batches.push(key_rows(name, &schema, keys)?);
    MemTable::try_new(schema, vec![batches])
}

/// The schema of a system table as Strata amends it.
fn amended_schema(name: &str, system: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<_> = system
        .fields()
        .iter()
        .map(|f| {
            if KEY_COLUMNS.contains(&f.name().as_str()) {
                Arc::new(Field::new(f.name(), vectors_type(), true))
            } else {
                f.clone()
            }
        })
        .collect();
    if name == "pg_class" {
        fields.push(Arc::new(Field::new("reloptions", options_type(), true)));
    }
    Arc::new(Schema::new(fields))
}

fn options_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn vectors_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true)))
}

fn with_vectors(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if KEY_COLUMNS.contains(&field.name().as_str()) {
                vectors(column)
            } else {
                Ok(column.clone())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `"1 3"` or `"{1,3}"` as `[1, 3]`.
fn vectors(column: &ArrayRef) -> Result<ArrayRef> {
    let text = datafusion::arrow::compute::cast(column, &DataType::Utf8)?;
    let text: &StringArray = text.as_string();
    let values = (0..text.len())
        .map(|i| {
            if text.is_null(i) {
                return ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Int16));
            }
            let numbers: Vec<ScalarValue> = text
                .value(i)
                .trim_matches(|c| c == '{' || c == '}')
                .split([' ', ','])
                .filter_map(|n| n.trim().parse::<i16>().ok())
                .map(|n| ScalarValue::Int16(Some(n)))
                .collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&numbers, &DataType::Int16))
        })
        .collect::<Vec<_>>();
    if values.is_empty() {
        return Ok(datafusion::arrow::array::new_empty_array(&vectors_type()));
    }
    ScalarValue::iter_to_array(values)
}

fn key_rows(name: &str, schema: &SchemaRef, keys: &[Key]) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let values = keys
                .iter()
                .map(|key| value(name, field.name(), key, field.data_type()))
                .collect::<Result<Vec<_>>>()?;
            if values.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(field.data_type()));
            }
            ScalarValue::iter_to_array(values)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn value(table: &str, column: &str, key: &Key, data_type: &DataType) -> Result<ScalarValue> {
    let int = |v: i32| ScalarValue::Int32(Some(v));
    let vector = || {
        ScalarValue::List(ScalarValue::new_list_nullable(
            &[ScalarValue::Int16(Some(key.attnum))],
            &DataType::Int16,
        ))
    };
    let value = match (table, column) {
        ("pg_index", "indexrelid") | ("pg_constraint", "conindid") => int(index_oid(key)),
        ("pg_index", "indrelid") | ("pg_constraint", "conrelid") => int(key.table_oid),
        ("pg_index", "indnatts" | "indnkeyatts") => ScalarValue::Int16(Some(1)),
        ("pg_index", "indisunique" | "indisprimary" | "indimmediate" | "indisvalid")
        | ("pg_index", "indisready" | "indislive")
        | ("pg_constraint", "convalidated" | "conislocal" | "connoinherit") => {
            ScalarValue::Boolean(Some(true))
        }
        ("pg_index", "indkey") | ("pg_constraint", "conkey") => vector(),
        ("pg_index", "indcollation" | "indclass" | "indoption") => {
            ScalarValue::Utf8(Some("0".into()))
        }
        ("pg_constraint", "oid") => int(constraint_oid(key)),
        ("pg_constraint", "conname") => ScalarValue::Utf8(Some(format!("{}_pkey", key.table))),
        ("pg_constraint", "connamespace") => int(key.namespace_oid),
        ("pg_constraint", "contype") => ScalarValue::Utf8(Some("p".into())),
        ("pg_constraint", "confupdtype" | "confdeltype" | "confmatchtype") => {
            ScalarValue::Utf8(Some(" ".into()))
        }
        _ => match data_type {
            DataType::Boolean => ScalarValue::Boolean(Some(false)),
            DataType::Int16 => ScalarValue::Int16(Some(0)),
            DataType::Int32 => ScalarValue::Int32(Some(0)),
            other => ScalarValue::try_from(other)?,
        },
    };
    Ok(value)
}

/// The keys among `pg_class` rows (`oid`, `relname`, `relnamespace`): tables whose schema has a
/// primary key by the Tables contract.
pub fn keys(
    pg_class: &[RecordBatch],
    schemas: &std::collections::HashMap<String, SchemaRef>,
) -> Vec<Key> {
    let mut keys = Vec::new();
    for batch in pg_class {
        let column = |name: &str| batch.column_by_name(name).cloned();
        let (Some(oid), Some(relname), Some(namespace)) =
            (column("oid"), column("relname"), column("relnamespace"))
        else {
            continue;
        };
        let (Some(oid), Some(namespace)) = (
            oid.as_any().downcast_ref::<Int32Array>(),
            namespace.as_any().downcast_ref::<Int32Array>(),
        ) else {
            continue;
        };
        let Ok(relname) = datafusion::arrow::compute::cast(&relname, &DataType::Utf8) else {
            continue;
        };
        let relname: &StringArray = relname.as_string();
        for row in 0..batch.num_rows() {
            let table = relname.value(row);
            let Some(schema) = schemas.get(table) else {
                continue;
            };
            let Some(column) = strata_engine::tables::primary_key(table, schema) else {
                continue;
            };
            let Ok(index) = schema.index_of(&column) else {
                continue;
            };
            keys.push(Key {
                table: table.to_owned(),
                table_oid: oid.value(row),
                namespace_oid: namespace.value(row),
                attnum: index as i16 + 1,
            });
        }
    }
    keys
}

/// `pg_class` with `reloptions` (NULL: no storage options), which SQLAlchemy's index reflection
/// selects and datafusion-pg-catalog leaves out.
fn with_reloptions(rows: &[RecordBatch], schema: &SchemaRef) -> Result<MemTable> {
    let batches = rows
        .iter()
        .map(|b| {
            let mut columns = b.columns().to_vec();
            columns.push(datafusion::arrow::array::new_null_array(
                &options_type(),
                b.num_rows(),
            ));
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    MemTable::try_new(schema.clone(), vec![batches])
}

/// What one walk of `pg_class` in a session found: its rows (oids handed out) and the primary
/// keys among them.
#[derive(Debug)]
pub struct Walk {
    pub pg_class: Vec<RecordBatch>,
    pub keys: Vec<Key>,
}

/// A system table amended when it is read: looking its schema up (which the walk of `pg_class`
/// does for every relation) reads nothing.
#[derive(Debug)]
pub struct Amended {
    name: String,
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    walk: Arc<OnceLock<Walk>>,
}

impl Amended {
    pub fn new(name: &str, inner: Arc<dyn TableProvider>, walk: Arc<OnceLock<Walk>>) -> Self {
        Amended {
            name: name.to_owned(),
            schema: amended_schema(name, &inner.schema()),
            inner,
            walk,
        }
    }
}

#[async_trait]
impl TableProvider for Amended {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let walk = self.walk.get();
        let table = match (self.name.as_str(), walk) {
            // The session's walk read pg_class already.
            ("pg_class", Some(walk)) => with_reloptions(&walk.pg_class, &self.schema)?,
            (name, _) => {
                let plan = self.inner.scan(state, None, &[], None).await?;
                let rows = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
                if name == "pg_class" {
                    with_reloptions(&rows, &self.schema)?
                } else {
                    let keys = walk.map_or(&[][..], |w| w.keys.as_slice());
                    table(name, &rows, keys)?
                }
            }
        };
        table.scan(state, projection, filters, limit).await
    }
}
