//! A participant's health and EHR history: chronic conditions with realistic prevalences and
//! comorbidity, their treatments, and the visits that every event hangs off.
//!
//! The model, in order:
//! 1. latent traits (height, BMI, blood pressure, lipids, …) from the participant's demographics
//!    and named genotypes;
//! 2. chronic conditions present by the participant's last day, each with an onset date, from
//!    logistic risk models (age, sex, race, BMI, smoking, genotype, other conditions);
//! 3. treatment plans decided at diagnosis (metformin for type 2 diabetes, lisinopril or
//!    amlodipine for hypertension, statins, inhalers, sertraline, NSAIDs for osteoarthritis …);
//! 4. for participants with EHR data, an EHR window and the visits in it: a first visit,
//!    a visit at each new diagnosis, routine and acute outpatient visits, emergency visits and
//!    admissions (myocardial infarction, stroke, gastrointestinal bleeding on NSAIDs or warfarin,
//!    pneumonia, …), each carrying the conditions, prescriptions, procedures, measurements and
//!    observations of that encounter, dated inside the visit.
//!
//! Rows are collected per participant, sorted by date and numbered `person_id * 10_000 + n`.

use std::collections::BTreeSet;

use super::genomics::{self, Genome};
use super::ids::*;
use super::people::{Demographics, PLANTED, Race, Smoking};
use super::rng::{
    Rand, chance, exponential, int_in, logistic, month_of, normal, normal_clamped, pick, poisson,
    uniform, years,
};

/// Row ids: `person_id * ROW_ID_STRIDE + n`, n = 1, 2, … per participant and table.
pub const ROW_ID_STRIDE: i64 = 10_000;

pub fn row_id(pid: i64, n: usize) -> i64 {
    pid * ROW_ID_STRIDE + n as i64 + 1
}

// ------------------------------------------------------------------------------------------------
// Traits
// ------------------------------------------------------------------------------------------------

/// Latent, mostly stable physiology.
pub struct Traits {
    pub height_cm: f64,
    /// BMI at the cutoff, and its yearly drift.
    pub bmi: f64,
    pub bmi_slope: f64,
    pub sbp: f64,
    pub resting_hr: f64,
    pub ldl: f64,
    pub hdl: f64,
    pub triglycerides: f64,
    pub a1c_diabetic: f64,
    pub hemoglobin: f64,
    pub creatinine: f64,
    /// Activity level, standard normal (drives steps and active minutes).
    pub activity: f64,
    pub primary_provider: i64,
    pub clinic: i64,
    pub hospital: i64,
}

pub fn draw_traits(rng: &mut Rand, d: &Demographics, g: &Genome) -> Traits {
    let age = d.age_on(d.last_day()) as f64;
    let height_cm = if d.female {
        normal(rng, 162.0, 6.8)
    } else {
        normal(rng, 175.5, 7.4)
    } - if d.race == Race::Asian { 4.0 } else { 0.0 };
    let race_bmi = match d.race {
        Race::Black => 1.6,
        Race::Asian => -3.0,
        Race::Nhpi => 3.0,
        _ => 0.0,
    } + if d.hispanic == Some(true) { 1.0 } else { 0.0 };
    let age_bmi = -0.004 * (age - 55.0).powi(2) + 1.2;
    let bmi = (normal(rng, 27.6, 5.6) + race_bmi + age_bmi - 0.5 * d.ses
        + 0.4 * g.count(genomics::FTO) as f64)
        .clamp(15.5, 62.0);
    let fh = g.carries_any(&genomics::LDLR_FH);
    Traits {
        height_cm: height_cm.clamp(140.0, 205.0),
        bmi,
        bmi_slope: normal(rng, 0.12, 0.25),
        sbp: normal(rng, 102.0 + 0.38 * age + 0.35 * (bmi - 27.0), 9.0)
            + if d.race == Race::Black { 4.0 } else { 0.0 },
        resting_hr: normal_clamped(rng, 68.0 + 0.15 * (bmi - 27.0), 7.0, 45.0, 100.0),
        ldl: normal(rng, 108.0 + 0.35 * (age - 45.0).max(0.0), 26.0) + if fh { 95.0 } else { 0.0 }
            - 28.0 * g.count(genomics::PCSK9_R46L) as f64,
        hdl: normal_clamped(
            rng,
            if d.female { 58.0 } else { 47.0 } - 0.3 * (bmi - 27.0),
            11.0,
            20.0,
            110.0,
        ),
        triglycerides: (normal(rng, 4.75 + 0.02 * (bmi - 27.0), 0.45))
            .exp()
            .clamp(35.0, 1200.0),
        a1c_diabetic: normal_clamped(rng, 7.7, 1.1, 6.5, 13.5),
        hemoglobin: if d.female {
            normal(rng, 13.3, 0.9)
        } else {
            normal(rng, 14.8, 1.0)
        },
        creatinine: if d.female {
            normal(rng, 0.78, 0.12)
        } else {
            normal(rng, 1.0, 0.14)
        }
        .max(0.4),
        activity: normal(rng, 0.0, 1.0) - 0.03 * (bmi - 27.0) - 0.01 * (age - 45.0),
        primary_provider: int_in(rng, 1, 4_000),
        clinic: int_in(rng, 1, 400),
        hospital: 1_000 + int_in(rng, 1, 60),
    }
}

// ------------------------------------------------------------------------------------------------
// Conditions and treatments
// ------------------------------------------------------------------------------------------------

/// How a drug is prescribed.
#[derive(Clone, Copy)]
pub struct DrugSpec {
    pub concept: i32,
    pub source_value: &'static str,
    pub source_concept: i32,
    pub days_supply: i32,
    pub quantity: f64,
    pub sig: &'static str,
    pub oral: bool,
}

const fn oral(concept: i32, source_value: &'static str, days: i32, sig: &'static str) -> DrugSpec {
    DrugSpec {
        concept,
        source_value,
        source_concept: 0,
        days_supply: days,
        quantity: days as f64,
        sig,
        oral: true,
    }
}

const fn other(
    concept: i32,
    source_value: &'static str,
    days: i32,
    quantity: f64,
    sig: &'static str,
) -> DrugSpec {
    DrugSpec {
        concept,
        source_value,
        source_concept: 0,
        days_supply: days,
        quantity,
        sig,
        oral: false,
    }
}

const DAILY: &str = "Take 1 tablet by mouth once daily";
const TWICE_DAILY: &str = "Take 1 tablet by mouth twice daily";

pub const METFORMIN_RX: DrugSpec = oral(
    METFORMIN_ER_500,
    "860975",
    90,
    "Take 1 tablet by mouth daily with evening meal",
);
pub const INSULIN_RX: DrugSpec = other(
    INSULIN_GLARGINE,
    "insulin glargine 100 UNT/ML Injectable Solution",
    30,
    10.0,
    "Inject 20 units subcutaneously at bedtime",
);
pub const LISINOPRIL_RX: DrugSpec = oral(LISINOPRIL, "lisinopril 10 MG Oral Tablet", 90, DAILY);
pub const AMLODIPINE_RX: DrugSpec = oral(AMLODIPINE_5, "197361", 90, DAILY);
pub const ATORVASTATIN_RX: DrugSpec = oral(
    ATORVASTATIN_80,
    "259255",
    90,
    "Take 1 tablet by mouth at bedtime",
);
pub const SIMVASTATIN_RX: DrugSpec = oral(
    SIMVASTATIN_20,
    "312961",
    90,
    "Take 1 tablet by mouth at bedtime",
);
pub const ALBUTEROL_RX: DrugSpec = other(
    ALBUTEROL_INHALER,
    "745679",
    30,
    1.0,
    "Inhale 2 puffs every 4 to 6 hours as needed",
);
pub const ADVAIR_RX: DrugSpec = other(
    FLUTICASONE_SALMETEROL_INHALER,
    "896209",
    30,
    1.0,
    "Inhale 1 puff twice daily",
);
pub const SERTRALINE_RX: DrugSpec = oral(SERTRALINE, "sertraline 50 MG Oral Tablet", 90, DAILY);
pub const CELECOXIB_RX: DrugSpec = DrugSpec {
    source_concept: CELECOXIB_200_NDC,
    ..oral(CELECOXIB_200, "00025152531", 30, DAILY)
};
pub const DICLOFENAC_RX: DrugSpec = DrugSpec {
    source_concept: DICLOFENAC_75_NDC,
    ..oral(DICLOFENAC_75, "00781178901", 30, TWICE_DAILY)
};
pub const NAPROXEN_RX: DrugSpec = oral(NAPROXEN_500, "198014", 30, TWICE_DAILY);
pub const IBUPROFEN_RX: DrugSpec = oral(
    IBUPROFEN_200,
    "310965",
    10,
    "Take 2 tablets by mouth every 6 hours as needed",
);
pub const ACETAMINOPHEN_RX: DrugSpec = oral(
    ACETAMINOPHEN_325,
    "313782",
    10,
    "Take 2 tablets by mouth every 6 hours as needed",
);
pub const AMOXICILLIN_RX: DrugSpec = oral(
    AMOXICILLIN_500,
    "308192",
    10,
    "Take 1 tablet by mouth three times daily",
);
pub const AUGMENTIN_RX: DrugSpec = oral(AMOXICILLIN_CLAVULANATE, "562251", 10, TWICE_DAILY);
pub const DOXYCYCLINE_RX: DrugSpec = oral(DOXYCYCLINE_100, "1650142", 7, TWICE_DAILY);
pub const NITROFURANTOIN_RX: DrugSpec = oral(
    NITROFURANTOIN_50,
    "311995",
    5,
    "Take 1 capsule by mouth four times daily",
);
pub const ASPIRIN_RX: DrugSpec = oral(ASPIRIN_81, "243670", 90, DAILY);
pub const CLOPIDOGREL_RX: DrugSpec = oral(CLOPIDOGREL_75, "309362", 90, DAILY);
pub const WARFARIN_RX: DrugSpec = oral(
    WARFARIN_5,
    "855332",
    30,
    "Take as directed by anticoagulation clinic",
);
pub const LEVOTHYROXINE_RX: DrugSpec = oral(
    LEVOTHYROXINE_75MCG,
    "966222",
    90,
    "Take 1 tablet by mouth every morning",
);
pub const DONEPEZIL_RX: DrugSpec = oral(
    DONEPEZIL_10,
    "997223",
    90,
    "Take 1 tablet by mouth at bedtime",
);
pub const PREDNISONE_RX: DrugSpec = oral(
    PREDNISONE_5,
    "312617",
    5,
    "Take 8 tablets by mouth daily for 5 days",
);
pub const METHOTREXATE_RX: DrugSpec = oral(
    METHOTREXATE_10,
    "105586",
    28,
    "Take 1 tablet by mouth once weekly",
);
pub const NITROGLYCERIN_RX: DrugSpec = other(
    NITROGLYCERIN_SPRAY,
    "705129",
    30,
    1.0,
    "1 spray under the tongue as needed for chest pain",
);
pub const CETIRIZINE_RX: DrugSpec = oral(CETIRIZINE_10, "1014678", 30, DAILY);
pub const OMEPRAZOLE_RX: DrugSpec = oral(
    OMEPRAZOLE,
    "omeprazole 20 MG Delayed Release Oral Capsule",
    90,
    "Take 1 capsule by mouth daily before breakfast",
);
pub const ALENDRONATE_RX: DrugSpec = oral(ALENDRONATE_10, "904419", 90, DAILY);
pub const DORNASE_RX: DrugSpec = other(
    DORNASE_ALFA_INHALANT,
    "205532",
    30,
    75.0,
    "Inhale 2.5 mg via nebulizer once daily",
);
pub const FLU_SHOT: DrugSpec = other(FLU_VACCINE, "140", 1, 0.5, "0.5 mL intramuscularly once");

