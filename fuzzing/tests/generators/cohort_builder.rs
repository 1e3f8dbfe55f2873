//! Cohort Builder definitions (the program's own JSON, DESIGN.md "Cohorts"): groups of items
//! with search parameters, attributes and modifiers, temporal groups, excludes; values drawn
//! from the valid vocabulary and, now and then, from anything.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{json_value, mutate};

const KINDS: &[&str] = &[
    "CONDITION",
    "DRUG",
    "MEASUREMENT",
    "PROCEDURE",
    "OBSERVATION",
    "VISIT",
    "SURVEY",
    "PHYSICAL_MEASUREMENT",
    "PERSON",
    "FITBIT",
    "SNP_INDEL_VARIANT",
    "NOT_A_KIND",
];
const DEMOGRAPHICS: &[&str] = &["AGE", "GENDER", "SEX", "RACE", "ETHNICITY", "DECEASED"];
const OPERATORS: &[&str] = &[
    "EQUAL",
    "NOT_EQUAL",
    "LESS_THAN",
    "GREATER_THAN",
    "LESS_THAN_OR_EQUAL_TO",
    "GREATER_THAN_OR_EQUAL_TO",
    "LIKE",
    "IN",
    "BETWEEN",
    "SOMETIMES",
];
const MODIFIERS: &[&str] = &[
    "AGE_AT_EVENT",
    "NUM_OF_OCCURRENCES",
    "EVENT_DATE",
    "ENCOUNTERS",
];
const CONCEPTS: &[i64] = &[
    201826, 320128, 4310024, 257628, 441267, 1503297, 3004410, 8507, 8532, 9201, 0, -1,
];

fn operand() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-5i64..120).prop_map(|v| json!(v.to_string())),
        (1990i32..2026, 1u32..13).prop_map(|(y, m)| json!(format!("{y}-{m:02}-01"))),
        "[a-z0-9%-]{0,6}".prop_map(Value::from),
        (-5i64..120).prop_map(Value::from),
    ]
}

fn operation(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(names),
        prop::sample::select(OPERATORS),
        prop::collection::vec(operand(), 0..4),
    )
        .prop_map(|(name, operator, operands)| {
            json!({"name": name, "operator": operator, "operands": operands})
        })
}

fn search_parameter(kind: &'static str) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(CONCEPTS),
        any::<[bool; 3]>(),
        prop::sample::select(DEMOGRAPHICS),
        prop::collection::vec(
            operation(&["ANY", "NUM", "CAT", "AGE", "AGE_AT_CONSENT"]),
            0..2,
        ),
    )
        .prop_map(
            move |(concept, [group, ancestor, standard], demographic, attributes)| {
                let kind_of_parameter = if kind == "PERSON" {
                    demographic
                } else {
                    "SNOMED"
                };
                json!({
                    "parameterId": "p", "name": "x", "domain": kind, "type": kind_of_parameter,
                    "group": group, "ancestorData": ancestor, "standard": standard,
                    "conceptId": concept, "attributes": attributes,
                })
            },
        )
}

fn item(temporal: bool) -> impl Strategy<Value = Value> {
    prop::sample::select(KINDS).prop_flat_map(move |kind| {
        (
            prop::collection::vec(search_parameter(kind), 1..3),
            prop::collection::vec(operation(MODIFIERS), 0..3),
            0..2u8,
        )
            .prop_map(move |(parameters, modifiers, temporal_group)| {
                let mut item = json!({
                    "id": "i", "type": kind, "searchParameters": parameters, "modifiers": modifiers,
                });
                if temporal {
                    item["temporalGroup"] = json!(temporal_group);
                }
                item
            })
    })
}

fn group() -> impl Strategy<Value = Value> {
    any::<bool>().prop_flat_map(|temporal| {
        (
            prop::collection::vec(item(temporal), 1..3),
            prop::sample::select(&["ANY_MENTION", "FIRST_MENTION", "LAST_MENTION"][..]),
            prop::sample::select(
                &[
                    "DURING_SAME_ENCOUNTER_AS",
                    "X_DAYS_BEFORE",
                    "X_DAYS_AFTER",
                    "WITHIN_X_DAYS_OF",
                ][..],
            ),
            -10i64..400,
        )
            .prop_map(move |(items, mention, time, value)| {
                let mut group = json!({"id": "g", "temporal": temporal, "items": items});
                if temporal {
                    group["mention"] = json!(mention);
                    group["time"] = json!(time);
                    group["timeValue"] = json!(value);
                }
                group
            })
    })
}

/// A definition, sometimes with one node replaced by an arbitrary value or dropped.
pub fn definition() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(group(), 1..3),
        prop::collection::vec(group(), 0..2),
        any::<prop::sample::Index>(),
        0..4u8,
        json_value(),
    )
        .prop_map(|(includes, excludes, at, how, replacement)| {
            let mut definition =
                json!({"includes": includes, "excludes": excludes, "dataFilters": []});
            if how < 2 {
                mutate(&mut definition, at, how, replacement);
            }
            definition.to_string()
        })
}
