//! The OMOP CDM 5.4 column types, for typing CSV exports (Parquet keeps its own types).
//!
//! Every table lists its columns as `name:code`; a bare name is text. Codes: `I` id (Int64),
//! `C` concept id (Int32), `N` other integer (Int32: years, counts, days), `D` date (Date32),
//! `T` datetime (Timestamp µs, no time zone), `F` numeric value (Float64). Columns that CDM 5.3
//! had and 5.4 renamed (`admitting_source_concept_id`, `discharge_to_concept_id`, …) are listed
//! too, so 5.3 exports are typed as well. Text ids of the vocabulary (`domain_id`,
//! `vocabulary_id`, `concept_class_id`, `relationship_id`) and string identifiers
//! (`unique_device_id`, `npi`, `specimen_source_id`, `concept_code`) stay text.

use arrow::datatypes::{DataType, TimeUnit};

/// The type a CSV column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Id,
    ConceptId,
    Integer,
    Date,
    DateTime,
    Number,
    Text,
}

impl ColType {
    fn from_code(code: &str) -> ColType {
        match code {
            "I" => ColType::Id,
            "C" => ColType::ConceptId,
            "N" => ColType::Integer,
            "D" => ColType::Date,
            "T" => ColType::DateTime,
            "F" => ColType::Number,
            _ => ColType::Text,
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            ColType::Id => DataType::Int64,
            ColType::ConceptId | ColType::Integer => DataType::Int32,
            ColType::Date => DataType::Date32,
            ColType::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColType::Number => DataType::Float64,
            ColType::Text => DataType::Utf8,
        }
    }
}