/// A course of a drug: prescribed at the outpatient visits between `start` and `stop`.
#[derive(Clone, Copy)]
pub struct Plan {
    pub drug: DrugSpec,
    pub start: i32,
    pub stop: i32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FirstSeen {
    Outpatient,
    Inpatient,
}

pub struct Chronic {
    pub concept: i32,
    pub icd10: &'static str,
    pub onset: i32,
    /// Chance of being recorded again at a later outpatient visit.
    pub mention: f64,
    pub first_seen: FirstSeen,
    pub plans: Vec<Plan>,
}

/// An acute event that brings the participant to the hospital.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    MyocardialInfarction,
    GiBleed,
    Appendicitis,
    Cholecystitis,
}

pub struct Health {
    pub chronic: Vec<Chronic>,
    pub events: Vec<(EventKind, i32)>,
}

impl Health {
    pub fn get(&self, concept: i32) -> Option<&Chronic> {
        self.chronic.iter().find(|c| c.concept == concept)
    }

    pub fn has_by(&self, concept: i32, day: i32) -> bool {
        self.get(concept).is_some_and(|c| c.onset <= day)
    }

    /// First day a drug of `concepts` is taken, if ever.
    pub fn treated_from(&self, concepts: &[i32]) -> Option<i32> {
        self.chronic
            .iter()
            .flat_map(|c| c.plans.iter())
            .filter(|p| concepts.contains(&p.drug.concept))
            .map(|p| p.start)
            .min()
    }

    pub fn chronic_count_by(&self, day: i32) -> usize {
        self.chronic
            .iter()
            .filter(|c| c.onset <= day && c.mention > 0.0)
            .count()
    }
}

/// The window of EHR data: `(first day, last day)`.
pub fn ehr_window(rng: &mut Rand, d: &Demographics) -> (i32, i32) {
    let last = d.last_day();
    let end = last
        - if d.death.is_some() {
            int_in(rng, 0, 20)
        } else {
            int_in(rng, 0, 240)
        } as i32;
    let span = match uniform(rng) {
        u if u < 0.25 => 0.2 + 1.8 * uniform(rng),
        u if u < 0.75 => 2.0 + 6.0 * uniform(rng),
        _ => 8.0 + 5.0 * uniform(rng),
    };
    let adult = d.birth + years(18.0);
    let start = (end - years(span)).max(adult).min(end);
    (start, end)
}

/// Whether the condition is present by the last day, from a logistic risk at that age, and
/// its onset: uniformly between `earliest_age` (or `span` years before the last day, whichever
/// is later) and the last day.
fn onset(
    rng: &mut Rand,
    d: &Demographics,
    logit: f64,
    earliest_age: f64,
    span: f64,
) -> Option<i32> {
    if !chance(rng, logistic(logit)) {
        return None;
    }
    let last = d.last_day();
    let age = d.age_on(last) as f64;
    let from_age = earliest_age.max(age - span).min(age);
    let first = d.birth + years(from_age);
    Some(int_in(rng, first as i64, last as i64) as i32)
}

fn add(
    out: &mut Vec<Chronic>,
    concept: i32,
    icd10: &'static str,
    day: Option<i32>,
    mention: f64,
    first_seen: FirstSeen,
) -> Option<i32> {
    let day = day?;
    out.push(Chronic {
        concept,
        icd10,
        onset: day,
        mention,
        first_seen,
        plans: Vec::new(),
    });
    Some(day)
}

/// Chronic conditions, their treatments and hospital events.
pub fn draw_health(
    rng: &mut Rand,
    d: &Demographics,
    t: &Traits,
    g: &Genome,
    planted: &[usize],
    window: Option<(i32, i32)>,
) -> Health {
    let r = Risk::of(d, t);
    let mut c: Vec<Chronic> = Vec::new();
    // One draw after another in a fixed order: the order is part of the generator's output.
    let m = metabolic(rng, d, t, g, &r, &mut c);
    common_conditions(rng, d, &r, &mut c);
    cardiovascular(rng, d, g, &r, &m, &mut c);
    other_conditions(rng, d, g, &r, &mut c);
    // Planted rare conditions: diagnosed inside the EHR window (planted participants have one).
    plant(rng, planted, window, &mut c);
    c.sort_by_key(|x| (x.onset, x.concept));
    plan_treatments(rng, d, window, &mut c);
    let events = match window {
        Some(window) => hospital_events(rng, &r, window, &mut c),
        None => Vec::new(),
    };
    Health { chronic: c, events }
}

/// The risk factors of a participant, as the condition models use them.
#[derive(Clone, Copy)]
struct Risk {
    age: f64,
    male: f64,
    female: f64,
    black: f64,
    hisp: f64,
    asian: f64,
    smoker: f64,
    frail: f64,
    /// BMI above 27.
    bmi: f64,
}

impl Risk {
    fn of(d: &Demographics, t: &Traits) -> Risk {
        let age = d.age_on(d.last_day()) as f64;
        let male = if d.female { 0.0 } else { 1.0 };
        let female = 1.0 - male;
        let black = if d.race == Race::Black { 1.0 } else { 0.0 };
        let hisp = if d.hispanic == Some(true) { 1.0 } else { 0.0 };
        let asian = if d.race == Race::Asian { 1.0 } else { 0.0 };
        let smoker = match d.smoking {
            Smoking::Never => 0.0,
            Smoking::Former => 0.7,
            Smoking::Current => 1.0,
        };
        let frail = d.frailty.ln() + if d.death.is_some() { 0.6 } else { 0.0 };
        let bmi = t.bmi - 27.0;
        Risk {
            age,
            male,
            female,
            black,
            hisp,
            asian,
            smoker,
            frail,
            bmi,
        }
    }
}

/// What the cardiovascular models need to know of the metabolic conditions.
struct Metabolic {
    htn: bool,
    dm: bool,
    hld: bool,
    /// 1 for a carrier of familial hypercholesterolemia, else 0.
    fh: f64,
}

/// Obesity, hypertension, diabetes and hyperlipidemia.
fn metabolic(
    rng: &mut Rand,
    d: &Demographics,
    t: &Traits,
    g: &Genome,
    r: &Risk,
    c: &mut Vec<Chronic>,
) -> Metabolic {
    use FirstSeen::Outpatient as OP;
    let Risk {
        age,
        male,
        black,
        hisp,
        asian,
        frail,
        bmi,
        ..
    } = *r;
    let obese = t.bmi >= 30.0;
    if obese {
        let logit = 0.1 + 0.15 * (t.bmi - 30.0);
        add(
            c,
            OBESITY,
            "E66.9",
            onset(rng, d, logit, 18.0, 25.0),
            0.3,
            OP,
        );
    }
    let htn = add(
        c,
        ESSENTIAL_HYPERTENSION,
        "I10",
        onset(
            rng,
            d,
            -5.3 + 0.075 * age + 0.09 * bmi + 0.6 * black + 0.25 * male + 0.3 * frail,
            25.0,
            30.0,
        ),
        0.45,
        OP,
    );
    let t2d_logit = -5.6
        + 0.06 * age
        + 0.13 * bmi
        + 0.45 * (black + hisp + asian).min(1.0)
        + 0.35 * g.count(genomics::TCF7L2) as f64
        + 0.3 * frail;
    let t2d = add(
        c,
        T2DM,
        "E11.9",
        onset(rng, d, t2d_logit, 30.0, 25.0),
        0.55,
        OP,
    );
    if t2d.is_none() {
        add(c, T1DM, "E10.9", onset(rng, d, -5.3, 5.0, 60.0), 0.6, OP);
    }
    let dm = t2d.is_some() || c.iter().any(|x| x.concept == T1DM);
    let fh = if g.carries_any(&genomics::LDLR_FH) {
        1.0
    } else {
        0.0
    };
    let hld = add(
        c,
        HYPERLIPIDEMIA,
        "E78.5",
        onset(
            rng,
            d,
            -4.6 + 0.065 * age + 0.04 * bmi + 3.0 * fh - 0.7 * g.count(genomics::PCSK9_R46L) as f64
                + 0.3 * dm as i32 as f64,
            25.0,
            30.0,
        ),
        0.4,
        OP,
    );
    Metabolic {
        htn: htn.is_some(),
        dm,
        hld: hld.is_some(),
        fh,
    }
}

