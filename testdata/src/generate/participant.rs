//! One participant, start to finish: demographics, genome, health, EHR, surveys, wearables,
//! written into the chunk's table builders in a fixed order (rows of each table sorted by date,
//! ids numbered in that order).

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::RecordBatch;

use super::ehr::{
    self, MeasurementRow, ObservationRow, Physiology, Rows, measurement_spec, row_id,
};
use super::fitbit;
use super::genomics;
use super::ids::*;
use super::people::{Demographics, PLANTED, Race, demographics};
use super::rng::{at, chance, int_in, rng_for, stream};
use super::survey::{self, HealthSummary, RACE};
use super::tables::{
    ChunkTables, ConditionOccurrence, DrugExposure, Measurement, Observation, ProcedureOccurrence,
    VisitOccurrence,
};

pub struct Context<'a> {
    pub seed: u64,
    pub planted: &'a BTreeMap<i64, Vec<usize>>,
    /// Planted dominant contributors (see `people::dominant_contributors`).
    pub dominant: &'a std::collections::BTreeSet<i64>,
}

/// The output of a chunk of participants.
pub struct ChunkOutput {
    /// One batch per participant table, in the order of `tables::PERSON_TABLES`.
    pub batches: Vec<RecordBatch>,
    /// Sequenced participants of the chunk, ascending.
    pub sequenced: Vec<i64>,
    /// `(named variant, person_id, alternate allele count)` of sequenced carriers.
    pub named_calls: Vec<(usize, i64, u8)>,
}

pub fn generate_chunk(ctx: &Context, first: i64, last: i64) -> ChunkOutput {
    let mut tables = ChunkTables::default();
    let mut sequenced = Vec::new();
    let mut named_calls = Vec::new();
    for pid in first..=last {
        participant(ctx, pid, &mut tables, &mut sequenced, &mut named_calls);
    }
    ChunkOutput {
        batches: tables.finish(),
        sequenced,
        named_calls,
    }
}

