//! The vocabulary subset: every concept the generator writes, with real OMOP concept ids, names
//! and codes, plus a consistent `concept_ancestor` (the transitive closure of the hierarchy below,
//! every standard concept its own ancestor at level 0) and `concept_relationship` ("Is a" /
//! "Subsumes", "RxNorm has ing" / "RxNorm ing of", "Maps to" / "Mapped from").
//!
//! The hierarchy is a subset of the real one: intermediate concepts that are not listed here are
//! left out, so levels of separation are smaller than in a full vocabulary, but every listed
//! ancestor relation is a real one (201820 Diabetes mellitus above 201826 Type 2 diabetes
//! mellitus, 316866 Hypertensive disorder above 320128 Essential hypertension, ingredients above
//! their clinical drugs, survey modules above their questions, questions above their answers).

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;

use super::rng::days_from_civil;
use super::tables::{Concept, ConceptAncestor, ConceptRelationship};

use super::ids as id;

use id::*;

/// One row of `concept`.
pub struct ConceptDef {
    pub id: i32,
    pub name: &'static str,
    pub domain: &'static str,
    pub vocabulary: &'static str,
    pub class: &'static str,
    /// `S` standard, `C` classification, empty for non-standard.
    pub standard: &'static str,
    pub code: &'static str,
}

const fn c(
    id: i32,
    name: &'static str,
    domain: &'static str,
    vocabulary: &'static str,
    class: &'static str,
    standard: &'static str,
    code: &'static str,
) -> ConceptDef {
    ConceptDef {
        id,
        name,
        domain,
        vocabulary,
        class,
        standard,
        code,
    }
}

const fn snomed(id: i32, name: &'static str, code: &'static str) -> ConceptDef {
    c(
        id,
        name,
        "Condition",
        "SNOMED",
        "Clinical Finding",
        "S",
        code,
    )
}

const fn procedure(id: i32, name: &'static str, code: &'static str) -> ConceptDef {
    c(id, name, "Procedure", "SNOMED", "Procedure", "S", code)
}

const fn loinc(id: i32, name: &'static str, code: &'static str) -> ConceptDef {
    c(id, name, "Measurement", "LOINC", "Lab Test", "S", code)
}

const fn vital(id: i32, name: &'static str, code: &'static str) -> ConceptDef {
    c(
        id,
        name,
        "Measurement",
        "LOINC",
        "Clinical Observation",
        "S",
        code,
    )
}

const fn ingredient(id: i32, name: &'static str, code: &'static str) -> ConceptDef {
    c(id, name, "Drug", "RxNorm", "Ingredient", "S", code)
}

const fn drug(id: i32, name: &'static str, class: &'static str, code: &'static str) -> ConceptDef {
    c(id, name, "Drug", "RxNorm", class, "S", code)
}

const fn unit(id: i32, name: &'static str, code: &'static str) -> ConceptDef {
    c(id, name, "Unit", "UCUM", "Unit", "S", code)
}

const fn type_concept(id: i32, name: &'static str) -> ConceptDef {
    c(
        id,
        name,
        "Type Concept",
        "Type Concept",
        "Type Concept",
        "S",
        "OMOP generated",
    )
}

const fn ppi(id: i32, name: &'static str, class: &'static str, code: &'static str) -> ConceptDef {
    c(id, name, "Observation", "PPI", class, "S", code)
}

