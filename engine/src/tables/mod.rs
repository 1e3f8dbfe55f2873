//! The Tables contract (DESIGN.md "Tables") as code, written once: every table's Arrow schema,
//! data group, default tier, controlled columns, person key and layout ([`definitions`]), and
//! the OMOP event domains the cohort compilers read ([`events`]).
//!
//! The generator fills the typed row builders declared here, both importers type and place
//! their tables by it, the writer and catalog take tiers and layouts from it, and the cohort
//! compilers take their domain tables and columns from it. A table outside the contract (an
//! import's extra table) is kept at the registered tier, never public, so that an import cannot
//! widen access by accident.
//!
//! Types: row ids and `person_id` Int64 ([`ColumnType::Id`]), every `*_concept_id` Int32, other
//! OMOP integers (years, refills, days supply, levels) Int32, dates Date32, datetimes
//! Timestamp(µs, no zone), measured values Float64, text Utf8; wearable and genomic counts and
//! positions Int64.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::catalog::Tier;
pub use crate::layout::PERSON_KEY;

/// The type of a contract column; each is one Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A row id or `person_id` (Int64).
    Id,
    /// A `*_concept_id` (Int32).
    ConceptId,
    /// Another OMOP integer: years, refills, days supply, levels (Int32).
    Int,
    /// A wearable or genomic count, or a position (Int64).
    BigInt,
    /// A measured value (Float64).
    Number,
    Date,
    /// Microseconds, no time zone.
    Datetime,
    Text,
    Flag,
}

impl ColumnType {
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Id | ColumnType::BigInt => DataType::Int64,
            ColumnType::ConceptId | ColumnType::Int => DataType::Int32,
            ColumnType::Number => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Text => DataType::Utf8,
            ColumnType::Flag => DataType::Boolean,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: &'static str,
    pub kind: ColumnType,
    pub nullable: bool,
}

/// How a table's files are laid out (DESIGN.md "Dataset layout").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Route rows by the person key into `shards` shards.
    Person,
    /// Route rows by the `contig` column.
    Contig,
    /// One folder, no routing.
    Single,
}

/// One table of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    pub name: &'static str,
    /// The catalog's data group: `vocabulary`, `ehr`, `survey`, `wearable`, `genomics`, `other`.
    pub group: &'static str,
    pub tier: Tier,
    pub layout: Layout,
    /// The participant column, if rows belong to participants.
    pub person_key: Option<&'static str>,
    /// Columns that demand the controlled tier even inside a registered table.
    pub controlled: &'static [&'static str],
    /// The columns in schema order (CDM 5.4 names).
    pub columns: &'static [ColumnDef],
}

impl TableDef {
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.kind.data_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&'static ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_tiers(&self) -> BTreeMap<String, Tier> {
        self.controlled
            .iter()
            .map(|c| (c.to_string(), Tier::Controlled))
            .collect()
    }
}

macro_rules! builder_of {
    (Id) => {
        arrow::array::Int64Builder
    };
    (BigInt) => {
        arrow::array::Int64Builder
    };
    (ConceptId) => {
        arrow::array::Int32Builder
    };
    (Int) => {
        arrow::array::Int32Builder
    };
    (Number) => {
        arrow::array::Float64Builder
    };
    (Date) => {
        arrow::array::Date32Builder
    };
    (Datetime) => {
        arrow::array::TimestampMicrosecondBuilder
    };
    (Text) => {
        arrow::array::StringBuilder
    };
    (Flag) => {
        arrow::array::BooleanBuilder
    };
}

macro_rules! nullable {
    (req) => {
        false
    };
    (opt) => {
        true
    };
}

macro_rules! some_name {
    () => {
        None
    };
    ($name:ident) => {
        Some(stringify!($name))
    };
}

