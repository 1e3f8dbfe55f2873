//! Structured random inputs: mostly well-formed (so they reach the planner, the policy rules and
//! the handlers behind each decoder), with a share of mutants and noise (so the decoders and
//! parsers see broken input too).

pub mod cohort_builder;
pub mod flight;
pub mod passport;
pub mod pg;
pub mod sql;

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-zA-Z0-9_ %.-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The Circe definitions of the suite (`tests/cohorts/circe`), each with one node replaced by
/// an arbitrary value, one key dropped, or unchanged.
pub fn mutated_circe() -> impl Strategy<Value = String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/cohorts/circe");
    let mut definitions: Vec<Value> = std::fs::read_dir(dir)
        .expect("tests/cohorts/circe")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect();
    definitions.sort_by_key(|d| d.to_string());
    assert!(!definitions.is_empty(), "no Circe definitions in {dir}");
    (
        prop::sample::select(definitions),
        any::<prop::sample::Index>(),
        0..3u8,
        json_value(),
    )
        .prop_map(|(mut definition, at, how, replacement)| {
            mutate(&mut definition, at, how, replacement);
            definition.to_string()
        })
}

/// Replaces (`how` 0), drops (1) or keeps (2) the node at `at` in a walk of `value`.
pub fn mutate(value: &mut Value, at: prop::sample::Index, how: u8, replacement: Value) {
    let mut paths = Vec::new();
    collect_paths(value, &mut Vec::new(), &mut paths);
    if paths.is_empty() || how == 2 {
        return;
    }
    let path = at.get(&paths).clone();
    let Some((last, parent)) = path.split_last() else {
        if how == 0 {
            *value = replacement;
        }
        return;
    };
    let mut node = &mut *value;
    for step in parent {
        node = match step {
            Step::Key(k) => &mut node[k.as_str()],
            Step::Index(i) => &mut node[*i],
        };
    }
    match (last, node, how) {
        (Step::Key(k), Value::Object(m), 1) => {
            m.remove(k);
        }
        (Step::Index(i), Value::Array(a), 1) => {
            a.remove(*i);
        }
        (Step::Key(k), node, _) => node[k.as_str()] = replacement,
        (Step::Index(i), node, _) => node[*i] = replacement,
    }
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn collect_paths(value: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                here.push(Step::Key(k.clone()));
                collect_paths(v, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                here.push(Step::Index(i));
                collect_paths(v, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}