/// Every concept the generator writes (events, demographics, types, units, survey items).
pub const CONCEPTS: &[ConceptDef] = &[
    c(
        0,
        "No matching concept",
        "Metadata",
        "None",
        "Undefined",
        "",
        "No matching concept",
    ),
    // Demographics
    c(MALE, "MALE", "Gender", "Gender", "Gender", "S", "M"),
    c(FEMALE, "FEMALE", "Gender", "Gender", "Gender", "S", "F"),
    c(
        AIAN,
        "American Indian or Alaska Native",
        "Race",
        "Race",
        "Race",
        "S",
        "1",
    ),
    c(ASIAN, "Asian", "Race", "Race", "Race", "S", "2"),
    c(
        BLACK,
        "Black or African American",
        "Race",
        "Race",
        "Race",
        "S",
        "3",
    ),
    c(
        NHPI,
        "Native Hawaiian or Other Pacific Islander",
        "Race",
        "Race",
        "Race",
        "S",
        "4",
    ),
    c(WHITE, "White", "Race", "Race", "Race", "S", "5"),
    c(OTHER_RACE, "Other Race", "Race", "Race", "Race", "S", "8"),
    c(
        HISPANIC,
        "Hispanic or Latino",
        "Ethnicity",
        "Ethnicity",
        "Ethnicity",
        "S",
        "Hispanic",
    ),
    c(
        NOT_HISPANIC,
        "Not Hispanic or Latino",
        "Ethnicity",
        "Ethnicity",
        "Ethnicity",
        "S",
        "Not Hispanic",
    ),
    // Visits and places
    c(
        INPATIENT_VISIT,
        "Inpatient Visit",
        "Visit",
        "Visit",
        "Visit",
        "S",
        "IP",
    ),
    c(
        OUTPATIENT_VISIT,
        "Outpatient Visit",
        "Visit",
        "Visit",
        "Visit",
        "S",
        "OP",
    ),
    c(
        ER_VISIT,
        "Emergency Room Visit",
        "Visit",
        "Visit",
        "Visit",
        "S",
        "ER",
    ),
    c(
        PLACE_ER,
        "Emergency Room - Hospital",
        "Visit",
        "CMS Place of Service",
        "Visit",
        "S",
        "23",
    ),
    c(
        PLACE_HOME,
        "Home",
        "Visit",
        "CMS Place of Service",
        "Visit",
        "S",
        "12",
    ),
    // Type concepts, statuses, routes
    type_concept(TYPE_EHR, "EHR"),
    type_concept(TYPE_EHR_ENCOUNTER_DIAGNOSIS, "EHR encounter diagnosis"),
    type_concept(TYPE_EHR_PRESCRIPTION, "EHR prescription"),
    type_concept(
        TYPE_PERIOD_HEALTHCARE,
        "Period covering healthcare encounters",
    ),
    type_concept(TYPE_SURVEY, "Observation Recorded from a Survey"),
    type_concept(TYPE_PHYSICAL_EXAM, "From physical examination"),
    c(
        STATUS_PRIMARY_DIAGNOSIS,
        "Primary diagnosis",
        "Condition Status",
        "Condition Status",
        "Condition Status",
        "S",
        "OMOP generated",
    ),
    c(
        STATUS_SECONDARY_DIAGNOSIS,
        "Secondary diagnosis",
        "Condition Status",
        "Condition Status",
        "Condition Status",
        "S",
        "OMOP generated",
    ),
    c(
        ROUTE_ORAL,
        "Oral",
        "Route",
        "SNOMED",
        "Qualifier Value",
        "S",
        "26643006",
    ),
    // Units
    unit(UNIT_PERCENT, "percent", "%"),
    unit(UNIT_MMHG, "millimeter mercury column", "mm[Hg]"),
    unit(UNIT_KG_M2, "kilogram per square meter", "kg/m2"),
    unit(UNIT_KG, "kilogram", "kg"),
    unit(UNIT_CM, "centimeter", "cm"),
    unit(UNIT_MG_DL, "milligram per deciliter", "mg/dL"),
    unit(UNIT_PER_MIN, "per minute", "/min"),
    unit(UNIT_G_DL, "gram per deciliter", "g/dL"),
    unit(UNIT_MMOL_L, "millimole per liter", "mmol/L"),
    // Conditions
    snomed(CLINICAL_FINDING, "Clinical finding", "404684003"),
    snomed(DISEASE, "Disease", "64572001"),
    snomed(
        CARDIOVASCULAR_DISORDER,
        "Disorder of cardiovascular system",
        "49601007",
    ),
    snomed(HEART_DISEASE, "Heart disease", "56265001"),
    snomed(
        RESPIRATORY_DISORDER,
        "Disorder of respiratory system",
        "50043002",
    ),
    snomed(DIABETES_MELLITUS, "Diabetes mellitus", "73211009"),
    snomed(T2DM, "Type 2 diabetes mellitus", "44054006"),
    snomed(T1DM, "Type 1 diabetes mellitus", "46635009"),
    snomed(HYPERTENSIVE_DISORDER, "Hypertensive disorder", "38341003"),
    snomed(ESSENTIAL_HYPERTENSION, "Essential hypertension", "59621000"),
    snomed(HYPERLIPIDEMIA, "Hyperlipidemia", "55822004"),
    snomed(OBESITY, "Obesity", "414916001"),
    snomed(ASTHMA, "Asthma", "195967001"),
    snomed(COPD, "Chronic obstructive lung disease", "13645005"),
    snomed(EMPHYSEMA, "Pulmonary emphysema", "87433001"),
    snomed(DEPRESSIVE_DISORDER, "Depressive disorder", "35489007"),
    snomed(ANXIETY_DISORDER, "Anxiety disorder", "197480006"),
    snomed(GERD, "Gastroesophageal reflux disease", "235595009"),
    snomed(OSTEOARTHRITIS, "Osteoarthritis", "396275006"),
    snomed(
        ISCHEMIC_HEART_DISEASE,
        "Ischemic heart disease",
        "414545008",
    ),
    snomed(
        CORONARY_ARTERIOSCLEROSIS,
        "Coronary arteriosclerosis",
        "53741008",
    ),
    snomed(MYOCARDIAL_INFARCTION, "Myocardial infarction", "22298006"),
    snomed(ATRIAL_FIBRILLATION, "Atrial fibrillation", "49436004"),
    snomed(
        CONGESTIVE_HEART_FAILURE,
        "Congestive heart failure",
        "42343007",
    ),
    snomed(
        CEREBROVASCULAR_ACCIDENT,
        "Cerebrovascular accident",
        "230690007",
    ),
    snomed(
        CHRONIC_KIDNEY_DISEASE,
        "Chronic kidney disease",
        "709044004",
    ),
    snomed(HYPOTHYROIDISM, "Hypothyroidism", "40930008"),
    snomed(ALZHEIMERS, "Alzheimer's disease", "26929004"),
    snomed(BREAST_CANCER, "Malignant tumor of breast", "254837009"),
    snomed(SLEEP_APNEA, "Sleep apnea", "73430006"),
    snomed(RHEUMATOID_ARTHRITIS, "Rheumatoid arthritis", "69896004"),
    snomed(OSTEOPOROSIS, "Osteoporosis", "64859006"),
    snomed(
        SEASONAL_ALLERGIC_RHINITIS,
        "Seasonal allergic rhinitis",
        "367498001",
    ),
    snomed(BRONCHITIS, "Bronchitis", "32398004"),
    snomed(ACUTE_BRONCHITIS, "Acute bronchitis", "10509002"),
    snomed(VIRAL_SINUSITIS, "Viral sinusitis", "444814009"),
    snomed(
        ACUTE_VIRAL_PHARYNGITIS,
        "Acute viral pharyngitis",
        "195662009",
    ),
    snomed(STREP_THROAT, "Streptococcal sore throat", "43878008"),
    snomed(OTITIS_MEDIA, "Otitis media", "65363002"),
    snomed(PNEUMONIA, "Pneumonia", "233604007"),
    snomed(CYSTITIS, "Cystitis", "38822007"),
    snomed(SPRAIN_OF_ANKLE, "Sprain of ankle", "44465007"),
    snomed(
        CONCUSSION,
        "Concussion with no loss of consciousness",
        "62106007",
    ),
    snomed(FRACTURE_OF_FOREARM, "Fracture of forearm", "65966004"),
    snomed(GI_HEMORRHAGE, "Gastrointestinal hemorrhage", "74474003"),
    c(
        GI_HEMORRHAGE_ICD10,
        "Gastrointestinal hemorrhage, unspecified",
        "Condition",
        "ICD10CM",
        "4-char billing code",
        "",
        "K92.2",
    ),
    snomed(PEPTIC_ULCER, "Peptic ulcer", "13200003"),
    snomed(GALLSTONE, "Gallstone", "235919008"),
    snomed(ACUTE_CHOLECYSTITIS, "Acute cholecystitis", "65275009"),
    snomed(APPENDICITIS, "Appendicitis", "74400008"),
    snomed(
        FAMILIAL_ALZHEIMERS_EARLY_ONSET,
        "Familial Alzheimer's disease of early onset",
        "230265002",
    ),
    snomed(CYSTIC_FIBROSIS, "Cystic fibrosis", "190905008"),
    snomed(MULTIPLE_SCLEROSIS, "Multiple sclerosis", "24700007"),
    snomed(MYASTHENIA_GRAVIS, "Myasthenia gravis", "91637004"),
    snomed(SYSTEMIC_LUPUS, "Systemic lupus erythematosus", "55464009"),
    snomed(
        ANGIODYSPLASIA_OF_STOMACH,
        "Angiodysplasia of stomach",
        "424802006",
    ),
    // Drugs
    ingredient(METFORMIN, "metformin", "6809"),
    drug(
        METFORMIN_ER_500,
        "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "Clinical Drug",
        "860975",
    ),
    ingredient(INSULIN_GLARGINE, "insulin glargine", "274783"),
    ingredient(LISINOPRIL, "lisinopril", "29046"),
    ingredient(AMLODIPINE, "Amlodipine", "17767"),
    drug(
        AMLODIPINE_5,
        "Amlodipine 5 MG Oral Tablet",
        "Clinical Drug",
        "197361",
    ),
    ingredient(ATORVASTATIN, "atorvastatin", "83367"),
    drug(
        ATORVASTATIN_80,
        "atorvastatin 80 MG Oral Tablet",
        "Clinical Drug",
        "259255",
    ),
    ingredient(SIMVASTATIN, "Simvastatin", "36567"),
    drug(
        SIMVASTATIN_20,
        "Simvastatin 20 MG Oral Tablet",
        "Clinical Drug",
        "312961",
    ),
    ingredient(ALBUTEROL, "Albuterol", "435"),
    drug(
        ALBUTEROL_INHALER,
        "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
        "Quant Clinical Drug",
        "745679",
    ),
    ingredient(FLUTICASONE, "fluticasone", "41126"),
    ingredient(SALMETEROL, "salmeterol", "36117"),
    drug(
        FLUTICASONE_SALMETEROL_INHALER,
        "60 ACTUAT Fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler",
        "Quant Clinical Drug",
        "896209",
    ),
    ingredient(SERTRALINE, "sertraline", "36437"),
    ingredient(CELECOXIB, "celecoxib", "140587"),
    drug(
        CELECOXIB_200,
        "celecoxib 200 MG Oral Capsule [Celebrex]",
        "Branded Drug",
        "213469",
    ),
    c(
        CELECOXIB_200_NDC,
        "celecoxib 200 MG Oral Capsule [Celebrex]",
        "Drug",
        "NDC",
        "11-digit NDC",
        "",
        "00025152531",
    ),
    ingredient(DICLOFENAC, "Diclofenac", "3355"),
    drug(
        DICLOFENAC_75,
        "Diclofenac Sodium 75 MG Delayed Release Oral Tablet",
        "Clinical Drug",
        "855926",
    ),
    c(
        DICLOFENAC_75_NDC,
        "Diclofenac Sodium 75 MG Delayed Release Oral Tablet",
        "Drug",
        "NDC",
        "11-digit NDC",
        "",
        "00781178901",
    ),
    ingredient(NAPROXEN, "Naproxen", "7258"),
    drug(
        NAPROXEN_500,
        "Naproxen 500 MG Oral Tablet",
        "Clinical Drug",
        "198014",
    ),
    ingredient(IBUPROFEN, "Ibuprofen", "5640"),
    drug(
        IBUPROFEN_200,
        "Ibuprofen 200 MG Oral Tablet",
        "Clinical Drug",
        "310965",
    ),
    ingredient(ACETAMINOPHEN, "Acetaminophen", "161"),
    drug(
        ACETAMINOPHEN_325,
        "Acetaminophen 325 MG Oral Tablet",
        "Clinical Drug",
        "313782",
    ),
    ingredient(AMOXICILLIN, "Amoxicillin", "723"),
    drug(
        AMOXICILLIN_500,
        "Amoxicillin 500 MG Oral Tablet",
        "Clinical Drug",
        "308192",
    ),
    ingredient(CLAVULANATE, "Clavulanate", "48203"),
    drug(
        AMOXICILLIN_CLAVULANATE,
        "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet",
        "Clinical Drug",
        "562251",
    ),
    ingredient(DOXYCYCLINE, "Doxycycline", "3640"),
    drug(
        DOXYCYCLINE_100,
        "Doxycycline Monohydrate 100 MG Oral Tablet",
        "Clinical Drug",
        "1650142",
    ),
    ingredient(ASPIRIN, "Aspirin", "1191"),
    drug(
        ASPIRIN_81,
        "Aspirin 81 MG Oral Tablet",
        "Clinical Drug",
        "243670",
    ),
    ingredient(CLOPIDOGREL, "clopidogrel", "32968"),
    drug(
        CLOPIDOGREL_75,
        "clopidogrel 75 MG Oral Tablet",
        "Clinical Drug",
        "309362",
    ),
    ingredient(WARFARIN, "Warfarin", "11289"),
    drug(
        WARFARIN_5,
        "Warfarin Sodium 5 MG Oral Tablet",
        "Clinical Drug",
        "855332",
    ),
    ingredient(LEVOTHYROXINE, "levothyroxine", "10582"),
    drug(
        LEVOTHYROXINE_75MCG,
        "Levothyroxine Sodium 0.075 MG Oral Tablet",
        "Clinical Drug",
        "966222",
    ),
    ingredient(DONEPEZIL, "donepezil", "135447"),
    drug(
        DONEPEZIL_10,
        "Donepezil hydrochloride 10 MG Oral Tablet",
        "Clinical Drug",
        "997223",
    ),
    ingredient(PREDNISONE, "Prednisone", "8640"),
    drug(
        PREDNISONE_5,
        "Prednisone 5 MG Oral Tablet",
        "Clinical Drug",
        "312617",
    ),
    ingredient(METHOTREXATE, "Methotrexate", "6851"),
    drug(
        METHOTREXATE_10,
        "Methotrexate 10 MG Oral Tablet",
        "Clinical Drug",
        "105586",
    ),
    ingredient(NITROGLYCERIN, "Nitroglycerin", "4917"),
    drug(
        NITROGLYCERIN_SPRAY,
        "Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray",
        "Clinical Drug",
        "705129",
    ),
    ingredient(CETIRIZINE, "Cetirizine", "20610"),
    drug(
        CETIRIZINE_10,
        "cetirizine hydrochloride 10 MG Oral Tablet",
        "Clinical Drug",
        "1014678",
    ),
    ingredient(OMEPRAZOLE, "omeprazole", "7646"),
    c(
        FLU_VACCINE,
        "Influenza, seasonal, injectable, preservative free",
        "Drug",
        "CVX",
        "CVX",
        "S",
        "140",
    ),
    ingredient(NITROFURANTOIN, "Nitrofurantoin", "7454"),
    drug(
        NITROFURANTOIN_50,
        "NITROFURANTOIN, MACROCRYSTALS 50 MG Oral Capsule",
        "Clinical Drug",
        "311995",
    ),
    ingredient(ALENDRONATE, "Alendronate", "46041"),
    drug(
        ALENDRONATE_10,
        "Alendronic acid 10 MG Oral Tablet",
        "Clinical Drug",
        "904419",
    ),
    ingredient(DORNASE_ALFA, "Dornase Alfa", "337623"),
    drug(
        DORNASE_ALFA_INHALANT,
        "Dornase Alfa 1 MG/ML Inhalant Solution [Pulmozyme]",
        "Branded Drug",
        "205532",
    ),
    // Procedures
    procedure(
        BLOOD_DRAW,
        "Collection of blood specimen for laboratory",
        "82078001",
    ),
    procedure(ECG, "Electrocardiographic procedure", "29303009"),
    procedure(CHEST_XRAY, "Plain chest X-ray", "399208008"),
    procedure(PCI, "Percutaneous coronary intervention", "415070008"),
    procedure(CABG, "Coronary artery bypass graft", "232717009"),
    procedure(
        TRANSFUSION,
        "Intravenous blood transfusion of packed cells",
        "180207008",
    ),
    procedure(APPENDECTOMY, "Appendectomy", "80146002"),
    procedure(CHOLECYSTECTOMY, "Cholecystectomy", "38102005"),
    procedure(
        LAP_CHOLECYSTECTOMY,
        "Laparoscopic cholecystectomy",
        "45595009",
    ),
    procedure(BONE_DENSITY_SCAN, "Bone density scan", "312681000"),
    procedure(
        MEDICATION_RECONCILIATION,
        "Medication Reconciliation",
        "430193006",
    ),
    procedure(CBT, "Cognitive and behavioral therapy", "228557008"),
    procedure(PSYCHIATRIC_FOLLOW_UP, "Psychiatric follow-up", "88848003"),
    procedure(
        PULMONARY_REHABILITATION,
        "Pulmonary rehabilitation",
        "15081005",
    ),
    procedure(CARDIOVERSION, "Direct current cardioversion", "180325003"),
    procedure(
        CATHETER_ABLATION,
        "Catheter ablation of tissue of heart",
        "18286008",
    ),
    procedure(SUTURE_WOUND, "Suture open wound", "288086009"),
    procedure(BONE_IMMOBILIZATION, "Bone immobilization", "274474001"),
    // Measurements
    loinc(HBA1C, "Hemoglobin A1c/Hemoglobin.total in Blood", "4548-4"),
    vital(SYSTOLIC_BP, "Systolic blood pressure", "8480-6"),
    vital(DIASTOLIC_BP, "Diastolic blood pressure", "8462-4"),
    vital(BMI, "Body mass index (BMI) [Ratio]", "39156-5"),
    vital(BODY_WEIGHT, "Body weight", "29463-7"),
    vital(BODY_HEIGHT, "Body height", "8302-2"),
    vital(HEART_RATE, "Heart rate", "8867-4"),
    loinc(
        TOTAL_CHOLESTEROL,
        "Cholesterol [Mass/volume] in Serum or Plasma",
        "2093-3",
    ),
    loinc(
        LDL_CHOLESTEROL,
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
        "13457-7",
    ),
    loinc(
        HDL_CHOLESTEROL,
        "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
        "2085-9",
    ),
    loinc(
        TRIGLYCERIDES,
        "Triglyceride [Mass/volume] in Serum or Plasma",
        "2571-8",
    ),
    loinc(
        GLUCOSE,
        "Glucose [Mass/volume] in Serum or Plasma",
        "2345-7",
    ),
    loinc(
        CREATININE,
        "Creatinine [Mass/volume] in Serum or Plasma",
        "2160-0",
    ),
    loinc(HEMOGLOBIN, "Hemoglobin [Mass/volume] in Blood", "718-7"),
    // EHR observations
    c(
        HISTORY_OF_MI,
        "History of myocardial infarction",
        "Observation",
        "SNOMED",
        "Context-dependent",
        "S",
        "399211009",
    ),
    c(
        HISTORY_OF_APPENDECTOMY,
        "History of appendectomy",
        "Observation",
        "SNOMED",
        "Context-dependent",
        "S",
        "428251008",
    ),
    c(
        ALLERGY_TO_PEANUTS,
        "Allergy to peanuts",
        "Observation",
        "SNOMED",
        "Clinical Finding",
        "S",
        "91935009",
    ),
    c(
        ALLERGY_TO_TREE_POLLEN,
        "Allergy to tree pollen",
        "Observation",
        "SNOMED",
        "Clinical Finding",
        "S",
        "419263009",
    ),
    c(
        LATEX_ALLERGY,
        "Latex allergy",
        "Observation",
        "SNOMED",
        "Clinical Finding",
        "S",
        "300916003",
    ),
];