/// Respiratory, mental health, digestive and joint conditions.
fn common_conditions(rng: &mut Rand, d: &Demographics, r: &Risk, c: &mut Vec<Chronic>) {
    use FirstSeen::Outpatient as OP;
    let Risk {
        age,
        female,
        smoker,
        frail,
        bmi,
        ..
    } = *r;
    add(
        c,
        ASTHMA,
        "J45.909",
        onset(rng, d, -2.45 + 0.3 * female + 0.02 * bmi, 2.0, 70.0),
        0.35,
        OP,
    );
    let copd_logit = -8.2 + 0.07 * age + 1.9 * smoker + 0.2 * frail;
    if let Some(day) = onset(rng, d, copd_logit, 40.0, 20.0) {
        let (concept, icd) = if chance(rng, 0.2) {
            (EMPHYSEMA, "J43.9")
        } else {
            (COPD, "J44.9")
        };
        add(c, concept, icd, Some(day), 0.5, OP);
    }
    let dep = add(
        c,
        DEPRESSIVE_DISORDER,
        "F32.A",
        onset(
            rng,
            d,
            -2.1 + 0.45 * female - 0.2 * d.ses + 0.2 * frail,
            15.0,
            50.0,
        ),
        0.4,
        OP,
    );
    add(
        c,
        ANXIETY_DISORDER,
        "F41.9",
        onset(
            rng,
            d,
            -2.4 + 0.5 * female + 0.8 * dep.is_some() as i32 as f64,
            15.0,
            50.0,
        ),
        0.35,
        OP,
    );
    add(
        c,
        GERD,
        "K21.9",
        onset(rng, d, -2.2 + 0.04 * bmi + 0.012 * (age - 45.0), 20.0, 40.0),
        0.3,
        OP,
    );
    add(
        c,
        OSTEOARTHRITIS,
        "M19.90",
        onset(
            rng,
            d,
            -6.2 + 0.08 * age + 0.07 * bmi + 0.2 * female,
            40.0,
            25.0,
        ),
        0.4,
        OP,
    );
}

/// Coronary disease, atrial fibrillation, heart failure, stroke and kidney disease.
fn cardiovascular(
    rng: &mut Rand,
    d: &Demographics,
    g: &Genome,
    r: &Risk,
    m: &Metabolic,
    c: &mut Vec<Chronic>,
) {
    use FirstSeen::{Inpatient as IP, Outpatient as OP};
    let Risk {
        age,
        male,
        smoker,
        frail,
        bmi,
        ..
    } = *r;
    let Metabolic { htn, dm, hld, fh } = *m;
    let cad_logit = -8.9
        + 0.085 * age
        + 0.7 * male
        + 0.7 * dm as i32 as f64
        + 0.5 * htn as i32 as f64
        + 0.5 * hld as i32 as f64
        + 0.6 * smoker
        + 1.2 * fh
        + 0.4 * frail;
    let cad = add(
        c,
        CORONARY_ARTERIOSCLEROSIS,
        "I25.10",
        onset(rng, d, cad_logit, 40.0, 25.0),
        0.45,
        OP,
    );
    let af = add(
        c,
        ATRIAL_FIBRILLATION,
        "I48.91",
        onset(
            rng,
            d,
            -10.2 + 0.1 * age + 0.35 * male + 0.4 * htn as i32 as f64 + 0.03 * bmi + 0.3 * frail,
            45.0,
            20.0,
        ),
        0.5,
        OP,
    );
    let chf_logit = -10.4
        + 0.09 * age
        + 0.9 * cad.is_some() as i32 as f64
        + 0.6 * htn as i32 as f64
        + 0.5 * dm as i32 as f64
        + 0.8 * af.is_some() as i32 as f64
        + 0.05 * bmi
        + 0.5 * frail;
    add(
        c,
        CONGESTIVE_HEART_FAILURE,
        "I50.9",
        onset(rng, d, chf_logit, 45.0, 15.0),
        0.55,
        if chance(rng, 0.5) { IP } else { OP },
    );
    let cva_logit = -9.6
        + 0.08 * age
        + 0.6 * htn as i32 as f64
        + 0.9 * af.is_some() as i32 as f64
        + 0.4 * dm as i32 as f64
        + 0.4 * smoker
        + 0.4 * frail;
    add(
        c,
        CEREBROVASCULAR_ACCIDENT,
        "I63.9",
        onset(rng, d, cva_logit, 45.0, 20.0),
        0.3,
        IP,
    );
    let apol1_high = g.count(genomics::APOL1_G1) == 2;
    let ckd_logit = -8.8
        + 0.075 * age
        + 0.9 * dm as i32 as f64
        + 0.6 * htn as i32 as f64
        + 1.6 * apol1_high as i32 as f64
        + 0.3 * frail;
    add(
        c,
        CHRONIC_KIDNEY_DISEASE,
        "N18.9",
        onset(rng, d, ckd_logit, 40.0, 20.0),
        0.45,
        OP,
    );
}

/// Thyroid, dementia, cancer, sleep, autoimmune, bone, allergic and ulcer conditions.
fn other_conditions(rng: &mut Rand, d: &Demographics, g: &Genome, r: &Risk, c: &mut Vec<Chronic>) {
    use FirstSeen::Outpatient as OP;
    let Risk {
        age,
        male,
        female,
        smoker,
        frail,
        bmi,
        ..
    } = *r;
    add(
        c,
        HYPOTHYROIDISM,
        "E03.9",
        onset(rng, d, -4.0 + 1.1 * female + 0.02 * age, 20.0, 50.0),
        0.35,
        OP,
    );
    let e4 = g.count(genomics::APOE_E4) as f64;
    if age >= 62.0 {
        let logit = -13.2 + 0.13 * age + 1.2 * e4 + if e4 >= 2.0 { 0.8 } else { 0.0 } + 0.3 * frail;
        add(
            c,
            ALZHEIMERS,
            "G30.9",
            onset(rng, d, logit, 62.0, 10.0),
            0.5,
            OP,
        );
    }
    if d.female {
        let brca = if g.carries_any(&genomics::BRCA) {
            2.3
        } else {
            0.0
        };
        add(
            c,
            BREAST_CANCER,
            "C50.919",
            onset(rng, d, -7.3 + 0.05 * age + brca, 30.0, 30.0),
            0.5,
            OP,
        );
    }
    add(
        c,
        SLEEP_APNEA,
        "G47.33",
        onset(
            rng,
            d,
            -5.2 + 0.035 * age + 0.14 * bmi + 0.7 * male,
            25.0,
            30.0,
        ),
        0.3,
        OP,
    );
    add(
        c,
        RHEUMATOID_ARTHRITIS,
        "M06.9",
        onset(rng, d, -5.3 + 0.7 * female + 0.02 * age, 25.0, 40.0),
        0.5,
        OP,
    );
    if d.female && age >= 50.0 {
        add(
            c,
            OSTEOPOROSIS,
            "M81.0",
            onset(rng, d, -9.3 + 0.105 * age - 0.05 * bmi, 50.0, 20.0),
            0.35,
            OP,
        );
    }
    add(
        c,
        SEASONAL_ALLERGIC_RHINITIS,
        "J30.2",
        onset(rng, d, -2.3, 5.0, 60.0),
        0.25,
        OP,
    );
    add(
        c,
        PEPTIC_ULCER,
        "K27.9",
        onset(rng, d, -5.6 + 0.02 * age + 0.4 * smoker, 25.0, 40.0),
        0.2,
        OP,
    );
}

/// The planted rare conditions of a participant, diagnosed inside the EHR window.
fn plant(rng: &mut Rand, planted: &[usize], window: Option<(i32, i32)>, c: &mut Vec<Chronic>) {
    use FirstSeen::Outpatient as OP;
    if let Some((start, end)) = window {
        for &g in planted {
            let group = &PLANTED[g];
            let day = int_in(rng, start as i64, end as i64) as i32;
            c.push(Chronic {
                concept: group.concept_id,
                icd10: group.icd10,
                onset: day,
                mention: 0.45,
                first_seen: OP,
                plans: Vec::new(),
            });
        }
    }
}

