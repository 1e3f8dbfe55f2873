//! Survey answers from the program's real questionnaires (The Basics, Overall Health,
//! Lifestyle), with the PPI concept ids, codes and texts the curated `ds_survey` table shows.
//! Answers agree with the participant's demographics and health: race and sex at birth match
//! `person`, smokers say so, participants with more chronic conditions rate their health lower.

use super::people::{Demographics, Race, Smoking};
use super::rng::{Rand, chance, int_in, normal, weighted_index};

pub struct Survey {
    pub concept_id: i32,
    pub name: &'static str,
    pub code: &'static str,
}

pub struct Answer {
    pub id: i32,
    pub code: &'static str,
    pub text: &'static str,
}

pub struct Question {
    pub id: i32,
    pub code: &'static str,
    pub text: &'static str,
    pub survey: &'static Survey,
    pub answers: &'static [Answer],
}

pub const THE_BASICS: Survey = Survey {
    concept_id: 1586134,
    name: "The Basics",
    code: "TheBasics",
};
pub const OVERALL_HEALTH: Survey = Survey {
    concept_id: 1585710,
    name: "Overall Health",
    code: "OverallHealth",
};
pub const LIFESTYLE: Survey = Survey {
    concept_id: 1585855,
    name: "Lifestyle",
    code: "Lifestyle",
};
pub const SURVEYS: &[&Survey] = &[&THE_BASICS, &OVERALL_HEALTH, &LIFESTYLE];

const fn a(id: i32, code: &'static str, text: &'static str) -> Answer {
    Answer { id, code, text }
}

pub const SKIP: Answer = a(903096, "PMI_Skip", "PMI: Skip");
pub const PREFER_NOT_TO_ANSWER: Answer =
    a(903079, "PMI_PreferNotToAnswer", "PMI: Prefer Not To Answer");
pub const MISSING_ANSWERS: &[&Answer] = &[&SKIP, &PREFER_NOT_TO_ANSWER];

pub const RACE: Question = Question {
    id: 1586140,
    code: "Race_WhatRaceEthnicity",
    text: "Race: What Race Ethnicity",
    survey: &THE_BASICS,
    answers: &[
        a(
            1586141,
            "WhatRaceEthnicity_AIAN",
            "What Race Ethnicity: AIAN",
        ),
        a(
            1586142,
            "WhatRaceEthnicity_Asian",
            "What Race Ethnicity: Asian",
        ),
        a(
            1586143,
            "WhatRaceEthnicity_Black",
            "What Race Ethnicity: Black",
        ),
        a(
            1586144,
            "WhatRaceEthnicity_MENA",
            "What Race Ethnicity: MENA",
        ),
        a(
            1586145,
            "WhatRaceEthnicity_NHPI",
            "What Race Ethnicity: NHPI",
        ),
        a(
            1586146,
            "WhatRaceEthnicity_White",
            "What Race Ethnicity: White",
        ),
        a(
            1586147,
            "WhatRaceEthnicity_Hispanic",
            "What Race Ethnicity: Hispanic",
        ),
        a(
            1586148,
            "WhatRaceEthnicity_RaceEthnicityNoneOfThese",
            "What Race Ethnicity: Race Ethnicity None Of These",
        ),
    ],
};

pub const SEX_AT_BIRTH: Question = Question {
    id: 1585845,
    code: "BiologicalSexAtBirth_SexAtBirth",
    text: "Biological Sex At Birth: Sex At Birth",
    survey: &THE_BASICS,
    answers: &[
        a(1585846, "SexAtBirth_Male", "Sex At Birth: Male"),
        a(1585847, "SexAtBirth_Female", "Sex At Birth: Female"),
    ],
};

pub const GENDER_IDENTITY: Question = Question {
    id: 1585838,
    code: "Gender_GenderIdentity",
    text: "Gender: Gender Identity",
    survey: &THE_BASICS,
    answers: &[
        a(1585839, "GenderIdentity_Man", "Gender Identity: Man"),
        a(1585840, "GenderIdentity_Woman", "Gender Identity: Woman"),
    ],
};

