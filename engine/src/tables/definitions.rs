//! The contract's tables. Columns the generator does not write (tables only imported) are
//! nullable except their keys: real exports leave the optional CDM columns empty.

use super::{ColumnDef, ColumnType, Layout, TableDef};
use crate::catalog::Tier;

contract! {
    // --------------------------------------------------------------------------------------------
    // Vocabulary (public)
    // --------------------------------------------------------------------------------------------

    Concept = "concept" {
        group: vocabulary, tier: Public, layout: Single;
        concept_id: ConceptId req, concept_name: Text req, domain_id: Text req,
        vocabulary_id: Text req, concept_class_id: Text req, standard_concept: Text opt,
        concept_code: Text req, valid_start_date: Date req, valid_end_date: Date req,
        invalid_reason: Text opt,
    }

    ConceptAncestor = "concept_ancestor" {
        group: vocabulary, tier: Public, layout: Single;
        ancestor_concept_id: ConceptId req, descendant_concept_id: ConceptId req,
        min_levels_of_separation: Int req, max_levels_of_separation: Int req,
    }

    ConceptRelationship = "concept_relationship" {
        group: vocabulary, tier: Public, layout: Single;
        concept_id_1: ConceptId req, concept_id_2: ConceptId req, relationship_id: Text req,
        valid_start_date: Date req, valid_end_date: Date req, invalid_reason: Text opt,
    }

    ConceptSynonym = "concept_synonym" {
        group: vocabulary, tier: Public, layout: Single;
        concept_id: ConceptId req, concept_synonym_name: Text opt,
        language_concept_id: ConceptId opt,
    }

    ConceptClass = "concept_class" {
        group: vocabulary, tier: Public, layout: Single;
        concept_class_id: Text req, concept_class_name: Text opt,
        concept_class_concept_id: ConceptId opt,
    }

    Vocabulary = "vocabulary" {
        group: vocabulary, tier: Public, layout: Single;
        vocabulary_id: Text req, vocabulary_name: Text opt, vocabulary_reference: Text opt,
        vocabulary_version: Text opt, vocabulary_concept_id: ConceptId opt,
    }

    Domain = "domain" {
        group: vocabulary, tier: Public, layout: Single;
        domain_id: Text req, domain_name: Text opt, domain_concept_id: ConceptId opt,
    }

    Relationship = "relationship" {
        group: vocabulary, tier: Public, layout: Single;
        relationship_id: Text req, relationship_name: Text opt, is_hierarchical: Text opt,
        defines_ancestry: Text opt, reverse_relationship_id: Text opt,
        relationship_concept_id: ConceptId opt,
    }

    DrugStrength = "drug_strength" {
        group: vocabulary, tier: Public, layout: Single;
        drug_concept_id: ConceptId opt, ingredient_concept_id: ConceptId opt,
        amount_value: Number opt, amount_unit_concept_id: ConceptId opt,
        numerator_value: Number opt, numerator_unit_concept_id: ConceptId opt,
        denominator_value: Number opt, denominator_unit_concept_id: ConceptId opt,
        box_size: Int opt, valid_start_date: Date opt, valid_end_date: Date opt,
        invalid_reason: Text opt,
    }

    SourceToConceptMap = "source_to_concept_map" {
        group: vocabulary, tier: Public, layout: Single;
        source_code: Text opt, source_concept_id: ConceptId opt, source_vocabulary_id: Text opt,
        source_code_description: Text opt, target_concept_id: ConceptId opt,
        target_vocabulary_id: Text opt, valid_start_date: Date opt, valid_end_date: Date opt,
        invalid_reason: Text opt,
    }

    // --------------------------------------------------------------------------------------------
    // EHR (OMOP CDM 5.4): clinical data
    // --------------------------------------------------------------------------------------------

    Person = "person" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id,
        controlled: [birth_datetime, day_of_birth, month_of_birth, location_id];
        person_id: Id req, gender_concept_id: ConceptId req, year_of_birth: Int req,
        month_of_birth: Int opt, day_of_birth: Int opt, birth_datetime: Datetime opt,
        race_concept_id: ConceptId req, ethnicity_concept_id: ConceptId req, location_id: Id opt,
        provider_id: Id opt, care_site_id: Id opt, person_source_value: Text opt,
        gender_source_value: Text opt, gender_source_concept_id: ConceptId opt,
        race_source_value: Text opt, race_source_concept_id: ConceptId opt,
        ethnicity_source_value: Text opt, ethnicity_source_concept_id: ConceptId opt,
    }

    ObservationPeriod = "observation_period" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        observation_period_id: Id req, person_id: Id req,
        observation_period_start_date: Date req, observation_period_end_date: Date req,
        period_type_concept_id: ConceptId req,
    }

    VisitOccurrence = "visit_occurrence" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        visit_occurrence_id: Id req, person_id: Id req, visit_concept_id: ConceptId req,
        visit_start_date: Date req, visit_start_datetime: Datetime opt,
        visit_end_date: Date req, visit_end_datetime: Datetime opt,
        visit_type_concept_id: ConceptId req, provider_id: Id opt, care_site_id: Id opt,
        visit_source_value: Text opt, visit_source_concept_id: ConceptId opt,
        admitted_from_concept_id: ConceptId opt, admitted_from_source_value: Text opt,
        discharged_to_concept_id: ConceptId opt, discharged_to_source_value: Text opt,
        preceding_visit_occurrence_id: Id opt,
    }

    VisitDetail = "visit_detail" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        visit_detail_id: Id req, person_id: Id req, visit_detail_concept_id: ConceptId opt,
        visit_detail_start_date: Date opt, visit_detail_start_datetime: Datetime opt,
        visit_detail_end_date: Date opt, visit_detail_end_datetime: Datetime opt,
        visit_detail_type_concept_id: ConceptId opt, provider_id: Id opt, care_site_id: Id opt,
        visit_detail_source_value: Text opt, visit_detail_source_concept_id: ConceptId opt,
        admitted_from_concept_id: ConceptId opt, admitted_from_source_value: Text opt,
        discharged_to_source_value: Text opt, discharged_to_concept_id: ConceptId opt,
        preceding_visit_detail_id: Id opt, parent_visit_detail_id: Id opt,
        visit_occurrence_id: Id opt,
    }

    ConditionOccurrence = "condition_occurrence" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        condition_occurrence_id: Id req, person_id: Id req, condition_concept_id: ConceptId req,
        condition_start_date: Date req, condition_start_datetime: Datetime opt,
        condition_end_date: Date opt, condition_end_datetime: Datetime opt,
        condition_type_concept_id: ConceptId req, condition_status_concept_id: ConceptId opt,
        stop_reason: Text opt, provider_id: Id opt, visit_occurrence_id: Id opt,
        visit_detail_id: Id opt, condition_source_value: Text opt,
        condition_source_concept_id: ConceptId opt, condition_status_source_value: Text opt,
    }

    DrugExposure = "drug_exposure" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        drug_exposure_id: Id req, person_id: Id req, drug_concept_id: ConceptId req,
        drug_exposure_start_date: Date req, drug_exposure_start_datetime: Datetime opt,
        drug_exposure_end_date: Date req, drug_exposure_end_datetime: Datetime opt,
        verbatim_end_date: Date opt, drug_type_concept_id: ConceptId req, stop_reason: Text opt,
        refills: Int opt, quantity: Number opt, days_supply: Int opt, sig: Text opt,
        route_concept_id: ConceptId opt, lot_number: Text opt, provider_id: Id opt,
        visit_occurrence_id: Id opt, visit_detail_id: Id opt, drug_source_value: Text opt,
        drug_source_concept_id: ConceptId opt, route_source_value: Text opt,
        dose_unit_source_value: Text opt,
    }

    ProcedureOccurrence = "procedure_occurrence" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        procedure_occurrence_id: Id req, person_id: Id req, procedure_concept_id: ConceptId req,
        procedure_date: Date req, procedure_datetime: Datetime opt,
        procedure_end_date: Date opt, procedure_end_datetime: Datetime opt,
        procedure_type_concept_id: ConceptId req, modifier_concept_id: ConceptId opt,
        quantity: Int opt, provider_id: Id opt, visit_occurrence_id: Id opt,
        visit_detail_id: Id opt, procedure_source_value: Text opt,
        procedure_source_concept_id: ConceptId opt, modifier_source_value: Text opt,
    }

    Measurement = "measurement" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        measurement_id: Id req, person_id: Id req, measurement_concept_id: ConceptId req,
        measurement_date: Date req, measurement_datetime: Datetime opt,
        measurement_time: Text opt, measurement_type_concept_id: ConceptId req,
        operator_concept_id: ConceptId opt, value_as_number: Number opt,
        value_as_concept_id: ConceptId opt, unit_concept_id: ConceptId opt, range_low: Number opt,
        range_high: Number opt, provider_id: Id opt, visit_occurrence_id: Id opt,
        visit_detail_id: Id opt, measurement_source_value: Text opt,
        measurement_source_concept_id: ConceptId opt, unit_source_value: Text opt,
        unit_source_concept_id: ConceptId opt, value_source_value: Text opt,
        measurement_event_id: Id opt, meas_event_field_concept_id: ConceptId opt,
    }

    Observation = "observation" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        observation_id: Id req, person_id: Id req, observation_concept_id: ConceptId req,
        observation_date: Date req, observation_datetime: Datetime opt,
        observation_type_concept_id: ConceptId req, value_as_number: Number opt,
        value_as_string: Text opt, value_as_concept_id: ConceptId opt,
        qualifier_concept_id: ConceptId opt, unit_concept_id: ConceptId opt, provider_id: Id opt,
        visit_occurrence_id: Id opt, visit_detail_id: Id opt,
        observation_source_value: Text opt, observation_source_concept_id: ConceptId opt,
        unit_source_value: Text opt, qualifier_source_value: Text opt,
        value_source_value: Text opt, observation_event_id: Id opt,
        obs_event_field_concept_id: ConceptId opt,
    }

    Death = "death" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, death_date: Date req, death_datetime: Datetime opt,
        death_type_concept_id: ConceptId opt, cause_concept_id: ConceptId opt,
        cause_source_value: Text opt, cause_source_concept_id: ConceptId opt,
    }

    DeviceExposure = "device_exposure" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        device_exposure_id: Id req, person_id: Id req, device_concept_id: ConceptId opt,
        device_exposure_start_date: Date opt, device_exposure_start_datetime: Datetime opt,
        device_exposure_end_date: Date opt, device_exposure_end_datetime: Datetime opt,
        device_type_concept_id: ConceptId opt, unique_device_id: Text opt,
        production_id: Text opt, quantity: Int opt, provider_id: Id opt,
        visit_occurrence_id: Id opt, visit_detail_id: Id opt, device_source_value: Text opt,
        device_source_concept_id: ConceptId opt, unit_concept_id: ConceptId opt,
        unit_source_value: Text opt, unit_source_concept_id: ConceptId opt,
    }

    Specimen = "specimen" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        specimen_id: Id req, person_id: Id req, specimen_concept_id: ConceptId opt,
        specimen_type_concept_id: ConceptId opt, specimen_date: Date opt,
        specimen_datetime: Datetime opt, quantity: Number opt, unit_concept_id: ConceptId opt,
        anatomic_site_concept_id: ConceptId opt, disease_status_concept_id: ConceptId opt,
        specimen_source_id: Text opt, specimen_source_value: Text opt,
        unit_source_value: Text opt, anatomic_site_source_value: Text opt,
        disease_status_source_value: Text opt,
    }

    Note = "note" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id,
        controlled: [note_text];
        note_id: Id req, person_id: Id req, note_date: Date opt, note_datetime: Datetime opt,
        note_type_concept_id: ConceptId opt, note_class_concept_id: ConceptId opt,
        note_title: Text opt, note_text: Text opt, encoding_concept_id: ConceptId opt,
        language_concept_id: ConceptId opt, provider_id: Id opt, visit_occurrence_id: Id opt,
        visit_detail_id: Id opt, note_source_value: Text opt, note_event_id: Id opt,
        note_event_field_concept_id: ConceptId opt,
    }

    NoteNlp = "note_nlp" {
        group: ehr, tier: Registered, layout: Single;
        note_nlp_id: Id req, note_id: Id opt, section_concept_id: ConceptId opt,
        snippet: Text opt, offset: Text opt, lexical_variant: Text opt,
        note_nlp_concept_id: ConceptId opt, note_nlp_source_concept_id: ConceptId opt,
        nlp_system: Text opt, nlp_date: Date opt, nlp_datetime: Datetime opt,
        term_exists: Text opt, term_temporal: Text opt, term_modifiers: Text opt,
    }

    FactRelationship = "fact_relationship" {
        group: ehr, tier: Registered, layout: Single;
        domain_concept_id_1: ConceptId opt, fact_id_1: Id opt, domain_concept_id_2: ConceptId opt,
        fact_id_2: Id opt, relationship_concept_id: ConceptId opt,
    }

    // --------------------------------------------------------------------------------------------
    // EHR: health system, health economics, derived elements, metadata
    // --------------------------------------------------------------------------------------------

    Location = "location" {
        group: ehr, tier: Registered, layout: Single,
        controlled: [zip, address_1, address_2, county, latitude, longitude];
        location_id: Id req, address_1: Text opt, address_2: Text opt, city: Text opt,
        state: Text opt, zip: Text opt, county: Text opt, location_source_value: Text opt,
        country_concept_id: ConceptId opt, country_source_value: Text opt, latitude: Number opt,
        longitude: Number opt,
    }

    CareSite = "care_site" {
        group: ehr, tier: Registered, layout: Single;
        care_site_id: Id req, care_site_name: Text opt,
        place_of_service_concept_id: ConceptId opt, location_id: Id opt,
        care_site_source_value: Text opt, place_of_service_source_value: Text opt,
    }

    Provider = "provider" {
        group: ehr, tier: Registered, layout: Single;
        provider_id: Id req, provider_name: Text opt, npi: Text opt, dea: Text opt,
        specialty_concept_id: ConceptId opt, care_site_id: Id opt, year_of_birth: Int opt,
        gender_concept_id: ConceptId opt, provider_source_value: Text opt,
        specialty_source_value: Text opt, specialty_source_concept_id: ConceptId opt,
        gender_source_value: Text opt, gender_source_concept_id: ConceptId opt,
    }

    PayerPlanPeriod = "payer_plan_period" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        payer_plan_period_id: Id req, person_id: Id req, payer_plan_period_start_date: Date opt,
        payer_plan_period_end_date: Date opt, payer_concept_id: ConceptId opt,
        payer_source_value: Text opt, payer_source_concept_id: ConceptId opt,
        plan_concept_id: ConceptId opt, plan_source_value: Text opt,
        plan_source_concept_id: ConceptId opt, sponsor_concept_id: ConceptId opt,
        sponsor_source_value: Text opt, sponsor_source_concept_id: ConceptId opt,
        family_source_value: Text opt, stop_reason_concept_id: ConceptId opt,
        stop_reason_source_value: Text opt, stop_reason_source_concept_id: ConceptId opt,
    }

    Cost = "cost" {
        group: ehr, tier: Registered, layout: Single;
        cost_id: Id req, cost_event_id: Id opt, cost_domain_id: Text opt,
        cost_type_concept_id: ConceptId opt, currency_concept_id: ConceptId opt,
        total_charge: Number opt, total_cost: Number opt, total_paid: Number opt,
        paid_by_payer: Number opt, paid_by_patient: Number opt, paid_patient_copay: Number opt,
        paid_patient_coinsurance: Number opt, paid_patient_deductible: Number opt,
        paid_by_primary: Number opt, paid_ingredient_cost: Number opt,
        paid_dispensing_fee: Number opt, payer_plan_period_id: Id opt,
        amount_allowed: Number opt, revenue_code_concept_id: ConceptId opt,
        revenue_code_source_value: Text opt, drg_concept_id: ConceptId opt,
        drg_source_value: Text opt,
    }

    ConditionEra = "condition_era" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        condition_era_id: Id req, person_id: Id req, condition_concept_id: ConceptId opt,
        condition_era_start_date: Date opt, condition_era_end_date: Date opt,
        condition_occurrence_count: Int opt,
    }

    DrugEra = "drug_era" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        drug_era_id: Id req, person_id: Id req, drug_concept_id: ConceptId opt,
        drug_era_start_date: Date opt, drug_era_end_date: Date opt,
        drug_exposure_count: Int opt, gap_days: Int opt,
    }

    DoseEra = "dose_era" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        dose_era_id: Id req, person_id: Id req, drug_concept_id: ConceptId opt,
        unit_concept_id: ConceptId opt, dose_value: Number opt, dose_era_start_date: Date opt,
        dose_era_end_date: Date opt,
    }

    Episode = "episode" {
        group: ehr, tier: Registered, layout: Person, person_key: person_id;
        episode_id: Id req, person_id: Id req, episode_concept_id: ConceptId opt,
        episode_start_date: Date opt, episode_start_datetime: Datetime opt,
        episode_end_date: Date opt, episode_end_datetime: Datetime opt,
        episode_parent_id: Id opt, episode_number: Int opt,
        episode_object_concept_id: ConceptId opt, episode_type_concept_id: ConceptId opt,
        episode_source_value: Text opt, episode_source_concept_id: ConceptId opt,
    }

    EpisodeEvent = "episode_event" {
        group: ehr, tier: Registered, layout: Single;
        episode_id: Id opt, event_id: Id opt, episode_event_field_concept_id: ConceptId opt,
    }

    Metadata = "metadata" {
        group: ehr, tier: Registered, layout: Single;
        metadata_id: Id req, metadata_concept_id: ConceptId opt,
        metadata_type_concept_id: ConceptId opt, name: Text opt, value_as_string: Text opt,
        value_as_concept_id: ConceptId opt, value_as_number: Number opt, metadata_date: Date opt,
        metadata_datetime: Datetime opt,
    }

    CdmSource = "cdm_source" {
        group: ehr, tier: Registered, layout: Single;
        cdm_source_name: Text opt, cdm_source_abbreviation: Text opt, cdm_holder: Text opt,
        source_description: Text opt, source_documentation_reference: Text opt,
        cdm_etl_reference: Text opt, source_release_date: Date opt, cdm_release_date: Date opt,
        cdm_version: Text opt, cdm_version_concept_id: ConceptId opt,
        vocabulary_version: Text opt,
    }

    // --------------------------------------------------------------------------------------------
    // Surveys (the program's curated survey table)
    // --------------------------------------------------------------------------------------------

    DsSurvey = "ds_survey" {
        group: survey, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, survey_datetime: Datetime req, survey: Text req,
        question_concept_id: ConceptId req, question: Text req, answer_concept_id: ConceptId req,
        answer: Text req,
    }

    // --------------------------------------------------------------------------------------------
    // Wearables (Fitbit, as in the program's curated data)
    // --------------------------------------------------------------------------------------------

    ActivitySummary = "activity_summary" {
        group: wearable, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, date: Date req, activity_calories: Number opt,
        calories_bmr: Number opt, calories_out: Number opt, elevation: Number opt,
        fairly_active_minutes: BigInt opt, floors: BigInt opt, lightly_active_minutes: BigInt opt,
        marginal_calories: Number opt, sedentary_minutes: BigInt opt, steps: BigInt opt,
        very_active_minutes: BigInt opt,
    }

    HeartRateMinuteLevel = "heart_rate_minute_level" {
        group: wearable, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, datetime: Datetime req, heart_rate_value: BigInt req,
    }

    HeartRateSummary = "heart_rate_summary" {
        group: wearable, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, date: Date req, zone_name: Text req, min_heart_rate: BigInt opt,
        max_heart_rate: BigInt opt, minute_count: BigInt opt, calorie_count: Number opt,
    }

    StepsIntraday = "steps_intraday" {
        group: wearable, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, datetime: Datetime req, steps: BigInt req,
    }

    SleepDailySummary = "sleep_daily_summary" {
        group: wearable, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, sleep_date: Date req, is_main_sleep: Flag req,
        minute_in_bed: BigInt opt, minute_asleep: BigInt opt, minute_after_wakeup: BigInt opt,
        minute_awake: BigInt opt, minute_restless: BigInt opt, minute_deep: BigInt opt,
        minute_light: BigInt opt, minute_rem: BigInt opt, minute_wake: BigInt opt,
    }

    SleepLevel = "sleep_level" {
        group: wearable, tier: Registered, layout: Person, person_key: person_id;
        person_id: Id req, sleep_date: Date req, is_main_sleep: Flag req, level: Text req,
        start_datetime: Datetime req, duration_in_min: BigInt req,
    }

    // --------------------------------------------------------------------------------------------
    // Genomics: one row per ALT allele, and non-reference calls only
    // --------------------------------------------------------------------------------------------

    Variant = "variant" {
        group: genomics, tier: Controlled, layout: Contig;
        vid: Text req, contig: Text req, position: BigInt req, ref_allele: Text req,
        alt_allele: Text req, gene_symbol: Text opt, consequence: Text opt,
        dbsnp_rsid: Text opt, clinvar_classification: Text opt, gvs_all_ac: BigInt req,
        gvs_all_an: BigInt req, gvs_all_af: Number opt,
    }

    Genotype = "genotype" {
        group: genomics, tier: Controlled, layout: Contig, person_key: person_id;
        person_id: Id req, vid: Text req, contig: Text req, position: BigInt req, gt: Text req,
    }

    // --------------------------------------------------------------------------------------------
    // OHDSI results-schema tables that exports often carry along (not person-keyed)
    // --------------------------------------------------------------------------------------------

    Cohort = "cohort" {
        group: other, tier: Registered, layout: Single;
        cohort_definition_id: Id opt, subject_id: Id opt, cohort_start_date: Date opt,
        cohort_end_date: Date opt,
    }

    CohortDefinition = "cohort_definition" {
        group: other, tier: Registered, layout: Single;
        cohort_definition_id: Id req, cohort_definition_name: Text opt,
        cohort_definition_description: Text opt, definition_type_concept_id: ConceptId opt,
        cohort_definition_syntax: Text opt, subject_concept_id: ConceptId opt,
        cohort_initiation_date: Date opt,
    }

}