/// Parent links (`child`, `parent`) of the condition hierarchy.
const IS_A: &[(i32, i32)] = &[
    (DISEASE, CLINICAL_FINDING),
    (CARDIOVASCULAR_DISORDER, DISEASE),
    (HEART_DISEASE, CARDIOVASCULAR_DISORDER),
    (RESPIRATORY_DISORDER, DISEASE),
    (DIABETES_MELLITUS, DISEASE),
    (T2DM, DIABETES_MELLITUS),
    (T1DM, DIABETES_MELLITUS),
    (HYPERTENSIVE_DISORDER, CARDIOVASCULAR_DISORDER),
    (ESSENTIAL_HYPERTENSION, HYPERTENSIVE_DISORDER),
    (HYPERLIPIDEMIA, DISEASE),
    (OBESITY, DISEASE),
    (ASTHMA, RESPIRATORY_DISORDER),
    (COPD, RESPIRATORY_DISORDER),
    (EMPHYSEMA, COPD),
    (BRONCHITIS, RESPIRATORY_DISORDER),
    (ACUTE_BRONCHITIS, BRONCHITIS),
    (PNEUMONIA, RESPIRATORY_DISORDER),
    (VIRAL_SINUSITIS, RESPIRATORY_DISORDER),
    (ACUTE_VIRAL_PHARYNGITIS, RESPIRATORY_DISORDER),
    (STREP_THROAT, RESPIRATORY_DISORDER),
    (SEASONAL_ALLERGIC_RHINITIS, RESPIRATORY_DISORDER),
    (DEPRESSIVE_DISORDER, DISEASE),
    (ANXIETY_DISORDER, DISEASE),
    (GERD, DISEASE),
    (OSTEOARTHRITIS, DISEASE),
    (ISCHEMIC_HEART_DISEASE, HEART_DISEASE),
    (MYOCARDIAL_INFARCTION, ISCHEMIC_HEART_DISEASE),
    (CORONARY_ARTERIOSCLEROSIS, HEART_DISEASE),
    (ATRIAL_FIBRILLATION, HEART_DISEASE),
    (CONGESTIVE_HEART_FAILURE, HEART_DISEASE),
    (CEREBROVASCULAR_ACCIDENT, DISEASE),
    (CHRONIC_KIDNEY_DISEASE, DISEASE),
    (HYPOTHYROIDISM, DISEASE),
    (ALZHEIMERS, DISEASE),
    (FAMILIAL_ALZHEIMERS_EARLY_ONSET, ALZHEIMERS),
    (BREAST_CANCER, DISEASE),
    (SLEEP_APNEA, DISEASE),
    (RHEUMATOID_ARTHRITIS, DISEASE),
    (OSTEOPOROSIS, DISEASE),
    (OTITIS_MEDIA, DISEASE),
    (CYSTITIS, DISEASE),
    (SPRAIN_OF_ANKLE, CLINICAL_FINDING),
    (CONCUSSION, CLINICAL_FINDING),
    (FRACTURE_OF_FOREARM, CLINICAL_FINDING),
    (GI_HEMORRHAGE, CLINICAL_FINDING),
    (PEPTIC_ULCER, DISEASE),
    (GALLSTONE, DISEASE),
    (ACUTE_CHOLECYSTITIS, DISEASE),
    (APPENDICITIS, DISEASE),
    (CYSTIC_FIBROSIS, DISEASE),
    (MULTIPLE_SCLEROSIS, DISEASE),
    (MYASTHENIA_GRAVIS, DISEASE),
    (SYSTEMIC_LUPUS, DISEASE),
    (ANGIODYSPLASIA_OF_STOMACH, DISEASE),
];