/// Treatments, decided at diagnosis (the EHR window's first day for earlier onsets).
fn plan_treatments(
    rng: &mut Rand,
    d: &Demographics,
    window: Option<(i32, i32)>,
    c: &mut [Chronic],
) {
    let diag = |onset: i32| match window {
        Some((start, _)) => onset.max(start),
        None => onset,
    };
    let mut planned: BTreeSet<i32> = BTreeSet::new();
    let last = d.last_day();
    for chronic in c.iter_mut() {
        let start = diag(chronic.onset);
        let mut plans: Vec<Plan> = Vec::new();
        let mut plan =
            |rng: &mut Rand, p: f64, drug: DrugSpec, delay: i32, duration: Option<i32>| {
                if planned.contains(&drug.concept) || !chance(rng, p) {
                    return false;
                }
                let s = start + delay;
                if s > last {
                    return false;
                }
                planned.insert(drug.concept);
                plans.push(Plan {
                    drug,
                    start: s,
                    stop: duration.map(|n| s + n).unwrap_or(i32::MAX),
                });
                true
            };
        match chronic.concept {
            T2DM => {
                plan(rng, 0.8, METFORMIN_RX, 0, None);
                let later = int_in(rng, 365, 5 * 365) as i32;
                plan(rng, 0.15, INSULIN_RX, later, None);
            }
            T1DM => {
                plan(rng, 1.0, INSULIN_RX, 0, None);
            }
            ESSENTIAL_HYPERTENSION => {
                let lis = plan(rng, 0.55, LISINOPRIL_RX, 0, None);
                let later = int_in(rng, 0, 700) as i32;
                plan(
                    rng,
                    if lis { 0.2 } else { 0.6 },
                    AMLODIPINE_RX,
                    if lis { later } else { 0 },
                    None,
                );
            }
            HYPERLIPIDEMIA | CORONARY_ARTERIOSCLEROSIS => {
                if !plan(rng, 0.6, ATORVASTATIN_RX, 0, None) {
                    plan(rng, 0.5, SIMVASTATIN_RX, 0, None);
                }
                if chronic.concept == CORONARY_ARTERIOSCLEROSIS {
                    plan(rng, 0.6, ASPIRIN_RX, 0, None);
                    plan(rng, 0.3, NITROGLYCERIN_RX, 0, None);
                }
            }
            ASTHMA | COPD | EMPHYSEMA => {
                plan(rng, 0.85, ALBUTEROL_RX, 0, None);
                let p = if chronic.concept == ASTHMA { 0.3 } else { 0.5 };
                let delay = int_in(rng, 0, 365) as i32;
                plan(rng, p, ADVAIR_RX, delay, None);
            }
            DEPRESSIVE_DISORDER => {
                let course = int_in(rng, 180, 2_000) as i32;
                plan(rng, 0.5, SERTRALINE_RX, 0, Some(course));
            }
            ANXIETY_DISORDER => {
                let course = int_in(rng, 180, 1_500) as i32;
                plan(rng, 0.25, SERTRALINE_RX, 0, Some(course));
            }
            GERD => {
                plan(rng, 0.6, OMEPRAZOLE_RX, 0, None);
            }
            OSTEOARTHRITIS if chance(rng, 0.75) => {
                let nsaid = *pick(
                    rng,
                    &[
                        (CELECOXIB_RX, 0.3),
                        (DICLOFENAC_RX, 0.3),
                        (NAPROXEN_RX, 0.15),
                        (ACETAMINOPHEN_RX, 0.25),
                    ],
                );
                let delay = int_in(rng, 0, 400) as i32;
                let course = int_in(rng, 60, 900) as i32;
                plan(rng, 1.0, nsaid, delay, Some(course));
            }
            ATRIAL_FIBRILLATION => {
                plan(rng, 0.5, WARFARIN_RX, 0, None);
            }
            CONGESTIVE_HEART_FAILURE => {
                plan(rng, 0.5, LISINOPRIL_RX, 0, None);
            }
            HYPOTHYROIDISM => {
                plan(rng, 0.9, LEVOTHYROXINE_RX, 0, None);
            }
            ALZHEIMERS => {
                plan(rng, 0.6, DONEPEZIL_RX, 0, None);
            }
            RHEUMATOID_ARTHRITIS => {
                plan(rng, 0.6, METHOTREXATE_RX, 0, None);
            }
            OSTEOPOROSIS => {
                plan(rng, 0.5, ALENDRONATE_RX, 0, None);
            }
            SEASONAL_ALLERGIC_RHINITIS => {
                let course = int_in(rng, 60, 700) as i32;
                plan(rng, 0.5, CETIRIZINE_RX, 0, Some(course));
            }
            CYSTIC_FIBROSIS => {
                plan(rng, 1.0, DORNASE_RX, 0, None);
            }
            ANGIODYSPLASIA_OF_STOMACH => {
                plan(rng, 1.0, OMEPRAZOLE_RX, 0, None);
            }
            _ => {}
        }
        chronic.plans = plans;
    }
}

/// Hospital events inside the EHR window, and the treatment a myocardial infarction adds.
fn hospital_events(
    rng: &mut Rand,
    r: &Risk,
    (start, end): (i32, i32),
    c: &mut [Chronic],
) -> Vec<(EventKind, i32)> {
    let Risk {
        age, female, bmi, ..
    } = *r;
    let mut events = Vec::new();
    let in_window = |day: i32| (start..=end).contains(&day).then_some(day);
    if let Some(cad) = c.iter().find(|x| x.concept == CORONARY_ARTERIOSCLEROSIS)
        && chance(rng, 0.3)
    {
        let from = cad.onset.max(start);
        if from <= end {
            events.push((
                EventKind::MyocardialInfarction,
                int_in(rng, from as i64, end as i64) as i32,
            ));
        }
    }
    // Gastrointestinal bleeding: NSAIDs and warfarin raise the risk, mostly in the old.
    let mut bleed_risk = 0.004 * ((end - start) as f64 / 365.25);
    let mut bleed_from = start;
    let nsaid = [CELECOXIB_200, DICLOFENAC_75, NAPROXEN_500];
    if let Some(on) = c
        .iter()
        .flat_map(|x| x.plans.iter())
        .find(|p| nsaid.contains(&p.drug.concept))
    {
        bleed_risk += 0.05 + if age > 65.0 { 0.05 } else { 0.0 };
        bleed_from = on.start;
    }
    if let Some(on) = c
        .iter()
        .flat_map(|x| x.plans.iter())
        .find(|p| p.drug.concept == WARFARIN_5)
    {
        bleed_risk += 0.05;
        bleed_from = bleed_from.max(on.start);
    }
    if c.iter().any(|x| x.concept == PEPTIC_ULCER) {
        bleed_risk += 0.04;
    }
    if chance(rng, bleed_risk.min(0.5)) {
        let day = bleed_from + exponential(rng, 1.0 / 400.0) as i32;
        if let Some(day) = in_window(day) {
            events.push((EventKind::GiBleed, day));
        }
    }
    let years_in = (end - start) as f64 / 365.25;
    if chance(rng, 0.0012 * years_in) {
        events.push((
            EventKind::Appendicitis,
            int_in(rng, start as i64, end as i64) as i32,
        ));
    }
    if chance(
        rng,
        (0.0015 + 0.0015 * female) * years_in * (1.0 + 0.03 * bmi).max(0.5),
    ) {
        events.push((
            EventKind::Cholecystitis,
            int_in(rng, start as i64, end as i64) as i32,
        ));
    }
    // After a myocardial infarction: clopidogrel for a year, aspirin for good.
    if let Some(&(_, mi)) = events
        .iter()
        .find(|e| e.0 == EventKind::MyocardialInfarction)
    {
        let cad = c
            .iter_mut()
            .find(|x| x.concept == CORONARY_ARTERIOSCLEROSIS)
            .expect("MI needs CAD");
        cad.plans.push(Plan {
            drug: CLOPIDOGREL_RX,
            start: mi,
            stop: mi + 365,
        });
        if !cad.plans.iter().any(|p| p.drug.concept == ASPIRIN_81) {
            cad.plans.push(Plan {
                drug: ASPIRIN_RX,
                start: mi,
                stop: i32::MAX,
            });
        }
    }
    events.sort_by_key(|e| e.1);
    events
}

// ------------------------------------------------------------------------------------------------
// Rows of one participant
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VisitKind {
    Outpatient,
    Emergency,
    Inpatient,
}

impl VisitKind {
    pub fn concept(self) -> i32 {
        match self {
            VisitKind::Outpatient => OUTPATIENT_VISIT,
            VisitKind::Emergency => ER_VISIT,
            VisitKind::Inpatient => INPATIENT_VISIT,
        }
    }

    pub fn source_value(self) -> &'static str {
        match self {
            VisitKind::Outpatient => "OP",
            VisitKind::Emergency => "ER",
            VisitKind::Inpatient => "IP",
        }
    }
}

pub struct VisitRow {
    pub start: i32,
    pub end: i32,
    pub start_secs: i64,
    pub end_secs: i64,
    pub kind: VisitKind,
    pub provider: Option<i64>,
    pub care_site: Option<i64>,
    pub admitted_from: Option<i32>,
    pub discharged_to: Option<i32>,
}

pub struct ConditionRow {
    pub day: i32,
    pub secs: i64,
    pub end: Option<i32>,
    pub concept: i32,
    pub status: i32,
    pub visit: usize,
    pub source: &'static str,
    pub source_concept: i32,
}

pub struct DrugRow {
    pub day: i32,
    pub secs: i64,
    pub end: i32,
    pub drug: DrugSpec,
    pub refills: i32,
    pub visit: usize,
}

pub struct ProcedureRow {
    pub day: i32,
    pub secs: i64,
    pub concept: i32,
    pub visit: usize,
}

pub struct MeasurementRow {
    pub day: i32,
    pub secs: i64,
    pub concept: i32,
    pub value: f64,
    pub visit: Option<usize>,
    pub type_concept: i32,
}

pub struct ObservationRow {
    pub day: i32,
    pub secs: i64,
    pub concept: i32,
    pub type_concept: i32,
    pub value_string: Option<&'static str>,
    pub value_concept: Option<i32>,
    pub visit: Option<usize>,
    pub source: &'static str,
    pub source_concept: i32,
    pub value_source: Option<&'static str>,
}

#[derive(Default)]
pub struct Rows {
    pub visits: Vec<VisitRow>,
    pub conditions: Vec<ConditionRow>,
    pub drugs: Vec<DrugRow>,
    pub procedures: Vec<ProcedureRow>,
    pub measurements: Vec<MeasurementRow>,
    pub observations: Vec<ObservationRow>,
}

/// Measurement metadata: unit, LOINC code, unit code, normal range, decimals.
pub struct MeasurementSpec {
    pub concept: i32,
    pub loinc: &'static str,
    pub unit: i32,
    pub unit_code: &'static str,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub decimals: i32,
}