fn participant(
    ctx: &Context,
    pid: i64,
    out: &mut ChunkTables,
    sequenced: &mut Vec<i64>,
    named_calls: &mut Vec<(usize, i64, u8)>,
) {
    let d = demographics(ctx.seed, pid);
    let planted: &[usize] = ctx.planted.get(&pid).map(Vec::as_slice).unwrap_or(&[]);
    let cystic_fibrosis = planted
        .iter()
        .any(|g| PLANTED[*g].concept_id == CYSTIC_FIBROSIS);
    let genome = genomics::person_genome(ctx.seed, &d, cystic_fibrosis);
    if d.has_wgs {
        sequenced.push(pid);
        for (v, &count) in genome.alt.iter().enumerate() {
            if count > 0 {
                named_calls.push((v, pid, count));
            }
        }
    }

    let mut rng = rng_for(ctx.seed, stream::CLINICAL, pid as u64);
    let traits = ehr::draw_traits(&mut rng, &d, &genome);
    let window = d.has_ehr.then(|| ehr::ehr_window(&mut rng, &d));
    let health = ehr::draw_health(&mut rng, &d, &traits, &genome, planted, window);
    let mut rows = match window {
        Some(w) => ehr::simulate(&mut rng, &d, &traits, &health, w),
        None => Rows::default(),
    };
    if ctx.dominant.contains(&pid) {
        for r in rows
            .drugs
            .iter_mut()
            .filter(|r| r.drug.concept == OMEPRAZOLE)
        {
            r.drug.quantity = super::people::DOMINANT_QUANTITY;
        }
    }
    let physiology = Physiology {
        d: &d,
        t: &traits,
        h: &health,
    };
    if chance(&mut rng, 0.9) {
        ehr::physical_measurements(&mut rng, &physiology, &mut rows);
    }
    let cause = d.death.and_then(|_| ehr::cause_of_death(&mut rng, &health));
    let death_secs = int_in(&mut rng, 0, 86_399);

    // Surveys: in `ds_survey` and, as OMOP does, in `observation`.
    let mut srng = rng_for(ctx.seed, stream::SURVEY, pid as u64);
    let summary = HealthSummary {
        chronic: health.chronic_count_by(d.enroll),
        depression_or_anxiety: health.has_by(DEPRESSIVE_DISORDER, d.enroll)
            || health.has_by(ANXIETY_DISORDER, d.enroll),
    };
    let mut responses = survey::respond(&mut srng, &d, &summary);
    responses.sort_by_key(|r| (r.day, r.secs));
    for r in &responses {
        let s = &mut out.ds_survey;
        s.person_id.append_value(pid);
        s.survey_datetime.append_value(at(r.day, r.secs));
        s.survey.append_value(r.question.survey.name);
        s.question_concept_id.append_value(r.question.id);
        s.question.append_value(r.question.text);
        s.answer_concept_id.append_value(r.answer.id);
        s.answer.append_value(r.answer.text);
        rows.observations.push(ObservationRow {
            day: r.day,
            secs: r.secs,
            concept: r.question.id,
            type_concept: TYPE_SURVEY,
            value_string: Some(r.answer.text),
            value_concept: Some(r.answer.id),
            visit: None,
            source: r.question.code,
            source_concept: r.question.id,
            value_source: Some(r.answer.code),
        });
    }

    if d.has_fitbit {
        let mut frng = rng_for(ctx.seed, stream::FITBIT, pid as u64);
        fitbit::generate(&mut frng, &d, &traits, &health, out);
    }

    let (period_start, period_end) = flush(pid, &mut rows, out);
    let race_response = responses
        .iter()
        .find(|r| r.question.id == RACE.id && r.answer.id != RACE.answers[6].id);
    person_row(
        &d,
        &traits,
        race_response.map(|r| (r.answer.code, r.answer.id)),
        out,
    );
    let p = &mut out.observation_period;
    p.observation_period_id.append_value(row_id(pid, 0));
    p.person_id.append_value(pid);
    p.observation_period_start_date.append_value(period_start);
    p.observation_period_end_date.append_value(period_end);
    p.period_type_concept_id
        .append_value(TYPE_PERIOD_HEALTHCARE);

    if let Some(day) = d.death {
        let t = &mut out.death;
        t.person_id.append_value(pid);
        t.death_date.append_value(day);
        t.death_datetime.append_value(at(day, death_secs));
        t.death_type_concept_id.append_value(TYPE_EHR);
        t.cause_concept_id
            .append_value(cause.map(|c| c.0).unwrap_or(NO_MATCHING_CONCEPT));
        t.cause_source_value.append_option(cause.map(|c| c.1));
        t.cause_source_concept_id.append_value(NO_MATCHING_CONCEPT);
    }
}

fn person_row(
    d: &Demographics,
    t: &ehr::Traits,
    race_source: Option<(&str, i32)>,
    out: &mut ChunkTables,
) {
    let p = &mut out.person;
    p.person_id.append_value(d.pid);
    p.gender_concept_id
        .append_value(if d.female { FEMALE } else { MALE });
    p.year_of_birth.append_value(d.birth_year);
    p.month_of_birth
        .append_option(d.birth_month.map(|m| m as i32));
    p.day_of_birth.append_option(d.birth_day.map(|m| m as i32));
    p.birth_datetime.append_value(at(d.birth, 0));
    p.race_concept_id.append_value(d.race.concept_id());
    p.ethnicity_concept_id.append_value(match d.hispanic {
        Some(true) => HISPANIC,
        Some(false) => NOT_HISPANIC,
        None => NO_MATCHING_CONCEPT,
    });
    p.location_id.append_null();
    p.provider_id
        .append_option(d.has_ehr.then_some(t.primary_provider));
    p.care_site_id.append_option(d.has_ehr.then_some(t.clinic));
    p.person_source_value.append_value(d.pid.to_string());
    let (sex_code, sex_id) = if d.female {
        ("SexAtBirth_Female", 1585847)
    } else {
        ("SexAtBirth_Male", 1585846)
    };
    p.gender_source_value.append_value(sex_code);
    p.gender_source_concept_id.append_value(sex_id);
    match race_source {
        Some((code, id)) if d.race != Race::Unknown || code.starts_with("PMI") => {
            p.race_source_value.append_value(code);
            p.race_source_concept_id.append_value(id);
        }
        _ => {
            p.race_source_value.append_value("No matching concept");
            p.race_source_concept_id.append_value(NO_MATCHING_CONCEPT);
        }
    }
    if d.hispanic == Some(true) {
        p.ethnicity_source_value.append_value(RACE.answers[6].code);
        p.ethnicity_source_concept_id
            .append_value(RACE.answers[6].id);
    } else {
        p.ethnicity_source_value.append_value("No matching concept");
        p.ethnicity_source_concept_id
            .append_value(NO_MATCHING_CONCEPT);
    }
}