/// Drug products and their ingredients.
const HAS_INGREDIENT: &[(i32, i32)] = &[
    (METFORMIN_ER_500, METFORMIN),
    (AMLODIPINE_5, AMLODIPINE),
    (ATORVASTATIN_80, ATORVASTATIN),
    (SIMVASTATIN_20, SIMVASTATIN),
    (ALBUTEROL_INHALER, ALBUTEROL),
    (FLUTICASONE_SALMETEROL_INHALER, FLUTICASONE),
    (FLUTICASONE_SALMETEROL_INHALER, SALMETEROL),
    (CELECOXIB_200, CELECOXIB),
    (DICLOFENAC_75, DICLOFENAC),
    (NAPROXEN_500, NAPROXEN),
    (IBUPROFEN_200, IBUPROFEN),
    (ACETAMINOPHEN_325, ACETAMINOPHEN),
    (AMOXICILLIN_500, AMOXICILLIN),
    (AMOXICILLIN_CLAVULANATE, AMOXICILLIN),
    (AMOXICILLIN_CLAVULANATE, CLAVULANATE),
    (DOXYCYCLINE_100, DOXYCYCLINE),
    (ASPIRIN_81, ASPIRIN),
    (CLOPIDOGREL_75, CLOPIDOGREL),
    (WARFARIN_5, WARFARIN),
    (LEVOTHYROXINE_75MCG, LEVOTHYROXINE),
    (DONEPEZIL_10, DONEPEZIL),
    (PREDNISONE_5, PREDNISONE),
    (METHOTREXATE_10, METHOTREXATE),
    (NITROGLYCERIN_SPRAY, NITROGLYCERIN),
    (CETIRIZINE_10, CETIRIZINE),
    (NITROFURANTOIN_50, NITROFURANTOIN),
    (ALENDRONATE_10, ALENDRONATE),
    (DORNASE_ALFA_INHALANT, DORNASE_ALFA),
];