pub const EDUCATION: Question = Question {
    id: 1585940,
    code: "EducationLevel_HighestGrade",
    text: "Education Level: Highest Grade",
    survey: &THE_BASICS,
    answers: &[
        a(
            1585941,
            "HighestGrade_NeverAttended",
            "Highest Grade: Never Attended",
        ),
        a(
            1585942,
            "HighestGrade_OneThroughFour",
            "Highest Grade: One Through Four",
        ),
        a(
            1585943,
            "HighestGrade_FiveThroughEight",
            "Highest Grade: Five Through Eight",
        ),
        a(
            1585944,
            "HighestGrade_NineThroughEleven",
            "Highest Grade: Nine Through Eleven",
        ),
        a(
            1585945,
            "HighestGrade_TwelveOrGED",
            "Highest Grade: Twelve Or GED",
        ),
        a(
            1585946,
            "HighestGrade_CollegeOnetoThree",
            "Highest Grade: College One to Three",
        ),
        a(
            1585947,
            "HighestGrade_CollegeGraduate",
            "Highest Grade: College Graduate",
        ),
        a(
            1585948,
            "HighestGrade_AdvancedDegree",
            "Highest Grade: Advanced Degree",
        ),
    ],
};

pub const INCOME: Question = Question {
    id: 1585375,
    code: "Income_AnnualIncome",
    text: "Income: Annual Income",
    survey: &THE_BASICS,
    answers: &[
        a(1585376, "AnnualIncome_less10k", "Annual Income: less 10k"),
        a(1585377, "AnnualIncome_10k25k", "Annual Income: 10k 25k"),
        a(1585378, "AnnualIncome_25k35k", "Annual Income: 25k 35k"),
        a(1585379, "AnnualIncome_35k50k", "Annual Income: 35k 50k"),
        a(1585380, "AnnualIncome_50k75k", "Annual Income: 50k 75k"),
        a(1585381, "AnnualIncome_75k100k", "Annual Income: 75k 100k"),
        a(1585382, "AnnualIncome_100k150k", "Annual Income: 100k 150k"),
        a(1585383, "AnnualIncome_150k200k", "Annual Income: 150k 200k"),
        a(1585384, "AnnualIncome_more200k", "Annual Income: more 200k"),
    ],
};

pub const INSURANCE: Question = Question {
    id: 1585386,
    code: "Insurance_HealthInsurance",
    text: "Insurance: Health Insurance",
    survey: &THE_BASICS,
    answers: &[
        a(1585387, "HealthInsurance_Yes", "Health Insurance: Yes"),
        a(1585388, "HealthInsurance_No", "Health Insurance: No"),
    ],
};

const fn rating(prefix: [&'static str; 5], ids: [i32; 5], texts: [&'static str; 5]) -> [Answer; 5] {
    [
        a(ids[0], prefix[0], texts[0]),
        a(ids[1], prefix[1], texts[1]),
        a(ids[2], prefix[2], texts[2]),
        a(ids[3], prefix[3], texts[3]),
        a(ids[4], prefix[4], texts[4]),
    ]
}

const GENERAL_HEALTH_ANSWERS: [Answer; 5] = rating(
    [
        "GeneralHealth_Excellent",
        "GeneralHealth_VeryGood",
        "GeneralHealth_Good",
        "GeneralHealth_Fair",
        "GeneralHealth_Poor",
    ],
    [1585712, 1585713, 1585714, 1585715, 1585716],
    [
        "General Health: Excellent",
        "General Health: Very Good",
        "General Health: Good",
        "General Health: Fair",
        "General Health: Poor",
    ],
);

pub const GENERAL_HEALTH: Question = Question {
    id: 1585711,
    code: "OverallHealth_GeneralHealth",
    text: "Overall Health: General Health",
    survey: &OVERALL_HEALTH,
    answers: &GENERAL_HEALTH_ANSWERS,
};

const PHYSICAL_HEALTH_ANSWERS: [Answer; 5] = rating(
    [
        "GeneralPhysicalHealth_Excellent",
        "GeneralPhysicalHealth_VeryGood",
        "GeneralPhysicalHealth_Good",
        "GeneralPhysicalHealth_Fair",
        "GeneralPhysicalHealth_Poor",
    ],
    [1585724, 1585725, 1585726, 1585727, 1585728],
    [
        "General Physical Health: Excellent",
        "General Physical Health: Very Good",
        "General Physical Health: Good",
        "General Physical Health: Fair",
        "General Physical Health: Poor",
    ],
);

pub const PHYSICAL_HEALTH: Question = Question {
    id: 1585723,
    code: "OverallHealth_GeneralPhysicalHealth",
    text: "Overall Health: General Physical Health",
    survey: &OVERALL_HEALTH,
    answers: &PHYSICAL_HEALTH_ANSWERS,
};

