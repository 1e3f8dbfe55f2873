//! How the columns of an export are typed and which must be present, by the Tables contract
//! (`strata_engine::tables`). CSV columns of contract tables are read as their contract type
//! (CDM 5.3 names that 5.4 renamed included); Parquet keeps its own types.

use strata_engine::tables::{self, ColumnType, PERSON_KEY};

/// Columns a known table cannot do without, beyond its person key: the keys of the vocabulary
/// tables that every cohort query joins on.
const REQUIRED: &[(&str, &[&str])] = &[
    ("concept", &["concept_id"]),
    (
        "concept_ancestor",
        &["ancestor_concept_id", "descendant_concept_id"],
    ),
    (
        "concept_relationship",
        &["concept_id_1", "concept_id_2", "relationship_id"],
    ),
    ("concept_synonym", &["concept_id"]),
    ("vocabulary", &["vocabulary_id"]),
    ("domain", &["domain_id"]),
    ("concept_class", &["concept_class_id"]),
    ("relationship", &["relationship_id"]),
];

/// The CSV type of `column` in `table`: the contract type for known columns, `Int64` for a
/// `person_id` anywhere (it is the shard key), text for everything else.
pub fn column_type(table: &str, column: &str) -> ColumnType {
    tables::column_type(table, column).unwrap_or(if column == PERSON_KEY {
        ColumnType::Id
    } else {
        ColumnType::Text
    })
}

/// Columns that must be present for a known table.
pub fn required_columns(table: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = tables::table(table)
        .and_then(|t| t.person_key)
        .into_iter()
        .collect();
    if let Some((_, cols)) = REQUIRED.iter().find(|(t, _)| *t == table) {
        out.extend_from_slice(cols);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdm_types() {
        assert_eq!(column_type("person", "person_id"), ColumnType::Id);
        assert_eq!(
            column_type("person", "gender_concept_id"),
            ColumnType::ConceptId
        );
        assert_eq!(column_type("concept", "concept_code"), ColumnType::Text);
        assert_eq!(column_type("concept", "domain_id"), ColumnType::Text);
        assert_eq!(column_type("concept", "valid_start_date"), ColumnType::Date);
        assert_eq!(
            column_type("measurement", "value_as_number"),
            ColumnType::Number
        );
        assert_eq!(column_type("drug_exposure", "days_supply"), ColumnType::Int);
        assert_eq!(
            column_type("visit_occurrence", "visit_start_datetime"),
            ColumnType::Datetime
        );
        assert_eq!(column_type("person", "shoe_size"), ColumnType::Text);
        assert_eq!(column_type("my_table", "person_id"), ColumnType::Id);
        assert_eq!(column_type("my_table", "x_concept_id"), ColumnType::Text);
        assert_eq!(required_columns("person"), vec!["person_id"]);
        assert_eq!(required_columns("location"), Vec::<&str>::new());
    }
}