/// Source (non-standard) concepts and the standard concept each maps to.
const MAPS_TO: &[(i32, i32)] = &[
    (GI_HEMORRHAGE_ICD10, GI_HEMORRHAGE),
    (CELECOXIB_200_NDC, CELECOXIB_200),
    (DICLOFENAC_75_NDC, DICLOFENAC_75),
];

/// All concepts: the fixed list plus the survey modules, questions and answers.
pub fn all_concepts() -> Vec<ConceptDef> {
    let mut all: Vec<ConceptDef> = CONCEPTS
        .iter()
        .map(|d| {
            c(
                d.id,
                d.name,
                d.domain,
                d.vocabulary,
                d.class,
                d.standard,
                d.code,
            )
        })
        .collect();
    for s in super::survey::SURVEYS {
        all.push(ppi(s.concept_id, s.name, "Module", s.code));
    }
    for q in super::survey::QUESTIONS {
        all.push(ppi(q.id, q.text, "Question", q.code));
        for a in q.answers {
            all.push(ppi(a.id, a.text, "Answer", a.code));
        }
    }
    for a in super::survey::MISSING_ANSWERS {
        all.push(ppi(a.id, a.text, "Answer", a.code));
    }
    all.sort_by_key(|d| d.id);
    all.dedup_by_key(|d| d.id);
    all
}