const MENTAL_HEALTH_ANSWERS: [Answer; 5] = rating(
    [
        "GeneralMentalHealth_Excellent",
        "GeneralMentalHealth_VeryGood",
        "GeneralMentalHealth_Good",
        "GeneralMentalHealth_Fair",
        "GeneralMentalHealth_Poor",
    ],
    [1585730, 1585731, 1585732, 1585733, 1585734],
    [
        "General Mental Health: Excellent",
        "General Mental Health: Very Good",
        "General Mental Health: Good",
        "General Mental Health: Fair",
        "General Mental Health: Poor",
    ],
);

pub const MENTAL_HEALTH: Question = Question {
    id: 1585729,
    code: "OverallHealth_GeneralMentalHealth",
    text: "Overall Health: General Mental Health",
    survey: &OVERALL_HEALTH,
    answers: &MENTAL_HEALTH_ANSWERS,
};

pub const SMOKING_100_CIGS: Question = Question {
    id: 1585857,
    code: "Smoking_100CigsLifetime",
    text: "Smoking: 100 Cigs Lifetime",
    survey: &LIFESTYLE,
    answers: &[
        a(1585858, "100CigsLifetime_Yes", "100 Cigs Lifetime: Yes"),
        a(1585859, "100CigsLifetime_No", "100 Cigs Lifetime: No"),
    ],
};

pub const SMOKE_FREQUENCY: Question = Question {
    id: 1585860,
    code: "Smoking_SmokeFrequency",
    text: "Smoking: Smoke Frequency",
    survey: &LIFESTYLE,
    answers: &[
        a(
            1585861,
            "SmokeFrequency_EveryDay",
            "Smoke Frequency: Every Day",
        ),
        a(
            1585862,
            "SmokeFrequency_SomeDays",
            "Smoke Frequency: Some Days",
        ),
        a(
            1585863,
            "SmokeFrequency_NotAtAll",
            "Smoke Frequency: Not At All",
        ),
    ],
};

pub const ALCOHOL_PARTICIPANT: Question = Question {
    id: 1586198,
    code: "Alcohol_AlcoholParticipant",
    text: "Alcohol: Alcohol Participant",
    survey: &LIFESTYLE,
    answers: &[
        a(
            1586199,
            "AlcoholParticipant_Yes",
            "Alcohol Participant: Yes",
        ),
        a(1586200, "AlcoholParticipant_No", "Alcohol Participant: No"),
    ],
};

pub const DRINK_FREQUENCY: Question = Question {
    id: 1586201,
    code: "Alcohol_DrinkFrequencyPastYear",
    text: "Alcohol: Drink Frequency Past Year",
    survey: &LIFESTYLE,
    answers: &[
        a(
            1586202,
            "DrinkFrequencyPastYear_Never",
            "Drink Frequency Past Year: Never",
        ),
        a(
            1586203,
            "DrinkFrequencyPastYear_MonthlyOrLess",
            "Drink Frequency Past Year: Monthly Or Less",
        ),
        a(
            1586204,
            "DrinkFrequencyPastYear_2to4PerMonth",
            "Drink Frequency Past Year: 2 to 4 Per Month",
        ),
        a(
            1586205,
            "DrinkFrequencyPastYear_2to3PerWeek",
            "Drink Frequency Past Year: 2 to 3 Per Week",
        ),
        a(
            1586206,
            "DrinkFrequencyPastYear_4orMorePerWeek",
            "Drink Frequency Past Year: 4 or More Per Week",
        ),
    ],
};

pub const DAILY_DRINKS: Question = Question {
    id: 1586207,
    code: "Alcohol_AverageDailyDrinkCount",
    text: "Alcohol: Average Daily Drink Count",
    survey: &LIFESTYLE,
    answers: &[
        a(
            1586208,
            "AverageDailyDrinkCount_1or2",
            "Average Daily Drink Count: 1 or 2",
        ),
        a(
            1586209,
            "AverageDailyDrinkCount_3or4",
            "Average Daily Drink Count: 3 or 4",
        ),
        a(
            1586210,
            "AverageDailyDrinkCount_5or6",
            "Average Daily Drink Count: 5 or 6",
        ),
        a(
            1586211,
            "AverageDailyDrinkCount_7to9",
            "Average Daily Drink Count: 7 to 9",
        ),
        a(
            1586212,
            "AverageDailyDrinkCount_10orMore",
            "Average Daily Drink Count: 10 or More",
        ),
    ],
};

