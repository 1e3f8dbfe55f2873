//! The OMOP event domains: which table holds a domain's events and which of its columns are the
//! event's id, concept, source concept, type, start and end. Both cohort compilers (OHDSI Circe
//! and the program's Cohort Builder) read their domains from here.

/// How an event's end date follows from its row (the OHDSI convention, as Circe applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEnd {
    /// The column as is.
    Column(&'static str),
    /// The column, or the start date plus one day when it is NULL.
    OrNextDay(&'static str),
    /// The start date plus one day.
    NextDay,
    /// `COALESCE(drug_exposure_end_date, start + days_supply, start + 1)`.
    Drug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDomain {
    /// The Circe criteria key (`{"ConditionOccurrence": {…}}`).
    pub circe: &'static str,
    /// The Cohort Builder item `type` (`CONDITION`), where the program's builder offers one.
    pub cohort_builder: Option<&'static str>,
    pub table: &'static str,
    /// The event's row id; `None`: the person id (death).
    pub id: Option<&'static str>,
    pub concept: Option<&'static str>,
    pub source_concept: Option<&'static str>,
    pub type_concept: Option<&'static str>,
    pub start: &'static str,
    pub end: EventEnd,
    /// Whether the row carries a `visit_occurrence_id`.
    pub visit: bool,
}

pub const EVENT_DOMAINS: &[EventDomain] = &[
    EventDomain {
        circe: "ConditionOccurrence",
        cohort_builder: Some("CONDITION"),
        table: "condition_occurrence",
        id: Some("condition_occurrence_id"),
        concept: Some("condition_concept_id"),
        source_concept: Some("condition_source_concept_id"),
        type_concept: Some("condition_type_concept_id"),
        start: "condition_start_date",
        end: EventEnd::OrNextDay("condition_end_date"),
        visit: true,
    },
    EventDomain {
        circe: "DrugExposure",
        cohort_builder: Some("DRUG"),
        table: "drug_exposure",
        id: Some("drug_exposure_id"),
        concept: Some("drug_concept_id"),
        source_concept: Some("drug_source_concept_id"),
        type_concept: Some("drug_type_concept_id"),
        start: "drug_exposure_start_date",
        end: EventEnd::Drug,
        visit: true,
    },
    EventDomain {
        circe: "ProcedureOccurrence",
        cohort_builder: Some("PROCEDURE"),
        table: "procedure_occurrence",
        id: Some("procedure_occurrence_id"),
        concept: Some("procedure_concept_id"),
        source_concept: Some("procedure_source_concept_id"),
        type_concept: Some("procedure_type_concept_id"),
        start: "procedure_date",
        end: EventEnd::NextDay,
        visit: true,
    },
    EventDomain {
        circe: "Measurement",
        cohort_builder: Some("MEASUREMENT"),
        table: "measurement",
        id: Some("measurement_id"),
        concept: Some("measurement_concept_id"),
        source_concept: Some("measurement_source_concept_id"),
        type_concept: Some("measurement_type_concept_id"),
        start: "measurement_date",
        end: EventEnd::NextDay,
        visit: true,
    },
    EventDomain {
        circe: "Observation",
        cohort_builder: Some("OBSERVATION"),
        table: "observation",
        id: Some("observation_id"),
        concept: Some("observation_concept_id"),
        source_concept: Some("observation_source_concept_id"),
        type_concept: Some("observation_type_concept_id"),
        start: "observation_date",
        end: EventEnd::NextDay,
        visit: true,
    },
    EventDomain {
        circe: "VisitOccurrence",
        cohort_builder: Some("VISIT"),
        table: "visit_occurrence",
        id: Some("visit_occurrence_id"),
        concept: Some("visit_concept_id"),
        source_concept: Some("visit_source_concept_id"),
        type_concept: Some("visit_type_concept_id"),
        start: "visit_start_date",
        end: EventEnd::Column("visit_end_date"),
        visit: true,
    },
    EventDomain {
        circe: "DeviceExposure",
        cohort_builder: None,
        table: "device_exposure",
        id: Some("device_exposure_id"),
        concept: Some("device_concept_id"),
        source_concept: Some("device_source_concept_id"),
        type_concept: Some("device_type_concept_id"),
        start: "device_exposure_start_date",
        end: EventEnd::OrNextDay("device_exposure_end_date"),
        visit: true,
    },
    EventDomain {
        circe: "VisitDetail",
        cohort_builder: None,
        table: "visit_detail",
        id: Some("visit_detail_id"),
        concept: Some("visit_detail_concept_id"),
        source_concept: Some("visit_detail_source_concept_id"),
        type_concept: Some("visit_detail_type_concept_id"),
        start: "visit_detail_start_date",
        end: EventEnd::Column("visit_detail_end_date"),
        visit: true,
    },
    EventDomain {
        circe: "Specimen",
        cohort_builder: None,
        table: "specimen",
        id: Some("specimen_id"),
        concept: Some("specimen_concept_id"),
        source_concept: None,
        type_concept: Some("specimen_type_concept_id"),
        start: "specimen_date",
        end: EventEnd::NextDay,
        visit: false,
    },
    EventDomain {
        circe: "Death",
        cohort_builder: None,
        table: "death",
        id: None,
        concept: Some("cause_concept_id"),
        source_concept: Some("cause_source_concept_id"),
        type_concept: Some("death_type_concept_id"),
        start: "death_date",
        end: EventEnd::NextDay,
        visit: false,
    },
    EventDomain {
        circe: "ObservationPeriod",
        cohort_builder: None,
        table: "observation_period",
        id: Some("observation_period_id"),
        concept: None,
        source_concept: None,
        type_concept: Some("period_type_concept_id"),
        start: "observation_period_start_date",
        end: EventEnd::Column("observation_period_end_date"),
        visit: false,
    },
    EventDomain {
        circe: "ConditionEra",
        cohort_builder: None,
        table: "condition_era",
        id: Some("condition_era_id"),
        concept: Some("condition_concept_id"),
        source_concept: None,
        type_concept: None,
        start: "condition_era_start_date",
        end: EventEnd::Column("condition_era_end_date"),
        visit: false,
    },
    EventDomain {
        circe: "DrugEra",
        cohort_builder: None,
        table: "drug_era",
        id: Some("drug_era_id"),
        concept: Some("drug_concept_id"),
        source_concept: None,
        type_concept: None,
        start: "drug_era_start_date",
        end: EventEnd::Column("drug_era_end_date"),
        visit: false,
    },
];

/// The domain of a Circe criteria key, matched as Circe does (ignoring case).
pub fn circe_domain(key: &str) -> Option<&'static EventDomain> {
    EVENT_DOMAINS
        .iter()
        .find(|d| d.circe.eq_ignore_ascii_case(key))
}

/// The domain of a Cohort Builder item type (`CONDITION`, `DRUG`, …).
pub fn cohort_builder_domain(kind: &str) -> Option<&'static EventDomain> {
    EVENT_DOMAINS
        .iter()
        .find(|d| d.cohort_builder == Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{ColumnType, table};

    /// Every column a domain names is a column of its table, of the type the compilers cast.
    #[test]
    fn domains_name_columns_of_their_tables() {
        for d in EVENT_DOMAINS {
            let t = table(d.table).unwrap_or_else(|| panic!("{} is not a table", d.table));
            let has = |c: &str, kinds: &[ColumnType]| {
                let col = t.column(c).unwrap_or_else(|| panic!("{}.{c}", d.table));
                assert!(kinds.contains(&col.kind), "{}.{c}: {:?}", d.table, col.kind);
            };
            has(d.id.unwrap_or(crate::tables::PERSON_KEY), &[ColumnType::Id]);
            for c in [d.concept, d.source_concept, d.type_concept]
                .into_iter()
                .flatten()
            {
                has(c, &[ColumnType::ConceptId]);
            }
            has(d.start, &[ColumnType::Date]);
            if let EventEnd::Column(c) | EventEnd::OrNextDay(c) = d.end {
                has(c, &[ColumnType::Date]);
            }
            if d.visit {
                has("visit_occurrence_id", &[ColumnType::Id]);
            }
        }
        assert_eq!(
            cohort_builder_domain("DRUG").unwrap().table,
            "drug_exposure"
        );
        assert_eq!(
            circe_domain("conditionoccurrence").unwrap().table,
            "condition_occurrence"
        );
    }
}