/// Seconds after midnight, kept inside the day so that a datetime never disagrees with its
/// date.
fn clamp_secs(secs: i64) -> i64 {
    secs.clamp(0, 86_399)
}

/// Sorts the participant's EHR rows by date, numbers them, appends them to the builders and
/// returns the observation period covering all of them.
fn flush(pid: i64, rows: &mut Rows, out: &mut ChunkTables) -> (i32, i32) {
    // Visits keep the order they were drawn in: the other rows point at them by index.
    rows.conditions.sort_by_key(|r| (r.day, r.secs));
    rows.drugs.sort_by_key(|r| (r.day, r.secs));
    rows.procedures.sort_by_key(|r| (r.day, r.secs));
    rows.measurements.sort_by_key(|r| (r.day, r.secs));
    rows.observations.sort_by_key(|r| (r.day, r.secs));

    let visits = rows.visits.as_slice();
    for (i, v) in visits.iter().enumerate() {
        visit(&mut out.visit_occurrence, pid, i, v);
    }
    for (i, r) in rows.conditions.iter().enumerate() {
        condition(&mut out.condition_occurrence, pid, i, r, visits);
    }
    for (i, r) in rows.drugs.iter().enumerate() {
        drug(&mut out.drug_exposure, pid, i, r, visits);
    }
    for (i, r) in rows.procedures.iter().enumerate() {
        procedure(&mut out.procedure_occurrence, pid, i, r, visits);
    }
    for (i, r) in rows.measurements.iter().enumerate() {
        measurement(&mut out.measurement, pid, i, r, visits);
    }
    for (i, r) in rows.observations.iter().enumerate() {
        observation(&mut out.observation, pid, i, r, visits);
    }
    observation_period(rows)
}

/// The first and last day any of the participant's EHR rows covers.
fn observation_period(rows: &Rows) -> (i32, i32) {
    let spans = (rows.visits.iter().map(|v| (v.start, v.end)))
        .chain(
            rows.conditions
                .iter()
                .map(|r| (r.day, r.end.unwrap_or(r.day))),
        )
        .chain(rows.drugs.iter().map(|r| (r.day, r.end)))
        .chain(rows.procedures.iter().map(|r| (r.day, r.day)))
        .chain(rows.measurements.iter().map(|r| (r.day, r.day)))
        .chain(rows.observations.iter().map(|r| (r.day, r.day)));
    spans.fold((i32::MAX, i32::MIN), |(first, last), (from, to)| {
        (first.min(from), last.max(to))
    })
}

fn visit(t: &mut VisitOccurrence, pid: i64, i: usize, v: &ehr::VisitRow) {
    t.visit_occurrence_id.append_value(row_id(pid, i));
    t.person_id.append_value(pid);
    t.visit_concept_id.append_value(v.kind.concept());
    t.visit_start_date.append_value(v.start);
    t.visit_start_datetime
        .append_value(at(v.start, clamp_secs(v.start_secs)));
    t.visit_end_date.append_value(v.end);
    t.visit_end_datetime
        .append_value(at(v.end, clamp_secs(v.end_secs)));
    t.visit_type_concept_id.append_value(TYPE_EHR);
    t.provider_id.append_option(v.provider);
    t.care_site_id.append_option(v.care_site);
    t.visit_source_value.append_value(v.kind.source_value());
    t.visit_source_concept_id.append_value(NO_MATCHING_CONCEPT);
    t.admitted_from_concept_id
        .append_value(v.admitted_from.unwrap_or(NO_MATCHING_CONCEPT));
    t.admitted_from_source_value
        .append_option(v.admitted_from.map(|_| "ED"));
    t.discharged_to_concept_id
        .append_value(v.discharged_to.unwrap_or(NO_MATCHING_CONCEPT));
    t.discharged_to_source_value
        .append_option(v.discharged_to.map(|_| "HOME"));
    t.preceding_visit_occurrence_id
        .append_option((i > 0).then(|| row_id(pid, i - 1)));
}

