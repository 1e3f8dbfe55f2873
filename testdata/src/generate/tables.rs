//! The generated tables: the Tables contract's row builders (`strata_engine::tables`), the
//! participant tables in the order the generator fills and writes them, and the builders of one
//! chunk of participants.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
pub use strata_engine::tables::{
    ActivitySummary, Concept, ConceptAncestor, ConceptRelationship, ConditionOccurrence, Death,
    DrugExposure, DsSurvey, Genotype, HeartRateMinuteLevel, HeartRateSummary, Measurement,
    Observation, ObservationPeriod, Person, ProcedureOccurrence, SleepDailySummary, SleepLevel,
    StepsIntraday, Variant, VisitOccurrence,
};

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

/// The schema of one of [`PERSON_TABLES`].
pub fn person_table_schema(name: &str) -> SchemaRef {
    strata_engine::tables::table(name)
        .unwrap_or_else(|| panic!("not a contract table: {name}"))
        .schema()
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