pub const MEASUREMENTS: &[MeasurementSpec] = &[
    MeasurementSpec {
        concept: HBA1C,
        loinc: "4548-4",
        unit: UNIT_PERCENT,
        unit_code: "%",
        low: Some(4.0),
        high: Some(5.6),
        decimals: 1,
    },
    MeasurementSpec {
        concept: SYSTOLIC_BP,
        loinc: "8480-6",
        unit: UNIT_MMHG,
        unit_code: "mm[Hg]",
        low: None,
        high: None,
        decimals: 0,
    },
    MeasurementSpec {
        concept: DIASTOLIC_BP,
        loinc: "8462-4",
        unit: UNIT_MMHG,
        unit_code: "mm[Hg]",
        low: None,
        high: None,
        decimals: 0,
    },
    MeasurementSpec {
        concept: BMI,
        loinc: "39156-5",
        unit: UNIT_KG_M2,
        unit_code: "kg/m2",
        low: None,
        high: None,
        decimals: 1,
    },
    MeasurementSpec {
        concept: BODY_WEIGHT,
        loinc: "29463-7",
        unit: UNIT_KG,
        unit_code: "kg",
        low: None,
        high: None,
        decimals: 1,
    },
    MeasurementSpec {
        concept: BODY_HEIGHT,
        loinc: "8302-2",
        unit: UNIT_CM,
        unit_code: "cm",
        low: None,
        high: None,
        decimals: 1,
    },
    MeasurementSpec {
        concept: HEART_RATE,
        loinc: "8867-4",
        unit: UNIT_PER_MIN,
        unit_code: "/min",
        low: None,
        high: None,
        decimals: 0,
    },
    MeasurementSpec {
        concept: TOTAL_CHOLESTEROL,
        loinc: "2093-3",
        unit: UNIT_MG_DL,
        unit_code: "mg/dL",
        low: Some(0.0),
        high: Some(199.0),
        decimals: 0,
    },
    MeasurementSpec {
        concept: LDL_CHOLESTEROL,
        loinc: "13457-7",
        unit: UNIT_MG_DL,
        unit_code: "mg/dL",
        low: Some(0.0),
        high: Some(99.0),
        decimals: 0,
    },
    MeasurementSpec {
        concept: HDL_CHOLESTEROL,
        loinc: "2085-9",
        unit: UNIT_MG_DL,
        unit_code: "mg/dL",
        low: Some(40.0),
        high: Some(60.0),
        decimals: 0,
    },
    MeasurementSpec {
        concept: TRIGLYCERIDES,
        loinc: "2571-8",
        unit: UNIT_MG_DL,
        unit_code: "mg/dL",
        low: Some(0.0),
        high: Some(149.0),
        decimals: 0,
    },
    MeasurementSpec {
        concept: GLUCOSE,
        loinc: "2345-7",
        unit: UNIT_MG_DL,
        unit_code: "mg/dL",
        low: Some(70.0),
        high: Some(99.0),
        decimals: 0,
    },
    MeasurementSpec {
        concept: CREATININE,
        loinc: "2160-0",
        unit: UNIT_MG_DL,
        unit_code: "mg/dL",
        low: Some(0.6),
        high: Some(1.3),
        decimals: 2,
    },
    MeasurementSpec {
        concept: HEMOGLOBIN,
        loinc: "718-7",
        unit: UNIT_G_DL,
        unit_code: "g/dL",
        low: Some(12.0),
        high: Some(17.5),
        decimals: 1,
    },
];

pub fn measurement_spec(concept: i32) -> &'static MeasurementSpec {
    MEASUREMENTS
        .iter()
        .find(|m| m.concept == concept)
        .expect("known measurement")
}

/// Everything a value depends on.
pub struct Physiology<'a> {
    pub d: &'a Demographics,
    pub t: &'a Traits,
    pub h: &'a Health,
}

impl Physiology<'_> {
    fn years_to_cutoff(&self, day: i32) -> f64 {
        (self.d.last_day() - day) as f64 / 365.25
    }

    pub fn bmi(&self, rng: &mut Rand, day: i32) -> f64 {
        (self.t.bmi - self.t.bmi_slope * self.years_to_cutoff(day) + normal(rng, 0.0, 0.35))
            .clamp(14.0, 70.0)
    }

    pub fn weight(&self, bmi: f64) -> f64 {
        bmi * (self.t.height_cm / 100.0).powi(2)
    }

    pub fn systolic(&self, rng: &mut Rand, day: i32) -> f64 {
        let age_drift = -0.38 * self.years_to_cutoff(day);
        let mut v = self.t.sbp + age_drift + normal(rng, 0.0, 8.0);
        if self.h.has_by(ESSENTIAL_HYPERTENSION, day) {
            v += 18.0;
            if self
                .h
                .treated_from(&[LISINOPRIL, AMLODIPINE_5])
                .is_some_and(|s| s <= day)
            {
                v -= 11.0;
            }
        }
        v.clamp(80.0, 230.0)
    }

    pub fn diastolic(&self, rng: &mut Rand, systolic: f64) -> f64 {
        (0.55 * systolic + 12.0 + normal(rng, 0.0, 6.0)).clamp(40.0, 140.0)
    }

    pub fn heart_rate(&self, rng: &mut Rand, day: i32) -> f64 {
        let af = if self.h.has_by(ATRIAL_FIBRILLATION, day) {
            normal(rng, 12.0, 10.0)
        } else {
            0.0
        };
        (self.t.resting_hr + 4.0 + af + normal(rng, 0.0, 6.0)).clamp(38.0, 180.0)
    }

    pub fn hba1c(&self, rng: &mut Rand, day: i32) -> f64 {
        let diabetic = self.h.get(T2DM).or_else(|| self.h.get(T1DM));
        let age = self.d.age_on(day) as f64;
        let v = match diabetic {
            Some(dm) if dm.onset <= day => {
                let treated = self
                    .h
                    .treated_from(&[METFORMIN_ER_500, INSULIN_GLARGINE])
                    .is_some_and(|s| s <= day);
                self.t.a1c_diabetic - if treated { 0.7 } else { 0.0 } + normal(rng, 0.0, 0.35)
            }
            Some(dm) if dm.concept == T2DM && (dm.onset - day) < 5 * 365 => {
                // Prediabetes in the years before the diagnosis.
                let to_onset = (dm.onset - day) as f64 / 365.25;
                6.4 - 0.14 * to_onset + normal(rng, 0.0, 0.2)
            }
            _ => normal(
                rng,
                5.25 + 0.005 * (age - 40.0) + 0.01 * (self.t.bmi - 27.0),
                0.27,
            ),
        };
        v.clamp(4.0, 15.0)
    }

    fn on_statin(&self, day: i32) -> bool {
        self.h
            .treated_from(&[ATORVASTATIN_80, SIMVASTATIN_20])
            .is_some_and(|s| s <= day)
    }

    pub fn ldl(&self, rng: &mut Rand, day: i32) -> f64 {
        let mut v = self.t.ldl;
        if self.h.has_by(HYPERLIPIDEMIA, day) {
            v += 35.0;
        }
        if self.on_statin(day) {
            v *= 0.58;
        }
        (v + normal(rng, 0.0, 9.0)).clamp(25.0, 400.0)
    }

    pub fn hdl(&self, rng: &mut Rand) -> f64 {
        (self.t.hdl + normal(rng, 0.0, 4.0)).clamp(15.0, 120.0)
    }

    pub fn triglycerides(&self, rng: &mut Rand, day: i32) -> f64 {
        let dm = if self.h.has_by(T2DM, day) { 1.35 } else { 1.0 };
        (self.t.triglycerides * dm * normal(rng, 0.0, 0.15).exp()).clamp(30.0, 1500.0)
    }

    pub fn glucose(&self, rng: &mut Rand, day: i32) -> f64 {
        if self.h.has_by(T2DM, day) || self.h.has_by(T1DM, day) {
            normal_clamped(rng, 150.0, 40.0, 60.0, 450.0)
        } else {
            normal_clamped(rng, 92.0, 9.0, 62.0, 130.0)
        }
    }

    pub fn creatinine(&self, rng: &mut Rand, day: i32) -> f64 {
        let ckd = if self.h.has_by(CHRONIC_KIDNEY_DISEASE, day) {
            1.9
        } else {
            1.0
        };
        (self.t.creatinine * ckd + normal(rng, 0.0, 0.07)).clamp(0.3, 9.0)
    }

    pub fn hemoglobin(&self, rng: &mut Rand, bleeding: bool) -> f64 {
        let drop = if bleeding { normal(rng, 4.0, 1.0) } else { 0.0 };
        (self.t.hemoglobin - drop + normal(rng, 0.0, 0.4)).clamp(5.0, 20.0)
    }
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

struct Ehr<'a, 'b> {
    rng: &'b mut Rand,
    p: Physiology<'a>,
    rows: Rows,
}

impl Ehr<'_, '_> {
    fn measure(
        &mut self,
        visit: Option<usize>,
        day: i32,
        secs: i64,
        concept: i32,
        value: f64,
        type_concept: i32,
    ) {
        let spec = measurement_spec(concept);
        self.rows.measurements.push(MeasurementRow {
            day,
            secs,
            concept,
            value: round_to(value, spec.decimals),
            visit,
            type_concept,
        });
    }