/// Declares the contract's tables: per table a [`TableDef`] and a struct of one Arrow builder
/// per column (`NAME`, `DEF`, `schema`, `finish`), and [`TABLES`], all of them in order.
macro_rules! contract {
    ($(
        $(#[$doc:meta])*
        $ty:ident = $name:literal {
            group: $group:ident, tier: $tier:ident, layout: $layout:ident
            $(, person_key: $key:ident)? $(, controlled: [$($controlled:ident),* $(,)?])?;
            $($col:ident : $kind:ident $null:ident),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            pub struct $ty {
                $(pub $col: builder_of!($kind),)*
            }

            impl $ty {
                pub const NAME: &'static str = $name;
                pub const DEF: TableDef = TableDef {
                    name: $name,
                    group: stringify!($group),
                    tier: Tier::$tier,
                    layout: Layout::$layout,
                    person_key: some_name!($($key)?),
                    controlled: &[$($(stringify!($controlled)),*)?],
                    columns: &[$(ColumnDef {
                        name: stringify!($col),
                        kind: ColumnType::$kind,
                        nullable: nullable!($null),
                    }),*],
                };

                pub fn schema() -> arrow::datatypes::SchemaRef {
                    static SCHEMA: std::sync::OnceLock<arrow::datatypes::SchemaRef> =
                        std::sync::OnceLock::new();
                    SCHEMA.get_or_init(|| Self::DEF.schema()).clone()
                }

                pub fn new() -> Self {
                    $ty { $($col: <builder_of!($kind)>::new(),)* }
                }

                /// Rows appended so far (the longest column).
                pub fn len(&self) -> usize {
                    use arrow::array::ArrayBuilder as _;
                    let mut n = 0;
                    $(n = n.max(self.$col.len());)*
                    n
                }

                pub fn is_empty(&self) -> bool {
                    self.len() == 0
                }

                /// The rows appended so far as one batch; the builders start over empty.
                ///
                /// # Panics
                /// If the columns differ in length or a required column holds a null: a bug in
                /// the code filling the builders, not bad input.
                pub fn finish(&mut self) -> arrow::array::RecordBatch {
                    let columns: Vec<arrow::array::ArrayRef> =
                        vec![$(std::sync::Arc::new(self.$col.finish()),)*];
                    arrow::array::RecordBatch::try_new(Self::schema(), columns)
                        .unwrap_or_else(|e| panic!("table {}: inconsistent columns: {e}", $name))
                }
            }

            impl Default for $ty {
                fn default() -> Self {
                    Self::new()
                }
            }
        )*

        /// Every table of the contract.
        pub const TABLES: &[TableDef] = &[$($ty::DEF),*];
    };
}

mod definitions;
pub mod events;

pub use definitions::*;

/// Columns that CDM 5.3 had and 5.4 renamed: not in the schemas, but typed when an export
/// still carries them.
const CDM53_COLUMNS: &[(&str, &str, ColumnType)] = &[
    (
        "visit_occurrence",
        "admitting_source_concept_id",
        ColumnType::ConceptId,
    ),
    (
        "visit_occurrence",
        "admitting_source_value",
        ColumnType::Text,
    ),
    (
        "visit_occurrence",
        "discharge_to_concept_id",
        ColumnType::ConceptId,
    ),
    (
        "visit_occurrence",
        "discharge_to_source_value",
        ColumnType::Text,
    ),
    (
        "visit_detail",
        "admitting_source_concept_id",
        ColumnType::ConceptId,
    ),
    ("visit_detail", "admitting_source_value", ColumnType::Text),
    (
        "visit_detail",
        "discharge_to_concept_id",
        ColumnType::ConceptId,
    ),
    (
        "visit_detail",
        "discharge_to_source_value",
        ColumnType::Text,
    ),
    ("visit_detail", "visit_detail_parent_id", ColumnType::Id),
];

/// The contract's definition of `name`, if it is one of its tables.
/// A table's primary key: OMOP tables name it `<table>_id` in the first column
/// (`person.person_id`, `visit_occurrence.visit_occurrence_id`, `concept.concept_id`).
pub fn primary_key(table: &str, schema: &arrow::datatypes::Schema) -> Option<String> {
    let first = schema.fields().first()?.name();
    (first == &format!("{table}_id")).then(|| first.clone())
}

pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

/// The contract type of `column` in `table` (a CDM 5.3 name included), if both are known.
pub fn column_type(table: &str, column: &str) -> Option<ColumnType> {
    self::table(table)
        .and_then(|t| t.column(column))
        .map(|c| c.kind)
        .or_else(|| {
            CDM53_COLUMNS
                .iter()
                .find(|(t, c, _)| *t == table && *c == column)
                .map(|(_, _, kind)| *kind)
        })
}

/// The data group and tier of a table; a table outside the contract is `other`, registered.
pub fn placement(name: &str) -> (&'static str, Tier) {
    table(name).map_or(("other", Tier::Registered), |t| (t.group, t.tier))
}

/// Columns of `table` that demand the controlled tier even inside a registered table.
pub fn column_tiers(table: &str) -> BTreeMap<String, Tier> {
    self::table(table)
        .map(TableDef::column_tiers)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_unique_and_columns_follow_the_type_rules() {
        let mut names = std::collections::HashSet::new();
        for t in TABLES {
            assert!(names.insert(t.name), "{} defined twice", t.name);
            let mut columns = std::collections::HashSet::new();
            for c in t.columns {
                let n = c.name;
                assert!(columns.insert(n), "{}.{n} listed twice", t.name);
                if n.ends_with("concept_id") || n.starts_with("concept_id") {
                    assert_eq!(c.kind, ColumnType::ConceptId, "{}.{n}", t.name);
                }
                if n.ends_with("_datetime") || n == "datetime" {
                    assert_eq!(c.kind, ColumnType::Datetime, "{}.{n}", t.name);
                }
                if n.ends_with("_date") || n == "date" {
                    assert_eq!(c.kind, ColumnType::Date, "{}.{n}", t.name);
                }
                if n == PERSON_KEY || n.ends_with("_occurrence_id") {
                    assert_eq!(c.kind, ColumnType::Id, "{}.{n}", t.name);
                }
            }
        }
    }

    #[test]
    fn person_keyed_tables_are_exactly_those_with_a_person_id() {
        for t in TABLES {
            let has_person = t.column(PERSON_KEY).is_some();
            assert_eq!(t.person_key.is_some(), has_person, "{}", t.name);
            if let Some(key) = t.person_key {
                assert!(!t.column(key).unwrap().nullable, "{}.{key}", t.name);
            }
            let routed = t.layout != Layout::Single;
            assert_eq!(
                routed,
                has_person || t.layout == Layout::Contig,
                "{}",
                t.name
            );
            for c in t.controlled {
                assert!(t.column(c).is_some(), "{}.{c} is not a column", t.name);
            }
        }
    }

    #[test]
    fn placement_and_types() {
        assert_eq!(placement("concept"), ("vocabulary", Tier::Public));
        assert_eq!(placement("person"), ("ehr", Tier::Registered));
        assert_eq!(placement("genotype"), ("genomics", Tier::Controlled));
        assert_eq!(placement("my_table"), ("other", Tier::Registered));
        assert_eq!(column_tiers("person").len(), 4);
        assert!(column_tiers("measurement").is_empty());
        assert_eq!(
            column_type("visit_detail", "admitting_source_concept_id"),
            Some(ColumnType::ConceptId)
        );
        assert_eq!(column_type("person", "shoe_size"), None);
        // Allele frequency is undefined where no allele was called.
        assert!(Variant::DEF.column("gvs_all_af").unwrap().nullable);
    }
}