const TABLES: &[(&str, &str)] = &[
    // Clinical data
    (
        "person",
        "person_id:I gender_concept_id:C year_of_birth:N month_of_birth:N day_of_birth:N \
         birth_datetime:T race_concept_id:C ethnicity_concept_id:C location_id:I provider_id:I \
         care_site_id:I person_source_value gender_source_value gender_source_concept_id:C \
         race_source_value race_source_concept_id:C ethnicity_source_value \
         ethnicity_source_concept_id:C",
    ),
    (
        "observation_period",
        "observation_period_id:I person_id:I observation_period_start_date:D \
         observation_period_end_date:D period_type_concept_id:C",
    ),
    (
        "visit_occurrence",
        "visit_occurrence_id:I person_id:I visit_concept_id:C visit_start_date:D \
         visit_start_datetime:T visit_end_date:D visit_end_datetime:T visit_type_concept_id:C \
         provider_id:I care_site_id:I visit_source_value visit_source_concept_id:C \
         admitted_from_concept_id:C admitted_from_source_value discharged_to_concept_id:C \
         discharged_to_source_value preceding_visit_occurrence_id:I \
         admitting_source_concept_id:C admitting_source_value discharge_to_concept_id:C \
         discharge_to_source_value",
    ),
    (
        "visit_detail",
        "visit_detail_id:I person_id:I visit_detail_concept_id:C visit_detail_start_date:D \
         visit_detail_start_datetime:T visit_detail_end_date:D visit_detail_end_datetime:T \
         visit_detail_type_concept_id:C provider_id:I care_site_id:I visit_detail_source_value \
         visit_detail_source_concept_id:C admitted_from_concept_id:C admitted_from_source_value \
         discharged_to_source_value discharged_to_concept_id:C preceding_visit_detail_id:I \
         parent_visit_detail_id:I visit_occurrence_id:I admitting_source_concept_id:C \
         admitting_source_value discharge_to_concept_id:C discharge_to_source_value \
         visit_detail_parent_id:I",
    ),
    (
        "condition_occurrence",
        "condition_occurrence_id:I person_id:I condition_concept_id:C condition_start_date:D \
         condition_start_datetime:T condition_end_date:D condition_end_datetime:T \
         condition_type_concept_id:C condition_status_concept_id:C stop_reason provider_id:I \
         visit_occurrence_id:I visit_detail_id:I condition_source_value \
         condition_source_concept_id:C condition_status_source_value",
    ),
    (
        "drug_exposure",
        "drug_exposure_id:I person_id:I drug_concept_id:C drug_exposure_start_date:D \
         drug_exposure_start_datetime:T drug_exposure_end_date:D drug_exposure_end_datetime:T \
         verbatim_end_date:D drug_type_concept_id:C stop_reason refills:N quantity:F \
         days_supply:N sig route_concept_id:C lot_number provider_id:I visit_occurrence_id:I \
         visit_detail_id:I drug_source_value drug_source_concept_id:C route_source_value \
         dose_unit_source_value",
    ),
    (
        "procedure_occurrence",
        "procedure_occurrence_id:I person_id:I procedure_concept_id:C procedure_date:D \
         procedure_datetime:T procedure_end_date:D procedure_end_datetime:T \
         procedure_type_concept_id:C modifier_concept_id:C quantity:N provider_id:I \
         visit_occurrence_id:I visit_detail_id:I procedure_source_value \
         procedure_source_concept_id:C modifier_source_value",
    ),
    (
        "device_exposure",
        "device_exposure_id:I person_id:I device_concept_id:C device_exposure_start_date:D \
         device_exposure_start_datetime:T device_exposure_end_date:D \
         device_exposure_end_datetime:T device_type_concept_id:C unique_device_id production_id \
         quantity:N provider_id:I visit_occurrence_id:I visit_detail_id:I device_source_value \
         device_source_concept_id:C unit_concept_id:C unit_source_value \
         unit_source_concept_id:C",
    ),
    (
        "measurement",
        "measurement_id:I person_id:I measurement_concept_id:C measurement_date:D \
         measurement_datetime:T measurement_time measurement_type_concept_id:C \
         operator_concept_id:C value_as_number:F value_as_concept_id:C unit_concept_id:C \
         range_low:F range_high:F provider_id:I visit_occurrence_id:I visit_detail_id:I \
         measurement_source_value measurement_source_concept_id:C unit_source_value \
         unit_source_concept_id:C value_source_value measurement_event_id:I \
         meas_event_field_concept_id:C",
    ),
    (
        "observation",
        "observation_id:I person_id:I observation_concept_id:C observation_date:D \
         observation_datetime:T observation_type_concept_id:C value_as_number:F value_as_string \
         value_as_concept_id:C qualifier_concept_id:C unit_concept_id:C provider_id:I \
         visit_occurrence_id:I visit_detail_id:I observation_source_value \
         observation_source_concept_id:C unit_source_value qualifier_source_value \
         value_source_value observation_event_id:I obs_event_field_concept_id:C",
    ),
    (
        "death",
        "person_id:I death_date:D death_datetime:T death_type_concept_id:C cause_concept_id:C \
         cause_source_value cause_source_concept_id:C",
    ),
    (
        "note",
        "note_id:I person_id:I note_date:D note_datetime:T note_type_concept_id:C \
         note_class_concept_id:C note_title note_text encoding_concept_id:C \
         language_concept_id:C provider_id:I visit_occurrence_id:I visit_detail_id:I \
         note_source_value note_event_id:I note_event_field_concept_id:C",
    ),
    (
        "note_nlp",
        "note_nlp_id:I note_id:I section_concept_id:C snippet offset lexical_variant \
         note_nlp_concept_id:C note_nlp_source_concept_id:C nlp_system nlp_date:D \
         nlp_datetime:T term_exists term_temporal term_modifiers",
    ),
    (
        "specimen",
        "specimen_id:I person_id:I specimen_concept_id:C specimen_type_concept_id:C \
         specimen_date:D specimen_datetime:T quantity:F unit_concept_id:C \
         anatomic_site_concept_id:C disease_status_concept_id:C specimen_source_id \
         specimen_source_value unit_source_value anatomic_site_source_value \
         disease_status_source_value",
    ),
    (
        "fact_relationship",
        "domain_concept_id_1:C fact_id_1:I domain_concept_id_2:C fact_id_2:I \
         relationship_concept_id:C",
    ),
    // Health system
    (
        "location",
        "location_id:I address_1 address_2 city state zip county location_source_value \
         country_concept_id:C country_source_value latitude:F longitude:F",
    ),
    (
        "care_site",
        "care_site_id:I care_site_name place_of_service_concept_id:C location_id:I \
         care_site_source_value place_of_service_source_value",
    ),
    (
        "provider",
        "provider_id:I provider_name npi dea specialty_concept_id:C care_site_id:I \
         year_of_birth:N gender_concept_id:C provider_source_value specialty_source_value \
         specialty_source_concept_id:C gender_source_value gender_source_concept_id:C",
    ),
    // Health economics
    (
        "payer_plan_period",
        "payer_plan_period_id:I person_id:I payer_plan_period_start_date:D \
         payer_plan_period_end_date:D payer_concept_id:C payer_source_value \
         payer_source_concept_id:C plan_concept_id:C plan_source_value plan_source_concept_id:C \
         sponsor_concept_id:C sponsor_source_value sponsor_source_concept_id:C \
         family_source_value stop_reason_concept_id:C stop_reason_source_value \
         stop_reason_source_concept_id:C",
    ),
    (
        "cost",
        "cost_id:I cost_event_id:I cost_domain_id cost_type_concept_id:C currency_concept_id:C \
         total_charge:F total_cost:F total_paid:F paid_by_payer:F paid_by_patient:F \
         paid_patient_copay:F paid_patient_coinsurance:F paid_patient_deductible:F \
         paid_by_primary:F paid_ingredient_cost:F paid_dispensing_fee:F payer_plan_period_id:I \
         amount_allowed:F revenue_code_concept_id:C revenue_code_source_value drg_concept_id:C \
         drg_source_value",
    ),
    // Derived elements
    (
        "drug_era",
        "drug_era_id:I person_id:I drug_concept_id:C drug_era_start_date:D drug_era_end_date:D \
         drug_exposure_count:N gap_days:N",
    ),
    (
        "dose_era",
        "dose_era_id:I person_id:I drug_concept_id:C unit_concept_id:C dose_value:F \
         dose_era_start_date:D dose_era_end_date:D",
    ),
    (
        "condition_era",
        "condition_era_id:I person_id:I condition_concept_id:C condition_era_start_date:D \
         condition_era_end_date:D condition_occurrence_count:N",
    ),
    (
        "episode",
        "episode_id:I person_id:I episode_concept_id:C episode_start_date:D \
         episode_start_datetime:T episode_end_date:D episode_end_datetime:T episode_parent_id:I \
         episode_number:N episode_object_concept_id:C episode_type_concept_id:C \
         episode_source_value episode_source_concept_id:C",
    ),
    (
        "episode_event",
        "episode_id:I event_id:I episode_event_field_concept_id:C",
    ),
    // Metadata
    (
        "metadata",
        "metadata_id:I metadata_concept_id:C metadata_type_concept_id:C name value_as_string \
         value_as_concept_id:C value_as_number:F metadata_date:D metadata_datetime:T",
    ),
    (
        "cdm_source",
        "cdm_source_name cdm_source_abbreviation cdm_holder source_description \
         source_documentation_reference cdm_etl_reference source_release_date:D \
         cdm_release_date:D cdm_version cdm_version_concept_id:C vocabulary_version",
    ),
    // Vocabulary
    (
        "concept",
        "concept_id:C concept_name domain_id vocabulary_id concept_class_id standard_concept \
         concept_code valid_start_date:D valid_end_date:D invalid_reason",
    ),
    (
        "vocabulary",
        "vocabulary_id vocabulary_name vocabulary_reference vocabulary_version \
         vocabulary_concept_id:C",
    ),
    ("domain", "domain_id domain_name domain_concept_id:C"),
    (
        "concept_class",
        "concept_class_id concept_class_name concept_class_concept_id:C",
    ),
    (
        "concept_relationship",
        "concept_id_1:C concept_id_2:C relationship_id valid_start_date:D valid_end_date:D \
         invalid_reason",
    ),
    (
        "relationship",
        "relationship_id relationship_name is_hierarchical defines_ancestry \
         reverse_relationship_id relationship_concept_id:C",
    ),
    (
        "concept_synonym",
        "concept_id:C concept_synonym_name language_concept_id:C",
    ),
    (
        "concept_ancestor",
        "ancestor_concept_id:C descendant_concept_id:C min_levels_of_separation:N \
         max_levels_of_separation:N",
    ),
    (
        "source_to_concept_map",
        "source_code source_concept_id:C source_vocabulary_id source_code_description \
         target_concept_id:C target_vocabulary_id valid_start_date:D valid_end_date:D \
         invalid_reason",
    ),
    (
        "drug_strength",
        "drug_concept_id:C ingredient_concept_id:C amount_value:F amount_unit_concept_id:C \
         numerator_value:F numerator_unit_concept_id:C denominator_value:F \
         denominator_unit_concept_id:C box_size:N valid_start_date:D valid_end_date:D \
         invalid_reason",
    ),
    // Results schema tables that exports often carry along
    (
        "cohort",
        "cohort_definition_id:I subject_id:I cohort_start_date:D cohort_end_date:D",
    ),
    (
        "cohort_definition",
        "cohort_definition_id:I cohort_definition_name cohort_definition_description \
         definition_type_concept_id:C cohort_definition_syntax subject_concept_id:C \
         cohort_initiation_date:D",
    ),
    // The program's survey table (DESIGN.md "Tables")
    (
        "ds_survey",
        "person_id:I survey_datetime:T survey question_concept_id:C question \
         answer_concept_id:C answer",
    ),
];

