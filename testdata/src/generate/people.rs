//! Who the participants are: demographics, enrollment, death, which data types each one has,
//! and the planted rare-condition groups.
//!
//! Demographics come from their own random stream per participant, so any participant's
//! demographics can be recomputed on their own (the planted groups are chosen among eligible
//! participants before anything else is generated).

use std::collections::BTreeMap;

use super::ids as id;
use super::rng::{
    Rand, chance, days_from_civil, int_in, normal, pick, rng_for, stream, uniform, years_between,
};

/// Last day of data: the dataset's "CDR cutoff".
pub const CUTOFF: i32 = days_from_civil(2023, 6, 30);
/// First enrollment of the program.
pub const PROGRAM_START: i32 = days_from_civil(2017, 5, 6);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    White,
    Black,
    Asian,
    Aian,
    Nhpi,
    /// More than one race, or another race.
    Other,
    Unknown,
}

impl Race {
    pub fn concept_id(self) -> i32 {
        match self {
            Race::White => id::WHITE,
            Race::Black => id::BLACK,
            Race::Asian => id::ASIAN,
            Race::Aian => id::AIAN,
            Race::Nhpi => id::NHPI,
            Race::Other => id::OTHER_RACE,
            Race::Unknown => id::NO_MATCHING_CONCEPT,
        }
    }
}

/// Genetic ancestry group used for allele frequencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ancestry {
    Eur,
    Afr,
    Amr,
    Eas,
    Oth,
}

impl Ancestry {
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoking {
    Never,
    Former,
    Current,
}

#[derive(Debug, Clone)]
pub struct Demographics {
    pub pid: i64,
    pub female: bool,
    pub race: Race,
    /// Second race for participants of more than one race (survey answers).
    pub second_race: Option<Race>,
    /// `None` when not known.
    pub hispanic: Option<bool>,
    pub birth_year: i32,
    pub birth_month: Option<u32>,
    pub birth_day: Option<u32>,
    /// Date of birth, a missing month or day taken as 1.
    pub birth: i32,
    /// Consent date: The Basics and physical measurements happen here.
    pub enroll: i32,
    pub death: Option<i32>,
    pub has_ehr: bool,
    pub has_fitbit: bool,
    pub has_wgs: bool,
    pub smoking: Smoking,
    /// Socio-economic position, standard normal.
    pub ses: f64,
    /// Health frailty multiplier (lognormal around 1).
    pub frailty: f64,
}

impl Demographics {
    pub fn age_on(&self, day: i32) -> i32 {
        years_between(self.birth, day)
    }

    pub fn age_at_cutoff(&self) -> i32 {
        self.age_on(CUTOFF)
    }

    /// The last day anything can happen for this participant.
    pub fn last_day(&self) -> i32 {
        match self.death {
            Some(d) => d - 1,
            None => CUTOFF,
        }
    }