fn condition(
    t: &mut ConditionOccurrence,
    pid: i64,
    i: usize,
    r: &ehr::ConditionRow,
    visits: &[ehr::VisitRow],
) {
    t.condition_occurrence_id.append_value(row_id(pid, i));
    t.person_id.append_value(pid);
    t.condition_concept_id.append_value(r.concept);
    t.condition_start_date.append_value(r.day);
    t.condition_start_datetime
        .append_value(at(r.day, clamp_secs(r.secs)));
    t.condition_end_date.append_option(r.end);
    t.condition_end_datetime
        .append_option(r.end.map(|e| at(e, 0)));
    t.condition_type_concept_id
        .append_value(TYPE_EHR_ENCOUNTER_DIAGNOSIS);
    t.condition_status_concept_id.append_value(r.status);
    t.stop_reason.append_null();
    t.provider_id.append_option(visits[r.visit].provider);
    t.visit_occurrence_id.append_value(row_id(pid, r.visit));
    t.visit_detail_id.append_null();
    t.condition_source_value.append_value(r.source);
    t.condition_source_concept_id.append_value(r.source_concept);
    t.condition_status_source_value
        .append_value(if r.status == STATUS_PRIMARY_DIAGNOSIS {
            "primary"
        } else {
            "secondary"
        });
}

fn drug(t: &mut DrugExposure, pid: i64, i: usize, r: &ehr::DrugRow, visits: &[ehr::VisitRow]) {
    t.drug_exposure_id.append_value(row_id(pid, i));
    t.person_id.append_value(pid);
    t.drug_concept_id.append_value(r.drug.concept);
    t.drug_exposure_start_date.append_value(r.day);
    t.drug_exposure_start_datetime
        .append_value(at(r.day, clamp_secs(r.secs)));
    t.drug_exposure_end_date.append_value(r.end);
    t.drug_exposure_end_datetime.append_value(at(r.end, 0));
    t.verbatim_end_date.append_null();
    t.drug_type_concept_id.append_value(TYPE_EHR_PRESCRIPTION);
    t.stop_reason.append_null();
    t.refills.append_value(r.refills);
    t.quantity.append_value(r.drug.quantity);
    t.days_supply.append_value(r.drug.days_supply);
    t.sig.append_value(r.drug.sig);
    t.route_concept_id.append_value(if r.drug.oral {
        ROUTE_ORAL
    } else {
        NO_MATCHING_CONCEPT
    });
    t.lot_number.append_null();
    t.provider_id.append_option(visits[r.visit].provider);
    t.visit_occurrence_id.append_value(row_id(pid, r.visit));
    t.visit_detail_id.append_null();
    t.drug_source_value.append_value(r.drug.source_value);
    t.drug_source_concept_id.append_value(r.drug.source_concept);
    t.route_source_value
        .append_option(r.drug.oral.then_some("oral"));
    t.dose_unit_source_value.append_null();
}

fn procedure(
    t: &mut ProcedureOccurrence,
    pid: i64,
    i: usize,
    r: &ehr::ProcedureRow,
    visits: &[ehr::VisitRow],
) {
    t.procedure_occurrence_id.append_value(row_id(pid, i));
    t.person_id.append_value(pid);
    t.procedure_concept_id.append_value(r.concept);
    t.procedure_date.append_value(r.day);
    t.procedure_datetime
        .append_value(at(r.day, clamp_secs(r.secs)));
    t.procedure_end_date.append_null();
    t.procedure_end_datetime.append_null();
    t.procedure_type_concept_id.append_value(TYPE_EHR);
    t.modifier_concept_id.append_value(NO_MATCHING_CONCEPT);
    t.quantity.append_value(1);
    t.provider_id.append_option(visits[r.visit].provider);
    t.visit_occurrence_id.append_value(row_id(pid, r.visit));
    t.visit_detail_id.append_null();
    t.procedure_source_value
        .append_value(procedure_code(r.concept));
    t.procedure_source_concept_id
        .append_value(NO_MATCHING_CONCEPT);
    t.modifier_source_value.append_null();
}

