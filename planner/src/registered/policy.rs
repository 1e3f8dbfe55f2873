//! What the registered tier changes, per participant: the date-shift offset (a keyed hash of the
//! person id under the server secret), who is left out (aged 89 or older), and how
//! demographics are generalized. Facts that depend on the data (rare races, who answered more
//! than one race, who is 89+) are read once when the server starts.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use siphasher::sip::SipHasher24;

use crate::PlannerError;

/// The program's generalized codes (All of Us registered tier).
pub const GENDER_GENERALIZED: i64 = 2_000_000_002;
pub const SEX_GENERALIZED: i64 = 2_000_000_009;
pub const RACE_ANOTHER_SINGLE: i64 = 2_000_000_001;
pub const RACE_MORE_THAN_ONE: i64 = 2_000_000_008;

/// The Basics questions whose answers are demographics.
pub const RACE_QUESTION: i64 = 1_586_140;
pub const GENDER_QUESTION: i64 = 1_585_838;
pub const SEX_QUESTION: i64 = 1_585_845;

const MALE: i64 = 8507;
const FEMALE: i64 = 8532;
const GENDER_MAN: i64 = 1_585_839;
const GENDER_WOMAN: i64 = 1_585_840;
const SEX_MALE: i64 = 1_585_846;
const SEX_FEMALE: i64 = 1_585_847;
/// Answers to the race question that are not a race: skip, prefer not to answer, Hispanic
/// (an ethnicity), and "no matching concept".
const NOT_A_RACE: &[i64] = &[0, 903_096, 903_079, 1_586_147];

/// Settings of the registered views (`[registered]` in the server config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegisteredSettings {
    /// Participants this old or older (by year of birth) are left out.
    pub max_age: i32,
    /// A single race with fewer participants than this becomes "Another single population".
    pub min_race_group: u64,
    /// The year ages are computed at; the current year when absent.
    pub reference_year: Option<i32>,
}