/// Parent links of the whole vocabulary: conditions, drug ingredients, survey items.
fn parent_links() -> Vec<(i32, i32)> {
    let mut links: Vec<(i32, i32)> = IS_A.to_vec();
    links.extend_from_slice(HAS_INGREDIENT);
    for q in super::survey::QUESTIONS {
        links.push((q.id, q.survey.concept_id));
        for a in q.answers {
            links.push((a.id, q.id));
        }
    }
    links.sort_unstable();
    links.dedup();
    links
}

/// `(ancestor, descendant) -> (min, max)` levels of separation.
pub fn ancestor_map() -> BTreeMap<(i32, i32), (i32, i32)> {
    let concepts = all_concepts();
    let standard: BTreeSet<i32> = concepts
        .iter()
        .filter(|d| !d.standard.is_empty())
        .map(|d| d.id)
        .collect();
    let mut parents: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (child, parent) in parent_links() {
        parents.entry(child).or_default().push(parent);
    }
    let mut out = BTreeMap::new();
    for &d in &standard {
        // Walk up every path, recording the shortest and longest distance to each ancestor.
        let mut frontier = vec![(d, 0)];
        while let Some((node, level)) = frontier.pop() {
            let e = out.entry((node, d)).or_insert((level, level));
            e.0 = e.0.min(level);
            e.1 = e.1.max(level);
            for &p in parents.get(&node).map(|v| v.as_slice()).unwrap_or(&[]) {
                frontier.push((p, level + 1));
            }
        }
    }
    out
}