fn observation(
    t: &mut Observation,
    pid: i64,
    i: usize,
    r: &ObservationRow,
    visits: &[ehr::VisitRow],
) {
    t.observation_id.append_value(row_id(pid, i));
    t.person_id.append_value(pid);
    t.observation_concept_id.append_value(r.concept);
    t.observation_date.append_value(r.day);
    t.observation_datetime
        .append_value(at(r.day, clamp_secs(r.secs)));
    t.observation_type_concept_id.append_value(r.type_concept);
    t.value_as_number.append_null();
    t.value_as_string.append_option(r.value_string);
    t.value_as_concept_id
        .append_value(r.value_concept.unwrap_or(NO_MATCHING_CONCEPT));
    t.qualifier_concept_id.append_value(NO_MATCHING_CONCEPT);
    t.unit_concept_id.append_value(NO_MATCHING_CONCEPT);
    t.provider_id
        .append_option(r.visit.and_then(|v| visits[v].provider));
    t.visit_occurrence_id
        .append_option(r.visit.map(|v| row_id(pid, v)));
    t.visit_detail_id.append_null();
    t.observation_source_value.append_value(r.source);
    t.observation_source_concept_id
        .append_value(r.source_concept);
    t.unit_source_value.append_null();
    t.qualifier_source_value.append_null();
    t.value_source_value.append_option(r.value_source);
    t.observation_event_id.append_null();
    t.obs_event_field_concept_id
        .append_value(NO_MATCHING_CONCEPT);
}

fn measurement(
    t: &mut Measurement,
    pid: i64,
    i: usize,
    r: &MeasurementRow,
    visits: &[ehr::VisitRow],
) {
    let spec = measurement_spec(r.concept);
    t.measurement_id.append_value(row_id(pid, i));
    t.person_id.append_value(pid);
    t.measurement_concept_id.append_value(r.concept);
    t.measurement_date.append_value(r.day);
    let secs = clamp_secs(r.secs);
    t.measurement_datetime.append_value(at(r.day, secs));
    t.measurement_time.append_null();
    t.measurement_type_concept_id.append_value(r.type_concept);
    t.operator_concept_id.append_value(NO_MATCHING_CONCEPT);
    t.value_as_number.append_value(r.value);
    t.value_as_concept_id.append_value(NO_MATCHING_CONCEPT);
    t.unit_concept_id.append_value(spec.unit);
    t.range_low.append_option(spec.low);
    t.range_high.append_option(spec.high);
    t.provider_id
        .append_option(r.visit.and_then(|v| visits[v].provider));
    t.visit_occurrence_id
        .append_option(r.visit.map(|v| row_id(pid, v)));
    t.visit_detail_id.append_null();
    t.measurement_source_value.append_value(spec.loinc);
    t.measurement_source_concept_id.append_value(r.concept);
    t.unit_source_value.append_value(spec.unit_code);
    t.unit_source_concept_id.append_value(spec.unit);
    // Written straight into the column's buffer (no allocation per row); the value is already
    // rounded to the measurement's precision, so the shortest form is exact.
    let _ = write!(t.value_source_value, "{}", r.value);
    t.value_source_value.append_value("");
    t.measurement_event_id.append_null();
    t.meas_event_field_concept_id
        .append_value(NO_MATCHING_CONCEPT);
}

/// The SNOMED code of a procedure concept (its source value).
fn procedure_code(concept: i32) -> &'static str {
    super::vocabulary::CONCEPTS
        .iter()
        .find(|c| c.id == concept)
        .map(|c| c.code)
        .unwrap_or("")
}