impl Default for RegisteredSettings {
    fn default() -> Self {
        RegisteredSettings {
            max_age: 89,
            min_race_group: 200,
            reference_year: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    Gender,
    SexAtBirth,
    Race,
    Ethnicity,
}

impl Attribute {
    pub fn name(self) -> &'static str {
        match self {
            Attribute::Gender => "gender",
            Attribute::SexAtBirth => "sex_at_birth",
            Attribute::Race => "race",
            Attribute::Ethnicity => "ethnicity",
        }
    }

    /// What a value of this attribute becomes when it is generalized.
    fn generalized(self) -> Decision {
        match self {
            Attribute::Gender => Decision::Replace {
                code: GENDER_GENERALIZED,
                label: "Not man only, not woman only, prefer not to answer, or skipped",
            },
            Attribute::SexAtBirth => Decision::Replace {
                code: SEX_GENERALIZED,
                label: "Not male, not female, prefer not to answer, or skipped",
            },
            Attribute::Race => Decision::Replace {
                code: RACE_ANOTHER_SINGLE,
                label: "Another single population",
            },
            Attribute::Ethnicity => Decision::Replace {
                code: 0,
                label: "Another ethnicity",
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Replace { code: i64, label: &'static str },
}

/// A fact query's answer as rows of integers (every column cast to Int64, rows with a NULL
/// left out).
pub fn fact_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<i64>>, PlannerError> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Int64).map_err(|e| PlannerError::Internal(e.to_string())))
            .collect::<Result<_, _>>()?;
        for i in 0..batch.num_rows() {
            if columns.iter().any(|c| c.is_null(i)) {
                continue;
            }
            rows.push(
                columns
                    .iter()
                    .map(|c| c.as_primitive::<Int64Type>().value(i))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// What a fact query asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// `person_id`: participants left out (aged `max_age` or older).
    Excluded,
    /// `person_id, race answer kept`: participants who answered more than one race.
    MultiRace,
    /// `race, participants`: how many hold each race concept or race answer.
    RaceCounts,
    /// `person_id`: participants whose source value of the attribute (free text or a source
    /// concept) is shared by fewer than `min_race_group` participants.
    RareSource(Attribute),
}

/// The person table's source columns of each generalized attribute: free text and source
/// concepts, which name small groups verbatim (GiBleed's race source value "other" is two
/// participants, its ethnicity source values are ancestries) whatever the standard concept.
pub const SOURCE_COLUMNS: &[(Attribute, &[&str])] = &[
    (
        Attribute::Gender,
        &["gender_source_value", "gender_source_concept_id"],
    ),
    (
        Attribute::Race,
        &["race_source_value", "race_source_concept_id"],
    ),
    (
        Attribute::Ethnicity,
        &["ethnicity_source_value", "ethnicity_source_concept_id"],
    ),
];

pub struct RegisteredPolicy {
    key: (u64, u64),
    /// Participants left out (aged `max_age` or older).
    excluded: HashSet<i64>,
    /// Race concepts and race answers held by fewer than `min_race_group` participants.
    rare_races: HashSet<i64>,
    /// Participants who answered more than one race → the one race answer row kept for them.
    multi_race: HashMap<i64, i64>,
    /// Participants whose source values of an attribute belong to a small group.
    rare_source: HashSet<(Attribute, i64)>,
}

impl std::fmt::Debug for RegisteredPolicy {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredPolicy")
            .field("excluded", &self.excluded.len())
            .field("rare_races", &self.rare_races.len())
            .field("multi_race", &self.multi_race.len())
            .field("rare_source", &self.rare_source.len())
            .finish()
    }
}

impl RegisteredPolicy {
    /// The questions the views ask of the data once, at start-up, as SQL over the unrestricted
    /// dataset (`has` says which tables, and which `table.column`s, it holds). The query service runs them — the
    /// planner does no I/O — and hands the answers to [`RegisteredPolicy::from_facts`].
    pub fn fact_queries(
        settings: &RegisteredSettings,
        current_year: i32,
        has_table: impl Fn(&str) -> bool,
    ) -> Vec<(Fact, String)> {
        let year = settings.reference_year.unwrap_or(current_year);
        let not_a_race = list(NOT_A_RACE);
        let mut queries = Vec::new();
        if has_table("person") {
            let oldest = year - settings.max_age;
            queries.push((
                Fact::Excluded,
                format!("SELECT person_id FROM person WHERE year_of_birth <= {oldest}"),
            ));
            queries.push((
                Fact::RaceCounts,
                "SELECT race_concept_id, COUNT(DISTINCT person_id) FROM person GROUP BY 1".into(),
            ));
            let min = settings.min_race_group;
            for (attribute, columns) in SOURCE_COLUMNS {
                let rare: Vec<String> = columns
                    .iter()
                    .filter(|c| has_table(&format!("person.{c}")))
                    .map(|c| {
                        format!(
                            "{c} IN (SELECT {c} FROM person WHERE {c} IS NOT NULL GROUP BY 1 \
                             HAVING COUNT(DISTINCT person_id) < {min})"
                        )
                    })
                    .collect();
                if !rare.is_empty() {
                    queries.push((
                        Fact::RareSource(*attribute),
                        format!("SELECT person_id FROM person WHERE {}", rare.join(" OR ")),
                    ));
                }
            }
        }
        if has_table("ds_survey") {
            queries.push((
                Fact::MultiRace,
                format!(
                    "SELECT person_id, MIN(answer_concept_id) FROM ds_survey \
                     WHERE question_concept_id = {RACE_QUESTION} \
                       AND answer_concept_id NOT IN ({not_a_race}) \
                     GROUP BY person_id HAVING COUNT(DISTINCT answer_concept_id) > 1"
                ),
            ));
            queries.push((
                Fact::RaceCounts,
                format!(
                    "SELECT answer_concept_id, COUNT(DISTINCT person_id) FROM ds_survey \
                     WHERE question_concept_id = {RACE_QUESTION} \
                       AND answer_concept_id NOT IN ({not_a_race}) GROUP BY 1"
                ),
            ));
        }
        queries
    }

    /// The policy from the answers to [`RegisteredPolicy::fact_queries`] (rows of integers,
    /// rows with a NULL left out).
    pub fn from_facts(
        secret: &[u8; 32],
        settings: &RegisteredSettings,
        facts: impl IntoIterator<Item = (Fact, Vec<Vec<i64>>)>,
    ) -> Self {
        let mut policy = RegisteredPolicy::with_secret(secret);
        for (fact, rows) in facts {
            match fact {
                Fact::Excluded => policy.excluded.extend(rows.iter().map(|r| r[0])),
                Fact::MultiRace => policy.multi_race.extend(rows.iter().map(|r| (r[0], r[1]))),
                Fact::RaceCounts => policy.add_rare(rows, settings.min_race_group),
                Fact::RareSource(attribute) => policy
                    .rare_source
                    .extend(rows.iter().map(|r| (attribute, r[0]))),
            }
        }
        policy
    }

    /// What a cluster worker compares with the coordinator's before it runs a registered-tier
    /// plan fragment: a worker whose policy differs (another dataset, another secret) would
    /// shift and generalize differently. Keyed by the secret, so it reveals nothing of it.
    pub fn fingerprint(&self) -> String {
        let mut h = SipHasher24::new_with_keys(self.key.0 ^ 0x5354_5241_5441, self.key.1);
        let mut sorted = |mut v: Vec<(i64, i64)>| {
            v.sort_unstable();
            h.write_usize(v.len());
            v.iter().for_each(|(a, b)| {
                h.write_i64(*a);
                h.write_i64(*b);
            });
        };
        sorted(self.excluded.iter().map(|p| (*p, 0)).collect());
        sorted(self.rare_races.iter().map(|r| (*r, 0)).collect());
        sorted(self.multi_race.iter().map(|(p, a)| (*p, *a)).collect());
        sorted(
            self.rare_source
                .iter()
                .map(|(a, p)| (*p, *a as i64))
                .collect(),
        );
        format!("{:016x}", h.finish())
    }

    fn with_secret(secret: &[u8; 32]) -> Self {
        let k0 = u64::from_le_bytes(secret[0..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(secret[8..16].try_into().expect("8 bytes"));
        RegisteredPolicy {
            key: (k0, k1),
            excluded: HashSet::new(),
            rare_races: HashSet::new(),
            multi_race: HashMap::new(),
            rare_source: HashSet::new(),
        }
    }

    fn add_rare(&mut self, counts: Vec<Vec<i64>>, min_group: u64) {
        for row in counts {
            let (value, persons) = (row[0], row[1]);
            if !NOT_A_RACE.contains(&value) && persons > 0 && (persons as u64) < min_group {
                self.rare_races.insert(value);
            }
        }
    }

    /// Days (1..=365) the participant's dates are shifted back: SipHash-2-4 of the person id
    /// under the server secret, so the same for every table, query and restart, and not
    /// computable without the secret.
    pub fn offset_days(&self, person_id: i64) -> i64 {
        let mut h = SipHasher24::new_with_keys(self.key.0, self.key.1);
        h.write(&person_id.to_le_bytes());
        1 + (h.finish() % 365) as i64
    }

    pub fn is_visible(&self, person_id: i64) -> bool {
        !self.excluded.contains(&person_id)
    }

    pub fn excluded_count(&self) -> usize {
        self.excluded.len()
    }

    /// A source column's value: generalized as the attribute's standard concept is, and also
    /// when the participant's source value itself is rare.
    pub fn decide_source(
        &self,
        attribute: Attribute,
        person: Option<i64>,
        concept: Option<i64>,
    ) -> Decision {
        match self.decide(attribute, person, concept) {
            Decision::Keep
                if person.is_some_and(|p| self.rare_source.contains(&(attribute, p))) =>
            {
                attribute.generalized()
            }
            decision => decision,
        }
    }

    pub fn decide(
        &self,
        attribute: Attribute,
        person: Option<i64>,
        concept: Option<i64>,
    ) -> Decision {
        match attribute {
            Attribute::Gender => match concept {
                Some(MALE | FEMALE | GENDER_MAN | GENDER_WOMAN) => Decision::Keep,
                _ => attribute.generalized(),
            },
            Attribute::SexAtBirth => match concept {
                Some(MALE | FEMALE | SEX_MALE | SEX_FEMALE) => Decision::Keep,
                _ => attribute.generalized(),
            },
            // Hispanic or not: two large groups; the source values are checked for rarity.
            Attribute::Ethnicity => Decision::Keep,
            Attribute::Race => {
                let concept = concept.unwrap_or(0);
                if NOT_A_RACE.contains(&concept) {
                    Decision::Keep
                } else if person.is_some_and(|p| self.multi_race.contains_key(&p)) {
                    Decision::Replace {
                        code: RACE_MORE_THAN_ONE,
                        label: "More than one population",
                    }
                } else if self.rare_races.contains(&concept) {
                    attribute.generalized()
                } else {
                    Decision::Keep
                }
            }
        }
    }

    /// One race answer row per participant of more than one race (the others would tell how
    /// many races they chose, and which).
    pub fn keep_answer(
        &self,
        person: Option<i64>,
        question: Option<i64>,
        answer: Option<i64>,
    ) -> bool {
        if question != Some(RACE_QUESTION) {
            return true;
        }
        let answer = answer.unwrap_or(0);
        if NOT_A_RACE.contains(&answer) {
            return true;
        }
        match person.and_then(|p| self.multi_race.get(&p)) {
            Some(kept) => *kept == answer,
            None => true,
        }
    }
}

fn list(values: &[i64]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_in_range_stable_and_keyed() {
        let a = RegisteredPolicy::with_secret(&[7; 32]);
        let b = RegisteredPolicy::with_secret(&[8; 32]);
        let mut seen = HashSet::new();
        let mut differ = 0;
        for pid in 0..5000 {
            let o = a.offset_days(pid);
            assert!((1..=365).contains(&o));
            assert_eq!(o, a.offset_days(pid));
            seen.insert(o);
            if o != b.offset_days(pid) {
                differ += 1;
            }
        }
        // Spread over the whole range, and a different secret gives different offsets.
        assert!(seen.len() > 350, "{}", seen.len());
        assert!(differ > 4900, "{differ}");
    }

    #[test]
    fn generalization_rules() {
        let mut p = RegisteredPolicy::with_secret(&[1; 32]);
        p.multi_race.insert(5, 1_586_142);
        p.add_rare(
            vec![vec![1_586_145, 3], vec![1_586_146, 500], vec![0, 1]],
            200,
        );
        use Decision::Keep;
        assert_eq!(p.decide(Attribute::Gender, Some(1), Some(MALE)), Keep);
        assert!(matches!(
            p.decide(Attribute::Gender, Some(1), Some(0)),
            Decision::Replace {
                code: GENDER_GENERALIZED,
                ..
            }
        ));
        assert!(matches!(
            p.decide(Attribute::SexAtBirth, Some(1), Some(903_096)),
            Decision::Replace {
                code: SEX_GENERALIZED,
                ..
            }
        ));
        assert!(matches!(
            p.decide(Attribute::Race, Some(5), Some(1_586_146)),
            Decision::Replace {
                code: RACE_MORE_THAN_ONE,
                ..
            }
        ));
        assert!(matches!(
            p.decide(Attribute::Race, Some(6), Some(1_586_145)),
            Decision::Replace {
                code: RACE_ANOTHER_SINGLE,
                ..
            }
        ));
        assert_eq!(p.decide(Attribute::Race, Some(6), Some(1_586_146)), Keep);
        assert_eq!(p.decide(Attribute::Race, Some(5), Some(903_096)), Keep);
        assert!(p.keep_answer(Some(5), Some(RACE_QUESTION), Some(1_586_142)));
        assert!(!p.keep_answer(Some(5), Some(RACE_QUESTION), Some(1_586_146)));
        assert!(p.keep_answer(Some(5), Some(RACE_QUESTION), Some(1_586_147)));
        assert!(p.keep_answer(Some(6), Some(RACE_QUESTION), Some(1_586_146)));
    }
}