pub const QUESTIONS: &[&Question] = &[
    &RACE,
    &SEX_AT_BIRTH,
    &GENDER_IDENTITY,
    &EDUCATION,
    &INCOME,
    &INSURANCE,
    &GENERAL_HEALTH,
    &PHYSICAL_HEALTH,
    &MENTAL_HEALTH,
    &SMOKING_100_CIGS,
    &SMOKE_FREQUENCY,
    &ALCOHOL_PARTICIPANT,
    &DRINK_FREQUENCY,
    &DAILY_DRINKS,
];

/// One answered question.
pub struct Response {
    pub question: &'static Question,
    pub answer: &'static Answer,
    /// Seconds after midnight of the survey day.
    pub secs: i64,
    pub day: i32,
}

/// What shapes a participant's answers beyond demographics.
pub struct HealthSummary {
    /// Number of chronic conditions diagnosed by the survey date.
    pub chronic: usize,
    pub depression_or_anxiety: bool,
}

/// One sitting with a survey: the responses so far, its day and the clock of its last answer.
struct Sitting<'a> {
    out: &'a mut Vec<Response>,
    day: i32,
    clock: i64,
}

impl<'a> Sitting<'a> {
    /// A later survey: on the enrollment day for most, otherwise up to `max_delay` days after.
    fn later(rng: &mut Rand, d: &Demographics, max_delay: i64, out: &'a mut Vec<Response>) -> Self {
        let later = if chance(rng, 0.7) {
            0
        } else {
            int_in(rng, 1, max_delay) as i32
        };
        let day = (d.enroll + later).min(d.last_day());
        let clock = int_in(rng, 8 * 3600, 20 * 3600);
        Sitting { out, day, clock }
    }

    /// Appends one answer (or, rarely, a skip) a few seconds after the previous one.
    fn answer(&mut self, rng: &mut Rand, question: &'static Question, answer: &'static Answer) {
        self.clock += int_in(rng, 5, 40);
        let skipped = chance(rng, 0.015);
        self.push(question, if skipped { &SKIP } else { answer });
    }

    /// Appends a chosen missing answer (a skip or a refusal), never replaced by a random skip.
    fn decline(&mut self, rng: &mut Rand, question: &'static Question, missing: &'static Answer) {
        self.clock += int_in(rng, 5, 40);
        self.push(question, missing);
    }

    fn push(&mut self, question: &'static Question, answer: &'static Answer) {
        self.out.push(Response {
            question,
            answer,
            secs: self.clock,
            day: self.day,
        });
    }
}

fn race_answer(r: Race) -> Option<&'static Answer> {
    Some(match r {
        Race::Aian => &RACE.answers[0],
        Race::Asian => &RACE.answers[1],
        Race::Black => &RACE.answers[2],
        Race::Nhpi => &RACE.answers[4],
        Race::White => &RACE.answers[5],
        Race::Other | Race::Unknown => return None,
    })
}

/// The participant's survey responses: The Basics for everyone at enrollment, Overall Health
/// and Lifestyle for most, on the same day or a few weeks later.
pub fn respond(rng: &mut Rand, d: &Demographics, health: &HealthSummary) -> Vec<Response> {
    let mut out = Vec::new();
    let clock = int_in(rng, 9 * 3600, 19 * 3600);
    let mut basics = Sitting {
        out: &mut out,
        day: d.enroll,
        clock,
    };
    the_basics(rng, d, &mut basics);
    if chance(rng, 0.9) {
        let mut sitting = Sitting::later(rng, d, 40, &mut out);
        overall_health(rng, d, health, &mut sitting);
    }
    if chance(rng, 0.86) {
        let mut sitting = Sitting::later(rng, d, 60, &mut out);
        lifestyle(rng, d, &mut sitting);
    }
    out
}

fn the_basics(rng: &mut Rand, d: &Demographics, s: &mut Sitting) {
    race(rng, d, s);
    let sex = &SEX_AT_BIRTH.answers[if d.female { 1 } else { 0 }];
    s.answer(rng, &SEX_AT_BIRTH, sex);
    let woman = d.female != chance(rng, 0.006);
    let gender = &GENDER_IDENTITY.answers[if woman { 1 } else { 0 }];
    s.answer(rng, &GENDER_IDENTITY, gender);
    let edu = (4.6 + 1.25 * d.ses + normal(rng, 0.0, 0.6))
        .round()
        .clamp(0.0, 7.0) as usize;
    s.answer(rng, &EDUCATION, &EDUCATION.answers[edu]);
    let income = (4.0 + 1.6 * (0.7 * d.ses + normal(rng, 0.0, 0.7)))
        .round()
        .clamp(0.0, 8.0) as usize;
    if chance(rng, 0.08) {
        s.decline(rng, &INCOME, &PREFER_NOT_TO_ANSWER);
    } else {
        s.answer(rng, &INCOME, &INCOME.answers[income]);
    }
    let insured = chance(rng, (0.9 + 0.04 * d.ses).clamp(0.7, 0.99));
    let ins = &INSURANCE.answers[if insured { 0 } else { 1 }];
    s.answer(rng, &INSURANCE, ins);
}

