//! Column builders and Arrow schemas of every generated table.
//!
//! Types follow the project contract (the same as `import omop` writes): row ids and
//! `person_id` Int64, every `*_concept_id` Int32, other OMOP integers (years, refills, days
//! supply, levels) Int32, dates Date32, datetimes Timestamp(µs, no zone), measured values Float64,
//! text Utf8. Wearable and genomic counts (steps, minutes, allele counts, positions) are Int64.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

macro_rules! builder_of {
    (I64) => {
        Int64Builder
    };
    (I32) => {
        Int32Builder
    };
    (F64) => {
        Float64Builder
    };
    (Str) => {
        StringBuilder
    };
    (Date) => {
        Date32Builder
    };
    (Ts) => {
        TimestampMicrosecondBuilder
    };
    (Bool) => {
        BooleanBuilder
    };
}

macro_rules! type_of {
    (I64) => {
        DataType::Int64
    };
    (I32) => {
        DataType::Int32
    };
    (F64) => {
        DataType::Float64
    };
    (Str) => {
        DataType::Utf8
    };
    (Date) => {
        DataType::Date32
    };
    (Ts) => {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    };
    (Bool) => {
        DataType::Boolean
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

/// Declares a table: a struct of one builder per column, its schema, and `finish`.
macro_rules! table {
    ($(#[$doc:meta])* $ty:ident = $name:literal { $($col:ident : $kind:ident $null:ident),* $(,)? }) => {
        $(#[$doc])*
        pub struct $ty {
            $(pub $col: builder_of!($kind),)*
        }

        impl $ty {
            pub const NAME: &'static str = $name;

            pub fn schema() -> SchemaRef {
                static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
                SCHEMA
                    .get_or_init(|| {
                        Arc::new(Schema::new(vec![
                            $(Field::new(stringify!($col), type_of!($kind), nullable!($null)),)*
                        ]))
                    })
                    .clone()
            }

            pub fn new() -> Self {
                $ty { $($col: <builder_of!($kind)>::new(),)* }
            }

            #[allow(dead_code)]
            pub fn len(&self) -> usize {
                let mut n = 0;
                $(n = n.max(self.$col.len());)*
                n
            }

            #[allow(dead_code)]
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The rows appended so far as one batch; the builders start over empty.
            pub fn finish(&mut self) -> RecordBatch {
                let columns: Vec<ArrayRef> = vec![$(Arc::new(self.$col.finish()),)*];
                RecordBatch::try_new(Self::schema(), columns)
                    .unwrap_or_else(|e| panic!("table {}: inconsistent columns: {e}", $name))
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

// ------------------------------------------------------------------------------------------------
// Vocabulary
// ------------------------------------------------------------------------------------------------

table!(Concept = "concept" {
    concept_id: I32 req, concept_name: Str req, domain_id: Str req, vocabulary_id: Str req,
    concept_class_id: Str req, standard_concept: Str opt, concept_code: Str req,
    valid_start_date: Date req, valid_end_date: Date req, invalid_reason: Str opt,
});

table!(ConceptAncestor = "concept_ancestor" {
    ancestor_concept_id: I32 req, descendant_concept_id: I32 req,
    min_levels_of_separation: I32 req, max_levels_of_separation: I32 req,
});

table!(ConceptRelationship = "concept_relationship" {
    concept_id_1: I32 req, concept_id_2: I32 req, relationship_id: Str req,
    valid_start_date: Date req, valid_end_date: Date req, invalid_reason: Str opt,
});

// ------------------------------------------------------------------------------------------------
// EHR (OMOP CDM 5.4)
// ------------------------------------------------------------------------------------------------

table!(Person = "person" {
    person_id: I64 req, gender_concept_id: I32 req, year_of_birth: I32 req,
    month_of_birth: I32 opt, day_of_birth: I32 opt, birth_datetime: Ts opt,
    race_concept_id: I32 req, ethnicity_concept_id: I32 req, location_id: I64 opt,
    provider_id: I64 opt, care_site_id: I64 opt, person_source_value: Str opt,
    gender_source_value: Str opt, gender_source_concept_id: I32 opt, race_source_value: Str opt,
    race_source_concept_id: I32 opt, ethnicity_source_value: Str opt,
    ethnicity_source_concept_id: I32 opt,
});

table!(ObservationPeriod = "observation_period" {
    observation_period_id: I64 req, person_id: I64 req, observation_period_start_date: Date req,
    observation_period_end_date: Date req, period_type_concept_id: I32 req,
});

table!(VisitOccurrence = "visit_occurrence" {
    visit_occurrence_id: I64 req, person_id: I64 req, visit_concept_id: I32 req,
    visit_start_date: Date req, visit_start_datetime: Ts opt, visit_end_date: Date req,
    visit_end_datetime: Ts opt, visit_type_concept_id: I32 req, provider_id: I64 opt,
    care_site_id: I64 opt, visit_source_value: Str opt, visit_source_concept_id: I32 opt,
    admitted_from_concept_id: I32 opt, admitted_from_source_value: Str opt,
    discharged_to_concept_id: I32 opt, discharged_to_source_value: Str opt,
    preceding_visit_occurrence_id: I64 opt,
});

table!(ConditionOccurrence = "condition_occurrence" {
    condition_occurrence_id: I64 req, person_id: I64 req, condition_concept_id: I32 req,
    condition_start_date: Date req, condition_start_datetime: Ts opt, condition_end_date: Date opt,
    condition_end_datetime: Ts opt, condition_type_concept_id: I32 req,
    condition_status_concept_id: I32 opt, stop_reason: Str opt, provider_id: I64 opt,
    visit_occurrence_id: I64 opt, visit_detail_id: I64 opt, condition_source_value: Str opt,
    condition_source_concept_id: I32 opt, condition_status_source_value: Str opt,
});

table!(DrugExposure = "drug_exposure" {
    drug_exposure_id: I64 req, person_id: I64 req, drug_concept_id: I32 req,
    drug_exposure_start_date: Date req, drug_exposure_start_datetime: Ts opt,
    drug_exposure_end_date: Date req, drug_exposure_end_datetime: Ts opt,
    verbatim_end_date: Date opt, drug_type_concept_id: I32 req, stop_reason: Str opt,
    refills: I32 opt, quantity: F64 opt, days_supply: I32 opt, sig: Str opt,
    route_concept_id: I32 opt, lot_number: Str opt, provider_id: I64 opt,
    visit_occurrence_id: I64 opt, visit_detail_id: I64 opt, drug_source_value: Str opt,
    drug_source_concept_id: I32 opt, route_source_value: Str opt, dose_unit_source_value: Str opt,
});

table!(ProcedureOccurrence = "procedure_occurrence" {
    procedure_occurrence_id: I64 req, person_id: I64 req, procedure_concept_id: I32 req,
    procedure_date: Date req, procedure_datetime: Ts opt, procedure_end_date: Date opt,
    procedure_end_datetime: Ts opt, procedure_type_concept_id: I32 req,
    modifier_concept_id: I32 opt, quantity: I32 opt, provider_id: I64 opt,
    visit_occurrence_id: I64 opt, visit_detail_id: I64 opt, procedure_source_value: Str opt,
    procedure_source_concept_id: I32 opt, modifier_source_value: Str opt,
});

table!(Measurement = "measurement" {
    measurement_id: I64 req, person_id: I64 req, measurement_concept_id: I32 req,
    measurement_date: Date req, measurement_datetime: Ts opt, measurement_time: Str opt,
    measurement_type_concept_id: I32 req, operator_concept_id: I32 opt, value_as_number: F64 opt,
    value_as_concept_id: I32 opt, unit_concept_id: I32 opt, range_low: F64 opt,
    range_high: F64 opt, provider_id: I64 opt, visit_occurrence_id: I64 opt,
    visit_detail_id: I64 opt, measurement_source_value: Str opt,
    measurement_source_concept_id: I32 opt, unit_source_value: Str opt,
    unit_source_concept_id: I32 opt, value_source_value: Str opt, measurement_event_id: I64 opt,
    meas_event_field_concept_id: I32 opt,
});

table!(Observation = "observation" {
    observation_id: I64 req, person_id: I64 req, observation_concept_id: I32 req,
    observation_date: Date req, observation_datetime: Ts opt, observation_type_concept_id: I32 req,
    value_as_number: F64 opt, value_as_string: Str opt, value_as_concept_id: I32 opt,
    qualifier_concept_id: I32 opt, unit_concept_id: I32 opt, provider_id: I64 opt,
    visit_occurrence_id: I64 opt, visit_detail_id: I64 opt, observation_source_value: Str opt,
    observation_source_concept_id: I32 opt, unit_source_value: Str opt,
    qualifier_source_value: Str opt, value_source_value: Str opt, observation_event_id: I64 opt,
    obs_event_field_concept_id: I32 opt,
});

table!(Death = "death" {
    person_id: I64 req, death_date: Date req, death_datetime: Ts opt,
    death_type_concept_id: I32 opt, cause_concept_id: I32 opt, cause_source_value: Str opt,
    cause_source_concept_id: I32 opt,
});

// ------------------------------------------------------------------------------------------------
// Surveys
// ------------------------------------------------------------------------------------------------

table!(DsSurvey = "ds_survey" {
    person_id: I64 req, survey_datetime: Ts req, survey: Str req, question_concept_id: I32 req,
    question: Str req, answer_concept_id: I32 req, answer: Str req,
});

// ------------------------------------------------------------------------------------------------
// Wearables (Fitbit, as in the program's curated data)
// ------------------------------------------------------------------------------------------------

table!(ActivitySummary = "activity_summary" {
    person_id: I64 req, date: Date req, activity_calories: F64 opt, calories_bmr: F64 opt,
    calories_out: F64 opt, elevation: F64 opt, fairly_active_minutes: I64 opt, floors: I64 opt,
    lightly_active_minutes: I64 opt, marginal_calories: F64 opt, sedentary_minutes: I64 opt,
    steps: I64 opt, very_active_minutes: I64 opt,
});

table!(HeartRateMinuteLevel = "heart_rate_minute_level" {
    person_id: I64 req, datetime: Ts req, heart_rate_value: I64 req,
});

table!(HeartRateSummary = "heart_rate_summary" {
    person_id: I64 req, date: Date req, zone_name: Str req, min_heart_rate: I64 opt,
    max_heart_rate: I64 opt, minute_count: I64 opt, calorie_count: F64 opt,
});

table!(StepsIntraday = "steps_intraday" {
    person_id: I64 req, datetime: Ts req, steps: I64 req,
});

table!(SleepDailySummary = "sleep_daily_summary" {
    person_id: I64 req, sleep_date: Date req, is_main_sleep: Bool req, minute_in_bed: I64 opt,
    minute_asleep: I64 opt, minute_after_wakeup: I64 opt, minute_awake: I64 opt,
    minute_restless: I64 opt, minute_deep: I64 opt, minute_light: I64 opt, minute_rem: I64 opt,
    minute_wake: I64 opt,
});

table!(SleepLevel = "sleep_level" {
    person_id: I64 req, sleep_date: Date req, is_main_sleep: Bool req, level: Str req,
    start_datetime: Ts req, duration_in_min: I64 req,
});

// ------------------------------------------------------------------------------------------------
// Genomics
// ------------------------------------------------------------------------------------------------

table!(Variant = "variant" {
    vid: Str req, contig: Str req, position: I64 req, ref_allele: Str req, alt_allele: Str req,
    gene_symbol: Str opt, consequence: Str opt, dbsnp_rsid: Str opt,
    clinvar_classification: Str opt, gvs_all_ac: I64 req, gvs_all_an: I64 req,
    gvs_all_af: F64 req,
});

table!(Genotype = "genotype" {
    person_id: I64 req, vid: Str req, contig: Str req, position: I64 req, gt: Str req,
});

/// The participant tables, in the order the generator fills and writes them.
pub const PERSON_TABLES: [&str; 16] = [
    Person::NAME,
    ObservationPeriod::NAME,
    VisitOccurrence::NAME,
    ConditionOccurrence::NAME,
    DrugExposure::NAME,
    ProcedureOccurrence::NAME,
    Measurement::NAME,
    Observation::NAME,
    Death::NAME,
    DsSurvey::NAME,
    ActivitySummary::NAME,
    HeartRateMinuteLevel::NAME,
    HeartRateSummary::NAME,
    StepsIntraday::NAME,
    SleepDailySummary::NAME,
    SleepLevel::NAME,
];

pub fn person_table_schema(name: &str) -> SchemaRef {
    match name {
        Person::NAME => Person::schema(),
        ObservationPeriod::NAME => ObservationPeriod::schema(),
        VisitOccurrence::NAME => VisitOccurrence::schema(),
        ConditionOccurrence::NAME => ConditionOccurrence::schema(),
        DrugExposure::NAME => DrugExposure::schema(),
        ProcedureOccurrence::NAME => ProcedureOccurrence::schema(),
        Measurement::NAME => Measurement::schema(),
        Observation::NAME => Observation::schema(),
        Death::NAME => Death::schema(),
        DsSurvey::NAME => DsSurvey::schema(),
        ActivitySummary::NAME => ActivitySummary::schema(),
        HeartRateMinuteLevel::NAME => HeartRateMinuteLevel::schema(),
        HeartRateSummary::NAME => HeartRateSummary::schema(),
        StepsIntraday::NAME => StepsIntraday::schema(),
        SleepDailySummary::NAME => SleepDailySummary::schema(),
        SleepLevel::NAME => SleepLevel::schema(),
        other => panic!("not a participant table: {other}"),
    }
}

/// Builders of all participant tables for one chunk of participants.
#[derive(Default)]
pub struct ChunkTables {
    pub person: Person,
    pub observation_period: ObservationPeriod,
    pub visit_occurrence: VisitOccurrence,
    pub condition_occurrence: ConditionOccurrence,
    pub drug_exposure: DrugExposure,
    pub procedure_occurrence: ProcedureOccurrence,
    pub measurement: Measurement,
    pub observation: Observation,
    pub death: Death,
    pub ds_survey: DsSurvey,
    pub activity_summary: ActivitySummary,
    pub heart_rate_minute_level: HeartRateMinuteLevel,
    pub heart_rate_summary: HeartRateSummary,
    pub steps_intraday: StepsIntraday,
    pub sleep_daily_summary: SleepDailySummary,
    pub sleep_level: SleepLevel,
}

impl ChunkTables {
    /// One batch per table, in the order of [`PERSON_TABLES`].
    pub fn finish(&mut self) -> Vec<RecordBatch> {
        vec![
            self.person.finish(),
            self.observation_period.finish(),
            self.visit_occurrence.finish(),
            self.condition_occurrence.finish(),
            self.drug_exposure.finish(),
            self.procedure_occurrence.finish(),
            self.measurement.finish(),
            self.observation.finish(),
            self.death.finish(),
            self.ds_survey.finish(),
            self.activity_summary.finish(),
            self.heart_rate_minute_level.finish(),
            self.heart_rate_summary.finish(),
            self.steps_intraday.finish(),
            self.sleep_daily_summary.finish(),
            self.sleep_level.finish(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_follow_the_type_contract() {
        for name in PERSON_TABLES {
            let schema = person_table_schema(name);
            for f in schema.fields() {
                let n = f.name();
                let t = f.data_type();
                if n == "person_id" || n.ends_with("_occurrence_id") || n == "measurement_id" {
                    assert_eq!(t, &DataType::Int64, "{name}.{n}");
                }
                if n.ends_with("_concept_id") {
                    assert_eq!(t, &DataType::Int32, "{name}.{n}");
                }
                if n.ends_with("_date") || n == "date" {
                    assert_eq!(t, &DataType::Date32, "{name}.{n}");
                }
                if n.ends_with("datetime") {
                    assert_eq!(
                        t,
                        &DataType::Timestamp(TimeUnit::Microsecond, None),
                        "{name}.{n}"
                    );
                }
            }
        }
    }
}