    fn vitals(&mut self, v: usize, day: i32, secs: i64, weight: bool) {
        let sbp = self.p.systolic(self.rng, day);
        let dbp = self.p.diastolic(self.rng, sbp);
        self.measure(Some(v), day, secs, SYSTOLIC_BP, sbp, TYPE_EHR);
        self.measure(Some(v), day, secs, DIASTOLIC_BP, dbp, TYPE_EHR);
        if chance(self.rng, 0.45) {
            let hr = self.p.heart_rate(self.rng, day);
            self.measure(Some(v), day, secs, HEART_RATE, hr, TYPE_EHR);
        }
        if weight {
            let bmi = self.p.bmi(self.rng, day);
            let w = self.p.weight(bmi);
            self.measure(Some(v), day, secs, BODY_WEIGHT, w, TYPE_EHR);
            if chance(self.rng, 0.75) {
                self.measure(Some(v), day, secs, BMI, bmi, TYPE_EHR);
            }
            if chance(self.rng, 0.15) {
                let h = self.p.t.height_cm + normal(self.rng, 0.0, 0.6);
                self.measure(Some(v), day, secs, BODY_HEIGHT, h, TYPE_EHR);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn condition(
        &mut self,
        v: usize,
        day: i32,
        secs: i64,
        concept: i32,
        icd10: &'static str,
        primary: bool,
        end: Option<i32>,
    ) {
        let source_concept = if concept == GI_HEMORRHAGE {
            GI_HEMORRHAGE_ICD10
        } else {
            0
        };
        self.rows.conditions.push(ConditionRow {
            day,
            secs,
            end,
            concept,
            status: if primary {
                STATUS_PRIMARY_DIAGNOSIS
            } else {
                STATUS_SECONDARY_DIAGNOSIS
            },
            visit: v,
            source: icd10,
            source_concept,
        });
    }

    fn prescribe(&mut self, v: usize, day: i32, secs: i64, drug: DrugSpec, last: i32) {
        let refills = if drug.days_supply >= 30 && drug.concept != FLU_VACCINE {
            int_in(self.rng, 0, 3) as i32
        } else {
            0
        };
        let end = (day + drug.days_supply - 1).min(last).max(day);
        self.rows.drugs.push(DrugRow {
            day,
            secs,
            end,
            drug,
            refills,
            visit: v,
        });
    }

    fn procedure(&mut self, v: usize, day: i32, secs: i64, concept: i32) {
        self.rows.procedures.push(ProcedureRow {
            day,
            secs,
            concept,
            visit: v,
        });
    }

    fn observe(&mut self, v: usize, day: i32, secs: i64, concept: i32, code: &'static str) {
        self.rows.observations.push(ObservationRow {
            day,
            secs,
            concept,
            type_concept: TYPE_EHR,
            value_string: None,
            value_concept: None,
            visit: Some(v),
            source: code,
            source_concept: 0,
            value_source: None,
        });
    }

    /// Blood work: the lipid panel, a basic metabolic panel, HbA1c, hemoglobin.
    fn labs(&mut self, v: usize, day: i32, secs: i64, kind: VisitKind, bleeding: bool) {
        let h = self.p.h;
        let cardiometabolic = h.has_by(HYPERLIPIDEMIA, day)
            || h.has_by(T2DM, day)
            || h.has_by(CORONARY_ARTERIOSCLEROSIS, day)
            || h.has_by(ESSENTIAL_HYPERTENSION, day);
        let diabetic = h.has_by(T2DM, day) || h.has_by(T1DM, day);
        let mut drawn = false;
        let acute = kind != VisitKind::Outpatient;
        let t = secs + 1_200;
        if !acute && chance(self.rng, if diabetic { 0.55 } else { 0.05 }) {
            let a1c = self.p.hba1c(self.rng, day);
            self.measure(Some(v), day, t, HBA1C, a1c, TYPE_EHR);
            drawn = true;
        }
        if !acute && chance(self.rng, if cardiometabolic { 0.25 } else { 0.08 }) {
            let ldl = self.p.ldl(self.rng, day);
            let hdl = self.p.hdl(self.rng);
            let tg = self.p.triglycerides(self.rng, day);
            self.measure(
                Some(v),
                day,
                t,
                TOTAL_CHOLESTEROL,
                ldl + hdl + tg / 5.0,
                TYPE_EHR,
            );
            self.measure(Some(v), day, t, LDL_CHOLESTEROL, ldl, TYPE_EHR);
            self.measure(Some(v), day, t, HDL_CHOLESTEROL, hdl, TYPE_EHR);
            self.measure(Some(v), day, t, TRIGLYCERIDES, tg, TYPE_EHR);
            drawn = true;
        }
        if chance(self.rng, if acute { 0.7 } else { 0.15 }) {
            let glucose = self.p.glucose(self.rng, day);
            let creatinine = self.p.creatinine(self.rng, day);
            self.measure(Some(v), day, t, GLUCOSE, glucose, TYPE_EHR);
            self.measure(Some(v), day, t, CREATININE, creatinine, TYPE_EHR);
            drawn = true;
        }
        if bleeding || chance(self.rng, if acute { 0.6 } else { 0.08 }) {
            let hb = self.p.hemoglobin(self.rng, bleeding);
            self.measure(Some(v), day, t, HEMOGLOBIN, hb, TYPE_EHR);
            drawn = true;
        }
        if drawn && chance(self.rng, 0.6) {
            self.procedure(v, day, secs + 600, BLOOD_DRAW);
        }
    }
}

/// Why a visit happened.
#[derive(Clone, Copy)]
enum Reason {
    Routine,
    /// A chronic condition (index into `Health::chronic`) is diagnosed.
    Diagnosis(usize),
    Acute,
    Event(EventKind),
    Exacerbation,
}

struct Planned {
    day: i32,
    secs: i64,
    kind: VisitKind,
    reason: Reason,
    los: i32,
    admitted_from_er: bool,
}

const OUTPATIENT_ACUTE: &[((i32, &str), f64)] = &[
    ((VIRAL_SINUSITIS, "J01.90"), 0.15),
    ((ACUTE_VIRAL_PHARYNGITIS, "J02.9"), 0.12),
    ((ACUTE_BRONCHITIS, "J20.9"), 0.12),
    ((STREP_THROAT, "J02.0"), 0.05),
    ((OTITIS_MEDIA, "H66.90"), 0.04),
    ((CYSTITIS, "N30.90"), 0.05),
    ((SPRAIN_OF_ANKLE, "S93.409A"), 0.03),
];

const EMERGENCY_ACUTE: &[((i32, &str), f64)] = &[
    ((SPRAIN_OF_ANKLE, "S93.409A"), 0.12),
    ((FRACTURE_OF_FOREARM, "S52.90XA"), 0.07),
    ((CONCUSSION, "S06.0X0A"), 0.06),
    ((PNEUMONIA, "J18.9"), 0.05),
    ((ACUTE_BRONCHITIS, "J20.9"), 0.1),
    ((CYSTITIS, "N30.90"), 0.06),
    ((VIRAL_SINUSITIS, "J01.90"), 0.04),
    ((OTITIS_MEDIA, "H66.90"), 0.02),
];

const INPATIENT_ACUTE: &[((i32, &str), f64)] = &[
    ((PNEUMONIA, "J18.9"), 0.35),
    ((CYSTITIS, "N30.90"), 0.2),
    ((FRACTURE_OF_FOREARM, "S52.90XA"), 0.2),
    ((CONCUSSION, "S06.0X0A"), 0.05),
];

fn acute_treatment(rng: &mut Rand, concept: i32) -> Option<DrugSpec> {
    let (p, drug) = match concept {
        STREP_THROAT => (0.85, AMOXICILLIN_RX),
        OTITIS_MEDIA => (0.7, AMOXICILLIN_RX),
        VIRAL_SINUSITIS => (0.35, AUGMENTIN_RX),
        ACUTE_BRONCHITIS => (0.25, DOXYCYCLINE_RX),
        PNEUMONIA => (0.7, DOXYCYCLINE_RX),
        CYSTITIS => (0.8, NITROFURANTOIN_RX),
        ACUTE_VIRAL_PHARYNGITIS => (0.3, ACETAMINOPHEN_RX),
        SPRAIN_OF_ANKLE => (0.5, IBUPROFEN_RX),
        FRACTURE_OF_FOREARM | CONCUSSION => (0.6, ACETAMINOPHEN_RX),
        _ => return None,
    };
    chance(rng, p).then_some(drug)
}

/// The EHR of one participant inside `window`.
pub fn simulate(
    rng: &mut Rand,
    d: &Demographics,
    t: &Traits,
    h: &Health,
    window: (i32, i32),
) -> Rows {
    let mut planned = scheduled_visits(rng, h, window);
    care_visits(rng, d, h, window, &mut planned);
    planned.sort_by_key(|p| (p.day, p.secs, p.kind));

    let mut ehr = Ehr {
        rng,
        p: Physiology { d, t, h },
        rows: Rows::default(),
    };
    let mut history = History {
        diagnosed: vec![false; h.chronic.len()],
        flu_season_done: i32::MIN,
        allergies_done: false,
        bone_scan_done: false,
        rehab_done: false,
        had_mi: false,
        had_appendectomy: false,
    };
    for p in planned {
        ehr.visit(p, window.1, &mut history);
    }
    ehr.rows
}

fn office_time(rng: &mut Rand) -> i64 {
    int_in(rng, 8 * 3600, 17 * 3600)
}

fn any_time(rng: &mut Rand) -> i64 {
    int_in(rng, 0, 86_399)
}

/// The first visit of the window, the visits where chronic conditions are diagnosed, and the
/// emergency visits and admissions of hospital events.
fn scheduled_visits(rng: &mut Rand, h: &Health, (start, end): (i32, i32)) -> Vec<Planned> {
    let mut planned: Vec<Planned> = Vec::new();
    planned.push(Planned {
        day: start,
        secs: office_time(rng),
        kind: VisitKind::Outpatient,
        reason: Reason::Routine,
        los: 0,
        admitted_from_er: false,
    });
    for (i, c) in h.chronic.iter().enumerate() {
        if c.onset > start && c.onset <= end {
            let kind = if c.first_seen == FirstSeen::Inpatient {
                VisitKind::Inpatient
            } else {
                VisitKind::Outpatient
            };
            let los = if kind == VisitKind::Inpatient {
                2 + poisson(rng, 2.5) as i32
            } else {
                0
            };
            let secs = if kind == VisitKind::Inpatient {
                any_time(rng)
            } else {
                office_time(rng)
            };
            planned.push(Planned {
                day: c.onset,
                secs,
                kind,
                reason: Reason::Diagnosis(i),
                los,
                admitted_from_er: kind == VisitKind::Inpatient,
            });
        }
    }
    for &(event, day) in &h.events {
        let (los, via_er) = match event {
            EventKind::MyocardialInfarction => (3 + poisson(rng, 1.5) as i32, true),
            EventKind::GiBleed => (2 + poisson(rng, 1.5) as i32, true),
            EventKind::Appendicitis => (1 + poisson(rng, 1.0) as i32, true),
            EventKind::Cholecystitis => (1 + poisson(rng, 1.5) as i32, chance(rng, 0.6)),
        };
        let secs = any_time(rng).min(70_000);
        if via_er {
            planned.push(Planned {
                day,
                secs,
                kind: VisitKind::Emergency,
                reason: Reason::Event(event),
                los: 0,
                admitted_from_er: false,
            });
        }
        planned.push(Planned {
            day,
            secs: secs + 3 * 3600,
            kind: VisitKind::Inpatient,
            reason: Reason::Event(event),
            los,
            admitted_from_er: via_er,
        });
    }
    planned
}

/// Routine and acute outpatient care, emergency visits and admissions, at rates that grow with
/// the chronic conditions, age and frailty.
fn care_visits(
    rng: &mut Rand,
    d: &Demographics,
    h: &Health,
    (start, end): (i32, i32),
    planned: &mut Vec<Planned>,
) {
    let years_in = ((end - start) as f64 / 365.25).max(0.05);
    let chronic_now = h.chronic_count_by(end);
    let age_end = d.age_on(end) as f64;
    let op_rate = (1.0 + 0.35 * chronic_now as f64 + 0.01 * (age_end - 45.0)).clamp(0.5, 5.0)
        * d.frailty.sqrt();
    let mut day = start as f64;
    loop {
        day += exponential(rng, op_rate) * 365.25;
        if day > end as f64 {
            break;
        }
        let reason = if chance(rng, 0.16) {
            Reason::Acute
        } else {
            Reason::Routine
        };
        planned.push(Planned {
            day: day as i32,
            secs: office_time(rng),
            kind: VisitKind::Outpatient,
            reason,
            los: 0,
            admitted_from_er: false,
        });
    }
    let er = poisson(rng, (0.08 + 0.025 * chronic_now as f64) * years_in);
    for _ in 0..er {
        let day = int_in(rng, start as i64, end as i64) as i32;
        let reason = if chance(rng, 0.2) {
            Reason::Exacerbation
        } else {
            Reason::Acute
        };
        planned.push(Planned {
            day,
            secs: any_time(rng),
            kind: VisitKind::Emergency,
            reason,
            los: 0,
            admitted_from_er: false,
        });
    }
    let ip_rate = 0.015 + 0.012 * chronic_now as f64 + if age_end >= 75.0 { 0.03 } else { 0.0 };
    for _ in 0..poisson(rng, ip_rate * years_in) {
        let day = int_in(rng, start as i64, end as i64) as i32;
        let reason = if chance(rng, 0.4) {
            Reason::Exacerbation
        } else {
            Reason::Acute
        };
        let los = 1 + poisson(rng, 2.5) as i32;
        planned.push(Planned {
            day,
            secs: any_time(rng),
            kind: VisitKind::Inpatient,
            reason,
            los,
            admitted_from_er: chance(rng, 0.5),
        });
    }
}

/// What the record holds so far, for the visits that follow.
struct History {
    /// Per chronic condition: whether a visit has recorded it.
    diagnosed: Vec<bool>,
    flu_season_done: i32,
    allergies_done: bool,
    bone_scan_done: bool,
    rehab_done: bool,
    had_mi: bool,
    had_appendectomy: bool,
}

impl Ehr<'_, '_> {
    /// One planned visit: its row, its reason, the chronic conditions it mentions, its
    /// prescriptions, vitals, labs and other procedures. `end` is the EHR window's last day.
    fn visit(&mut self, p: Planned, end: i32, history: &mut History) {
        let (v, end_day) = self.open_visit(&p, end);
        let day = p.day;
        let secs = p.secs + 300;
        let acute = match p.reason {
            Reason::Diagnosis(i) => {
                let c = &self.p.h.chronic[i];
                history.diagnosed[i] = true;
                self.condition(v, day, secs, c.concept, c.icd10, true, None);
                None
            }
            Reason::Event(event) => {
                self.hospital_event(&p, event, v, secs, end_day, history);
                None
            }
            Reason::Acute => Some(self.acute(&p, v, secs, end)),
            Reason::Exacerbation => self.exacerbation(&p, v, secs, end, history),
            Reason::Routine => None,
        };
        self.mention_chronic(&p, v, secs, history);
        self.prescriptions(&p, v, secs, acute, end, history);

        // Vitals and labs.
        match p.kind {
            VisitKind::Outpatient => {
                if chance(self.rng, 0.8) {
                    let weight = chance(self.rng, 0.65);
                    self.vitals(v, day, secs, weight);
                }
            }
            _ => self.vitals(v, day, secs, false),
        }
        let bleeding = matches!(p.reason, Reason::Event(EventKind::GiBleed));
        self.labs(v, day, secs, p.kind, bleeding);

        if p.kind == VisitKind::Outpatient {
            self.outpatient_extras(v, day, secs, history);
        }
    }

    /// The visit's row: its end (an outpatient or emergency visit may run past midnight), its
    /// provider and care site. Returns the row's index and its end day.
    fn open_visit(&mut self, p: &Planned, end: i32) -> (usize, i32) {
        let t = self.p.t;
        let rng = &mut *self.rng;
        let (vstart, vend) = (p.day, (p.day + p.los).min(end).max(p.day));
        let end_secs = match p.kind {
            VisitKind::Outpatient => p.secs + int_in(rng, 900, 3_600),
            VisitKind::Emergency => p.secs + int_in(rng, 2 * 3600, 6 * 3600),
            VisitKind::Inpatient => int_in(rng, 8 * 3600, 18 * 3600),
        };
        let (end_day, end_secs) = if end_secs >= 86_400 && vend == vstart && vstart < end {
            (vstart + 1, end_secs - 86_400)
        } else {
            (vend, end_secs.min(86_399))
        };
        let end_secs = if end_day == vstart {
            end_secs.max(p.secs)
        } else {
            end_secs
        };
        let provider = match p.kind {
            VisitKind::Outpatient if chance(rng, 0.75) => Some(t.primary_provider),
            _ => (!chance(rng, 0.15)).then(|| int_in(rng, 4_001, 9_000)),
        };
        let care_site = match p.kind {
            VisitKind::Outpatient => Some(t.clinic),
            _ => Some(t.hospital),
        };
        let v = self.rows.visits.len();
        self.rows.visits.push(VisitRow {
            start: vstart,
            end: end_day,
            start_secs: p.secs,
            end_secs,
            kind: p.kind,
            provider,
            care_site,
            admitted_from: p.admitted_from_er.then_some(PLACE_ER),
            discharged_to: (p.kind == VisitKind::Inpatient).then_some(PLACE_HOME),
        });
        (v, end_day)
    }

    /// A hospital event's diagnosis and, on admission, its procedures.
    fn hospital_event(
        &mut self,
        p: &Planned,
        event: EventKind,
        v: usize,
        secs: i64,
        end_day: i32,
        history: &mut History,
    ) {
        let day = p.day;
        let (concept, icd) = match event {
            EventKind::MyocardialInfarction => (MYOCARDIAL_INFARCTION, "I21.9"),
            EventKind::GiBleed => (GI_HEMORRHAGE, "K92.2"),
            EventKind::Appendicitis => (APPENDICITIS, "K35.80"),
            EventKind::Cholecystitis => (ACUTE_CHOLECYSTITIS, "K81.0"),
        };
        self.condition(v, day, secs, concept, icd, true, Some(end_day));
        if p.kind != VisitKind::Inpatient {
            return;
        }
        match event {
            EventKind::MyocardialInfarction => {
                history.had_mi = true;
                self.procedure(v, day, secs + 600, ECG);
                if chance(self.rng, 0.6) {
                    self.procedure(v, day, secs + 7_200, PCI);
                } else if chance(self.rng, 0.3) {
                    let when = (day + 1).min(end_day);
                    self.procedure(v, when, 36_000, CABG);
                }
            }
            EventKind::GiBleed => {
                if chance(self.rng, 0.5) {
                    self.procedure(v, day, secs + 3_600, TRANSFUSION);
                }
            }
            EventKind::Appendicitis => {
                history.had_appendectomy = true;
                self.procedure(v, day, secs + 7_200, APPENDECTOMY);
            }
            EventKind::Cholecystitis => {
                self.condition(v, day, secs, GALLSTONE, "K80.20", false, None);
                let op = if chance(self.rng, 0.8) {
                    LAP_CHOLECYSTECTOMY
                } else {
                    CHOLECYSTECTOMY
                };
                let when = (day + 1).min(end_day);
                self.procedure(v, when, 32_400, op);
            }
        }
    }

    /// An acute condition of the visit's kind (respiratory ones more likely in winter, cystitis
    /// in women), with its procedures.
    fn acute(&mut self, p: &Planned, v: usize, secs: i64, end: i32) -> (i32, &'static str) {
        let day = p.day;
        let list = match p.kind {
            VisitKind::Outpatient => OUTPATIENT_ACUTE,
            VisitKind::Emergency => EMERGENCY_ACUTE,
            VisitKind::Inpatient => INPATIENT_ACUTE,
        };
        let mut pickable: Vec<((i32, &'static str), f64)> = list.to_vec();
        for item in pickable.iter_mut() {
            if item.0.0 == CYSTITIS && self.p.d.female {
                item.1 *= 2.5;
            }
            let m = month_of(day);
            let respiratory = matches!(
                item.0.0,
                VIRAL_SINUSITIS
                    | ACUTE_BRONCHITIS
                    | ACUTE_VIRAL_PHARYNGITIS
                    | PNEUMONIA
                    | STREP_THROAT
            );
            if respiratory && (m >= 11 || m <= 3) {
                item.1 *= 1.8;
            }
        }
        let (concept, icd) = *pick(self.rng, &pickable);
        let resolve = day + int_in(self.rng, 5, 21) as i32;
        self.condition(
            v,
            day,
            secs,
            concept,
            icd,
            true,
            Some(resolve.min(end).max(day)),
        );
        match concept {
            PNEUMONIA if chance(self.rng, 0.8) => self.procedure(v, day, secs + 1_800, CHEST_XRAY),
            ACUTE_BRONCHITIS if p.kind != VisitKind::Outpatient && chance(self.rng, 0.5) => {
                self.procedure(v, day, secs + 1_800, CHEST_XRAY)
            }
            FRACTURE_OF_FOREARM => self.procedure(v, day, secs + 2_400, BONE_IMMOBILIZATION),
            _ => {}
        }
        (concept, icd)
    }

    /// A flare of a chronic respiratory or cardiac condition, or an acute condition when the
    /// participant has none; returns the acute condition, if that is what it was.
    fn exacerbation(
        &mut self,
        p: &Planned,
        v: usize,
        secs: i64,
        end: i32,
        history: &mut History,
    ) -> Option<(i32, &'static str)> {
        let (day, h) = (p.day, self.p.h);
        let options: Vec<usize> = h
            .chronic
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.onset <= day
                    && matches!(
                        c.concept,
                        ASTHMA | COPD | EMPHYSEMA | CONGESTIVE_HEART_FAILURE | ATRIAL_FIBRILLATION
                    )
            })
            .map(|(i, _)| i)
            .collect();
        if options.is_empty() {
            let list = if p.kind == VisitKind::Inpatient {
                INPATIENT_ACUTE
            } else {
                EMERGENCY_ACUTE
            };
            let (concept, icd) = *pick(self.rng, list);
            self.condition(v, day, secs, concept, icd, true, Some((day + 14).min(end)));
            if concept == PNEUMONIA {
                self.procedure(v, day, secs + 1_800, CHEST_XRAY);
            }
            return Some((concept, icd));
        }
        let i = options[int_in(self.rng, 0, options.len() as i64 - 1) as usize];
        let c = &h.chronic[i];
        history.diagnosed[i] = true;
        self.condition(v, day, secs, c.concept, c.icd10, true, None);
        match c.concept {
            ASTHMA | COPD | EMPHYSEMA if chance(self.rng, 0.7) => {
                self.prescribe(v, day, secs + 3_000, PREDNISONE_RX, end);
            }
            ATRIAL_FIBRILLATION => {
                self.procedure(v, day, secs + 600, ECG);
                if p.kind == VisitKind::Inpatient && chance(self.rng, 0.3) {
                    self.procedure(v, day, secs + 7_200, CARDIOVERSION);
                } else if p.kind == VisitKind::Inpatient && chance(self.rng, 0.1) {
                    self.procedure(v, day, secs + 7_200, CATHETER_ABLATION);
                }
            }
            _ => {}
        }
        None
    }

    /// Known chronic conditions: the first visit records all prevalent ones; later visits
    /// mention them now and then.
    fn mention_chronic(&mut self, p: &Planned, v: usize, secs: i64, history: &mut History) {
        let (day, h) = (p.day, self.p.h);
        for (i, c) in h.chronic.iter().enumerate() {
            if c.onset > day {
                continue;
            }
            if matches!(p.reason, Reason::Diagnosis(j) if j == i) {
                continue;
            }
            let p_mention = match p.kind {
                VisitKind::Outpatient => c.mention,
                VisitKind::Emergency => c.mention * 0.3,
                VisitKind::Inpatient => (c.mention * 1.3).min(0.9),
            };
            if !history.diagnosed[i] {
                if p.kind == VisitKind::Outpatient || chance(self.rng, p_mention) {
                    history.diagnosed[i] = true;
                    self.condition(v, day, secs + 60, c.concept, c.icd10, false, None);
                }
            } else if chance(self.rng, p_mention) {
                self.condition(v, day, secs + 60, c.concept, c.icd10, false, None);
            }
        }
    }

    /// Outpatient visits renew the treatment plans and treat the acute condition, and give the
    /// season's flu shot; emergency visits treat the acute condition only.
    fn prescriptions(
        &mut self,
        p: &Planned,
        v: usize,
        secs: i64,
        acute: Option<(i32, &'static str)>,
        end: i32,
        history: &mut History,
    ) {
        let (day, d, h) = (p.day, self.p.d, self.p.h);
        if p.kind == VisitKind::Outpatient {
            let mut any = false;
            for c in &h.chronic {
                for plan in &c.plans {
                    if plan.start <= day && day < plan.stop {
                        let first = plan.start == day;
                        if first || chance(self.rng, 0.75) {
                            self.prescribe(v, day, secs + 900, plan.drug, end);
                            any = true;
                        }
                    }
                }
            }
            if let Some((concept, _)) = acute
                && let Some(drug) = acute_treatment(self.rng, concept)
            {
                self.prescribe(v, day, secs + 900, drug, end);
                any = true;
            }
            let (y, m, _) = super::rng::civil_from_days(day);
            if m >= 9
                && history.flu_season_done != y
                && chance(self.rng, 0.35 + 0.005 * (d.age_on(day) as f64 - 40.0))
            {
                history.flu_season_done = y;
                self.prescribe(v, day, secs + 1_200, FLU_SHOT, end);
            }
            if any && chance(self.rng, 0.15) {
                self.procedure(v, day, secs + 1_500, MEDICATION_RECONCILIATION);
            }
        } else if let Some((concept, _)) = acute
            && p.kind == VisitKind::Emergency
            && let Some(drug) = acute_treatment(self.rng, concept)
        {
            self.prescribe(v, day, secs + 900, drug, end);
        }
    }

    /// Other procedures and observations of an outpatient visit: screening, therapy, rehab,
    /// allergies and history.
    fn outpatient_extras(&mut self, v: usize, day: i32, secs: i64, history: &mut History) {
        let (d, h) = (self.p.d, self.p.h);
        let age = d.age_on(day);
        if (h.has_by(CORONARY_ARTERIOSCLEROSIS, day)
            || h.has_by(ATRIAL_FIBRILLATION, day)
            || age >= 55)
            && chance(self.rng, 0.06)
        {
            self.procedure(v, day, secs + 1_800, ECG);
        }
        if d.female && age >= 65 && !history.bone_scan_done && chance(self.rng, 0.25) {
            history.bone_scan_done = true;
            self.procedure(v, day, secs + 2_400, BONE_DENSITY_SCAN);
        }
        if (h.has_by(DEPRESSIVE_DISORDER, day) || h.has_by(ANXIETY_DISORDER, day))
            && chance(self.rng, 0.12)
        {
            let kind = if chance(self.rng, 0.5) {
                CBT
            } else {
                PSYCHIATRIC_FOLLOW_UP
            };
            self.procedure(v, day, secs + 1_800, kind);
        }
        if (h.has_by(COPD, day) || h.has_by(EMPHYSEMA, day))
            && !history.rehab_done
            && chance(self.rng, 0.08)
        {
            history.rehab_done = true;
            self.procedure(v, day, secs + 1_800, PULMONARY_REHABILITATION);
        }
        if !history.allergies_done {
            history.allergies_done = true;
            for (concept, code, p) in [
                (ALLERGY_TO_PEANUTS, "91935009", 0.02),
                (ALLERGY_TO_TREE_POLLEN, "419263009", 0.06),
                (LATEX_ALLERGY, "300916003", 0.015),
            ] {
                if chance(self.rng, p) {
                    self.observe(v, day, secs + 120, concept, code);
                }
            }
        }
        if history.had_mi && chance(self.rng, 0.3) {
            self.observe(v, day, secs + 120, HISTORY_OF_MI, "399211009");
        }
        if history.had_appendectomy && chance(self.rng, 0.2) {
            self.observe(v, day, secs + 120, HISTORY_OF_APPENDECTOMY, "428251008");
            history.had_appendectomy = false;
        }
    }
}

/// Physical measurements at enrollment (height, weight, BMI, blood pressure, heart rate).
pub fn physical_measurements(rng: &mut Rand, p: &Physiology, rows: &mut Rows) {
    let day = p.d.enroll;
    let secs = int_in(rng, 9 * 3600, 17 * 3600);
    let bmi = p.bmi(rng, day);
    let weight = p.weight(bmi);
    let sbp = p.systolic(rng, day);
    let dbp = p.diastolic(rng, sbp);
    let hr = p.heart_rate(rng, day);
    let height = p.t.height_cm + normal(rng, 0.0, 0.5);
    for (concept, value) in [
        (BODY_HEIGHT, height),
        (BODY_WEIGHT, weight),
        (BMI, bmi),
        (SYSTOLIC_BP, sbp),
        (DIASTOLIC_BP, dbp),
        (HEART_RATE, hr),
    ] {
        let spec = measurement_spec(concept);
        rows.measurements.push(MeasurementRow {
            day,
            secs,
            concept,
            value: round_to(value, spec.decimals),
            visit: None,
            type_concept: TYPE_PHYSICAL_EXAM,
        });
    }
}

/// What the participant died of, if one of their conditions is a likely cause.
pub fn cause_of_death(rng: &mut Rand, h: &Health) -> Option<(i32, &'static str)> {
    let candidates: Vec<(i32, &'static str)> = h
        .chronic
        .iter()
        .filter(|c| {
            matches!(
                c.concept,
                CONGESTIVE_HEART_FAILURE
                    | CORONARY_ARTERIOSCLEROSIS
                    | CEREBROVASCULAR_ACCIDENT
                    | COPD
                    | EMPHYSEMA
                    | ALZHEIMERS
                    | BREAST_CANCER
                    | CHRONIC_KIDNEY_DISEASE
            )
        })
        .map(|c| (c.concept, c.icd10))
        .collect();
    if candidates.is_empty() || chance(rng, 0.3) {
        return None;
    }
    Some(candidates[int_in(rng, 0, candidates.len() as i64 - 1) as usize])
}