const VALID_START: i32 = days_from_civil(1970, 1, 1);
const VALID_END: i32 = days_from_civil(2099, 12, 31);

pub fn concept_batch() -> RecordBatch {
    let mut t = Concept::new();
    for d in all_concepts() {
        t.concept_id.append_value(d.id);
        t.concept_name.append_value(d.name);
        t.domain_id.append_value(d.domain);
        t.vocabulary_id.append_value(d.vocabulary);
        t.concept_class_id.append_value(d.class);
        t.standard_concept
            .append_option((!d.standard.is_empty()).then_some(d.standard));
        t.concept_code.append_value(d.code);
        t.valid_start_date.append_value(VALID_START);
        t.valid_end_date.append_value(VALID_END);
        t.invalid_reason.append_null();
    }
    t.finish()
}

pub fn concept_ancestor_batch() -> RecordBatch {
    let mut t = ConceptAncestor::new();
    for ((a, d), (min, max)) in ancestor_map() {
        t.ancestor_concept_id.append_value(a);
        t.descendant_concept_id.append_value(d);
        t.min_levels_of_separation.append_value(min);
        t.max_levels_of_separation.append_value(max);
    }
    t.finish()
}

pub fn concept_relationship_batch() -> RecordBatch {
    let mut rows: BTreeSet<(i32, i32, &'static str)> = BTreeSet::new();
    for &(child, parent) in IS_A {
        rows.insert((child, parent, "Is a"));
        rows.insert((parent, child, "Subsumes"));
    }
    for &(product, ing) in HAS_INGREDIENT {
        rows.insert((product, ing, "RxNorm has ing"));
        rows.insert((ing, product, "RxNorm ing of"));
    }
    for &(source, standard) in MAPS_TO {
        rows.insert((source, standard, "Maps to"));
        rows.insert((standard, source, "Mapped from"));
    }
    // Every standard concept maps to itself, as in the real vocabulary.
    for d in all_concepts() {
        if d.standard == "S" {
            rows.insert((d.id, d.id, "Maps to"));
            rows.insert((d.id, d.id, "Mapped from"));
        }
    }
    let mut t = ConceptRelationship::new();
    for (a, b, rel) in rows {
        t.concept_id_1.append_value(a);
        t.concept_id_2.append_value(b);
        t.relationship_id.append_value(rel);
        t.valid_start_date.append_value(VALID_START);
        t.valid_end_date.append_value(VALID_END);
        t.invalid_reason.append_null();
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_are_consistent() {
        let map = ancestor_map();
        let concepts = all_concepts();
        let ids: BTreeSet<i32> = concepts.iter().map(|d| d.id).collect();
        assert_eq!(ids.len(), concepts.len(), "duplicate concept ids");
        for d in &concepts {
            if !d.standard.is_empty() {
                assert_eq!(
                    map.get(&(d.id, d.id)),
                    Some(&(0, 0)),
                    "{} is not its own ancestor",
                    d.id
                );
            }
        }
        for (a, d) in map.keys() {
            assert!(
                ids.contains(a) && ids.contains(d),
                "ancestor row ({a}, {d}) names an unknown concept"
            );
        }
        assert!(map.contains_key(&(DIABETES_MELLITUS, T2DM)));
        assert!(map.contains_key(&(DIABETES_MELLITUS, T1DM)));
        assert!(map.contains_key(&(HYPERTENSIVE_DISORDER, ESSENTIAL_HYPERTENSION)));
        assert!(map.contains_key(&(METFORMIN, METFORMIN_ER_500)));
        assert!(map.contains_key(&(CELECOXIB, CELECOXIB_200)));
        assert_eq!(
            map.get(&(CLINICAL_FINDING, ESSENTIAL_HYPERTENSION)),
            Some(&(4, 4))
        );
        assert!(
            !map.contains_key(&(T2DM, DIABETES_MELLITUS)),
            "ancestry points upwards only"
        );
    }

    #[test]
    fn every_parent_link_names_known_concepts() {
        let ids: BTreeSet<i32> = all_concepts().iter().map(|d| d.id).collect();
        for (child, parent) in parent_links().into_iter().chain(MAPS_TO.iter().copied()) {
            assert!(ids.contains(&child), "unknown concept {child}");
            assert!(ids.contains(&parent), "unknown concept {parent}");
        }
    }
}