/// Race and ethnicity, agreeing with `person`: a second race of "other" participants is a
/// second answer; Hispanic ethnicity is one more answer to the same question.
fn race(rng: &mut Rand, d: &Demographics, s: &mut Sitting) {
    match (d.race, race_answer(d.race)) {
        (_, Some(ans)) => s.answer(rng, &RACE, ans),
        (Race::Other, None) => match d.second_race.and_then(race_answer) {
            Some(second) => {
                s.answer(rng, &RACE, second);
                let other = if chance(rng, 0.3) {
                    &RACE.answers[3]
                } else {
                    &RACE.answers[7]
                };
                s.answer(rng, &RACE, other);
            }
            None => s.answer(rng, &RACE, &RACE.answers[7]),
        },
        _ => {
            if d.hispanic != Some(true) {
                let missing = if chance(rng, 0.5) {
                    &PREFER_NOT_TO_ANSWER
                } else {
                    &SKIP
                };
                s.decline(rng, &RACE, missing);
            }
        }
    }
    if d.hispanic == Some(true) {
        s.answer(rng, &RACE, &RACE.answers[6]);
    }
}

fn overall_health(rng: &mut Rand, d: &Demographics, health: &HealthSummary, s: &mut Sitting) {
    let age = d.age_on(s.day) as f64;
    let base = 0.95 + 0.2 * health.chronic as f64 - 0.3 * d.ses + 0.006 * (age - 45.0);
    let score = |rng: &mut Rand, extra: f64| {
        (base + extra + normal(rng, 0.0, 0.8))
            .round()
            .clamp(0.0, 4.0) as usize
    };
    let g = score(rng, 0.0);
    s.answer(rng, &GENERAL_HEALTH, &GENERAL_HEALTH.answers[g]);
    let p = score(rng, 0.1);
    s.answer(rng, &PHYSICAL_HEALTH, &PHYSICAL_HEALTH.answers[p]);
    let mood = if health.depression_or_anxiety {
        1.2
    } else {
        -0.2
    };
    let m = score(rng, mood);
    s.answer(rng, &MENTAL_HEALTH, &MENTAL_HEALTH.answers[m]);
}

fn lifestyle(rng: &mut Rand, d: &Demographics, s: &mut Sitting) {
    let smoked = d.smoking != Smoking::Never;
    let cigs = &SMOKING_100_CIGS.answers[if smoked { 0 } else { 1 }];
    s.answer(rng, &SMOKING_100_CIGS, cigs);
    if smoked {
        let f = match d.smoking {
            Smoking::Current if chance(rng, 0.75) => 0,
            Smoking::Current => 1,
            _ => 2,
        };
        s.answer(rng, &SMOKE_FREQUENCY, &SMOKE_FREQUENCY.answers[f]);
    }
    let drinks = chance(rng, (0.78 + 0.05 * d.ses).clamp(0.5, 0.95));
    let alc = &ALCOHOL_PARTICIPANT.answers[if drinks { 0 } else { 1 }];
    s.answer(rng, &ALCOHOL_PARTICIPANT, alc);
    if !drinks {
        return;
    }
    let f = weighted_index(rng, &[0.08, 0.32, 0.25, 0.2, 0.15]);
    s.answer(rng, &DRINK_FREQUENCY, &DRINK_FREQUENCY.answers[f]);
    if f > 0 {
        // Men report more drinks on a typical day.
        let male = if d.female { 0.0 } else { 0.15 };
        let weights = [
            0.62 - male,
            0.24,
            0.08 + male * 0.5,
            0.04 + male * 0.3,
            0.02 + male * 0.2,
        ];
        let n = weighted_index(rng, &weights);
        s.answer(rng, &DAILY_DRINKS, &DAILY_DRINKS.answers[n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_belong_to_their_questions() {
        for q in QUESTIONS {
            for a in q.answers {
                assert!(a.id != q.id);
            }
        }
    }
}