/// Columns a known table cannot do without: its participant key, or the keys of the
/// vocabulary tables that every cohort query joins on.
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

fn columns(table: &str) -> Option<&'static str> {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, c)| *c)
}

/// Whether `table` is one of the OMOP CDM (or program) tables listed here.
pub fn is_known_table(table: &str) -> bool {
    columns(table).is_some()
}

/// The CSV type of `column` in `table`: the CDM type for known columns, `Int64` for a
/// `person_id` anywhere (it is the shard key), text for everything else.
pub fn column_type(table: &str, column: &str) -> ColType {
    if let Some(spec) = columns(table) {
        for entry in spec.split_whitespace() {
            let (name, code) = entry.split_once(':').unwrap_or((entry, ""));
            if name == column {
                return ColType::from_code(code);
            }
        }
    }
    if column == "person_id" {
        ColType::Id
    } else {
        ColType::Text
    }
}

/// Columns that must be present for a known table.
pub fn required_columns(table: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Some(spec) = columns(table)
        && spec.split_whitespace().any(|e| e == "person_id:I")
    {
        out.push("person_id");
    }
    if let Some((_, cols)) = REQUIRED.iter().find(|(t, _)| *t == table) {
        out.extend_from_slice(cols);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_is_well_formed() {
        for (table, spec) in TABLES {
            let mut seen = std::collections::HashSet::new();
            for entry in spec.split_whitespace() {
                let (name, code) = entry.split_once(':').unwrap_or((entry, ""));
                assert!(seen.insert(name), "{table}.{name} listed twice");
                assert!(
                    ["", "I", "C", "N", "D", "T", "F"].contains(&code),
                    "{table}.{name}"
                );
                if name.ends_with("_concept_id") {
                    assert_eq!(code, "C", "{table}.{name}");
                }
                if name.ends_with("_datetime") {
                    assert_eq!(code, "T", "{table}.{name}");
                }
            }
        }
    }

    #[test]
    fn cdm_types() {
        assert_eq!(column_type("person", "person_id"), ColType::Id);
        assert_eq!(
            column_type("person", "gender_concept_id"),
            ColType::ConceptId
        );
        assert_eq!(column_type("concept", "concept_code"), ColType::Text);
        assert_eq!(column_type("concept", "domain_id"), ColType::Text);
        assert_eq!(column_type("concept", "valid_start_date"), ColType::Date);
        assert_eq!(
            column_type("measurement", "value_as_number"),
            ColType::Number
        );
        assert_eq!(
            column_type("drug_exposure", "days_supply"),
            ColType::Integer
        );
        assert_eq!(
            column_type("visit_occurrence", "visit_start_datetime"),
            ColType::DateTime
        );
        assert_eq!(column_type("person", "shoe_size"), ColType::Text);
        assert_eq!(column_type("my_table", "person_id"), ColType::Id);
        assert_eq!(column_type("my_table", "x_concept_id"), ColType::Text);
        assert_eq!(required_columns("person"), vec!["person_id"]);
        assert_eq!(required_columns("location"), Vec::<&str>::new());
    }
}