    pub fn ancestry(&self) -> Ancestry {
        if self.hispanic == Some(true) {
            return Ancestry::Amr;
        }
        match self.race {
            Race::White => Ancestry::Eur,
            Race::Black => Ancestry::Afr,
            Race::Asian => Ancestry::Eas,
            _ => Ancestry::Oth,
        }
    }
}

const RACES: &[(Race, f64)] = &[
    (Race::White, 0.58),
    (Race::Black, 0.17),
    (Race::Asian, 0.055),
    (Race::Aian, 0.01),
    (Race::Nhpi, 0.004),
    (Race::Other, 0.10),
    (Race::Unknown, 0.081),
];

/// Age at enrollment: adult, with a tail of the very old.
const AGE_BANDS: &[((i64, i64), f64)] = &[
    ((18, 29), 0.17),
    ((30, 44), 0.25),
    ((45, 64), 0.34),
    ((65, 79), 0.185),
    ((80, 88), 0.04),
    ((89, 101), 0.011),
];

pub fn demographics(seed: u64, pid: i64) -> Demographics {
    let mut rng = rng_for(seed, stream::DEMOGRAPHICS, pid as u64);
    let rng = &mut rng;
    let female = chance(rng, 0.56);
    let race = *pick(rng, RACES);
    let second_race = (race == Race::Other && chance(rng, 0.6)).then(|| {
        *pick(
            rng,
            &[
                (Race::White, 0.5),
                (Race::Black, 0.25),
                (Race::Asian, 0.15),
                (Race::Aian, 0.1),
            ],
        )
    });
    let p_hispanic = match race {
        Race::White => 0.12,
        Race::Black => 0.03,
        Race::Asian => 0.02,
        Race::Aian => 0.2,
        Race::Nhpi => 0.05,
        Race::Other => 0.55,
        Race::Unknown => 0.45,
    };
    let hispanic = if chance(rng, 0.015) {
        None
    } else {
        Some(chance(rng, p_hispanic))
    };

    // Enrollment, uniformly over the program's years; age at enrollment by band.
    let enroll = int_in(rng, PROGRAM_START as i64, (CUTOFF - 14) as i64) as i32;
    let (lo, hi) = *pick(rng, AGE_BANDS);
    let age_at_enroll = int_in(rng, lo, hi);
    let (ey, em, ed) = super::rng::civil_from_days(enroll);
    let birthday_at_enroll = days_from_civil(ey - age_at_enroll as i32, em, ed.min(28));
    let birth_exact = birthday_at_enroll - int_in(rng, 0, 364) as i32;
    let (birth_year, month, day) = super::rng::civil_from_days(birth_exact);
    let missing = uniform(rng);
    let (birth_month, birth_day) = if missing < 0.01 {
        (None, None)
    } else if missing < 0.03 {
        (Some(month), None)
    } else {
        (Some(month), Some(day))
    };
    let birth = days_from_civil(birth_year, birth_month.unwrap_or(1), birth_day.unwrap_or(1));

    let ses = normal(rng, 0.0, 1.0);
    let frailty = normal(rng, 0.0, 0.5).exp();
    let age_now = years_between(birth, CUTOFF) as f64;
    let male_smoke = if female { 0.0 } else { 0.3 };
    let ever_smoked = chance(
        rng,
        super::rng::logistic(-0.9 + male_smoke - 0.35 * ses + 0.01 * (age_now - 45.0)),
    );
    let smoking = if !ever_smoked {
        Smoking::Never
    } else if chance(rng, (0.45 - 0.006 * (age_now - 30.0)).clamp(0.12, 0.45)) {
        Smoking::Current
    } else {
        Smoking::Former
    };

    // Death between enrollment and the cutoff: Gompertz hazard scaled by frailty and smoking.
    let smoke_hr = match smoking {
        Smoking::Current => 2.0,
        Smoking::Former => 1.3,
        Smoking::Never => 1.0,
    };
    let window = (CUTOFF - enroll) as f64 / 365.25;
    let mid_age = years_between(birth, enroll) as f64 + window / 2.0;
    let hazard = (-10.4 + 0.092 * mid_age).exp() * frailty * smoke_hr;
    let death = (window > 0.3 && chance(rng, 1.0 - (-hazard * window).exp()))
        .then(|| int_in(rng, (enroll + 60) as i64, (CUTOFF - 1) as i64) as i32)
        .filter(|d| *d > enroll + 30);

    let has_ehr = chance(rng, 0.76);
    let age_enroll = years_between(birth, enroll) as f64;
    let p_fitbit = (0.175 - 0.0028 * (age_enroll - 45.0) + 0.02 * ses).clamp(0.03, 0.35);
    let has_fitbit = chance(rng, p_fitbit);
    let has_wgs = chance(rng, 0.20);

    Demographics {
        pid,
        female,
        race,
        second_race,
        hispanic,
        birth_year,
        birth_month,
        birth_day,
        birth,
        enroll,
        death,
        has_ehr,
        has_fitbit,
        has_wgs,
        smoking,
        ses,
        frailty,
    }
}

/// A rare condition planted in an exact number of participants.
#[derive(Debug, Clone, Copy)]
pub struct PlantedGroup {
    pub concept_id: i32,
    pub participants: usize,
    pub icd10: &'static str,
}

/// The planted groups; `generate`'s module doc lists the same numbers.
pub const PLANTED: &[PlantedGroup] = &[
    PlantedGroup {
        concept_id: id::FAMILIAL_ALZHEIMERS_EARLY_ONSET,
        participants: 1,
        icd10: "G30.0",
    },
    PlantedGroup {
        concept_id: id::CYSTIC_FIBROSIS,
        participants: 5,
        icd10: "E84.9",
    },
    PlantedGroup {
        concept_id: id::MULTIPLE_SCLEROSIS,
        participants: 19,
        icd10: "G35",
    },
    PlantedGroup {
        concept_id: id::MYASTHENIA_GRAVIS,
        participants: 20,
        icd10: "G70.00",
    },
    PlantedGroup {
        concept_id: id::SYSTEMIC_LUPUS,
        participants: 21,
        icd10: "M32.9",
    },
    PlantedGroup {
        concept_id: id::ANGIODYSPLASIA_OF_STOMACH,
        participants: 40,
        icd10: "K31.811",
    },
];

/// The omeprazole quantity of each prescription of the planted dominant contributors.
pub const DOMINANT_QUANTITY: f64 = 50_000.0;

/// Planted dominant contributors: the two angiodysplasia participants with the smallest ids
/// (they are all prescribed omeprazole) get omeprazole quantities far above anyone else's, so
/// that magnitude cells over them (`SUM(quantity)`) are dominated although they hold 40
/// participants.
pub fn dominant_contributors(
    planted: &BTreeMap<i64, Vec<usize>>,
) -> std::collections::BTreeSet<i64> {
    planted
        .iter()
        .filter(|(_, groups)| {
            groups
                .iter()
                .any(|&g| PLANTED[g].concept_id == id::ANGIODYSPLASIA_OF_STOMACH)
        })
        .map(|(&pid, _)| pid)
        .take(2)
        .collect()
}

/// Planted participants are alive, have EHR data and are under 80 at the cutoff, so that every
/// view of the data (registered-tier age limits, date shifting) keeps all of them.
pub fn plantable(d: &Demographics) -> bool {
    d.has_ehr && d.death.is_none() && d.age_at_cutoff() < 80
}

/// `person_id -> planted groups` (indexes into [`PLANTED`]), chosen among plantable
/// participants of `1..=persons`. Exact whenever there are enough plantable participants
/// (always with 1,000 or more persons).
pub fn planted_participants(seed: u64, persons: u64) -> BTreeMap<i64, Vec<usize>> {
    let mut out: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (g, group) in PLANTED.iter().enumerate() {
        let mut rng: Rand = rng_for(seed, stream::PLANTED, group.concept_id as u64);
        let mut chosen = std::collections::BTreeSet::new();
        let mut attempts = 0u64;
        let max_attempts = 200 * group.participants as u64 + 10 * persons;
        while chosen.len() < group.participants && attempts < max_attempts {
            attempts += 1;
            let pid = int_in(&mut rng, 1, persons as i64);
            if chosen.contains(&pid) || !plantable(&demographics(seed, pid)) {
                continue;
            }
            chosen.insert(pid);
        }
        for pid in chosen {
            out.entry(pid).or_default().push(g);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demographics_look_like_a_us_cohort() {
        let n = 20_000;
        let people: Vec<Demographics> = (1..=n).map(|pid| demographics(7, pid)).collect();
        let frac = |f: &dyn Fn(&Demographics) -> bool| {
            people.iter().filter(|d| f(d)).count() as f64 / n as f64
        };
        let female = frac(&|d| d.female);
        assert!((0.52..0.60).contains(&female), "female {female}");
        let hispanic = frac(&|d| d.hispanic == Some(true));
        assert!((0.13..0.21).contains(&hispanic), "hispanic {hispanic}");
        let old = frac(&|d| d.age_at_cutoff() >= 89);
        assert!(old > 0.01 && old < 0.05, "89+ {old}");
        let fitbit = frac(&|d| d.has_fitbit);
        assert!((0.12..0.18).contains(&fitbit), "fitbit {fitbit}");
        let wgs = frac(&|d| d.has_wgs);
        assert!((0.18..0.22).contains(&wgs), "wgs {wgs}");
        let dead = frac(&|d| d.death.is_some());
        assert!((0.01..0.08).contains(&dead), "deceased {dead}");
        let missing_day = frac(&|d| d.birth_day.is_none());
        assert!(missing_day > 0.01, "missing day of birth {missing_day}");
        for d in &people {
            assert!(d.age_on(d.enroll) >= 18, "minor enrolled: {d:?}");
            if let Some(death) = d.death {
                assert!(death > d.enroll && death <= CUTOFF);
            }
        }
    }

    #[test]
    fn planted_groups_have_exact_sizes() {
        let planted = planted_participants(3, 1000);
        for (g, group) in PLANTED.iter().enumerate() {
            let n = planted.values().filter(|gs| gs.contains(&g)).count();
            assert_eq!(n, group.participants);
        }
        for pid in planted.keys() {
            assert!(plantable(&demographics(3, *pid)));
        }
    }
}
