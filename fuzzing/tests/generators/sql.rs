//! Research-shaped SQL over the generated dataset: aggregates by groups, per-person
//! intermediates, windows, scalar subqueries, set operations, joins to the vocabulary and
//! tier-restricted columns; and mutants of them (tokens dropped, repeated or swapped).

use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Id,
    Concept,
    Int,
    Number,
    Date,
    Text,
}

#[derive(Debug)]
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
}

const TABLES: &[Table] = &[
    Table {
        name: "person",
        columns: &[
            ("person_id", Kind::Id),
            ("gender_concept_id", Kind::Concept),
            ("year_of_birth", Kind::Int),
            ("race_concept_id", Kind::Concept),
            ("ethnicity_concept_id", Kind::Concept),
            ("birth_datetime", Kind::Date),
            ("day_of_birth", Kind::Int),
        ],
    },
    Table {
        name: "condition_occurrence",
        columns: &[
            ("person_id", Kind::Id),
            ("condition_concept_id", Kind::Concept),
            ("condition_start_date", Kind::Date),
            ("condition_type_concept_id", Kind::Concept),
            ("visit_occurrence_id", Kind::Id),
        ],
    },
    Table {
        name: "drug_exposure",
        columns: &[
            ("person_id", Kind::Id),
            ("drug_concept_id", Kind::Concept),
            ("drug_exposure_start_date", Kind::Date),
            ("quantity", Kind::Number),
            ("days_supply", Kind::Int),
        ],
    },
    Table {
        name: "measurement",
        columns: &[
            ("person_id", Kind::Id),
            ("measurement_concept_id", Kind::Concept),
            ("measurement_date", Kind::Date),
            ("value_as_number", Kind::Number),
            ("unit_concept_id", Kind::Concept),
        ],
    },
    Table {
        name: "visit_occurrence",
        columns: &[
            ("person_id", Kind::Id),
            ("visit_concept_id", Kind::Concept),
            ("visit_start_date", Kind::Date),
            ("visit_end_date", Kind::Date),
        ],
    },
    Table {
        name: "ds_survey",
        columns: &[
            ("person_id", Kind::Id),
            ("question_concept_id", Kind::Concept),
            ("answer", Kind::Text),
            ("survey", Kind::Text),
        ],
    },
    Table {
        name: "genotype",
        columns: &[
            ("person_id", Kind::Id),
            ("vid", Kind::Text),
            ("position", Kind::Int),
            ("gt", Kind::Text),
        ],
    },
];

fn table() -> impl Strategy<Value = &'static Table> {
    prop::sample::select(TABLES.iter().collect::<Vec<_>>())
}

fn column_of(t: &'static Table, kinds: &'static [Kind]) -> BoxedStrategy<&'static str> {
    let names: Vec<&'static str> = t
        .columns
        .iter()
        .filter(|(_, k)| kinds.contains(k))
        .map(|(n, _)| *n)
        .collect();
    if names.is_empty() {
        Just("person_id").boxed()
    } else {
        prop::sample::select(names).boxed()
    }
}

fn literal(kind: Kind) -> BoxedStrategy<String> {
    match kind {
        Kind::Id => (0i64..400).prop_map(|v| v.to_string()).boxed(),
        Kind::Concept => prop_oneof![
            Just("8507".to_string()),
            Just("8532".to_string()),
            Just("201826".to_string()),
            Just("3004410".to_string()),
            Just("1503297".to_string()),
            Just("9201".to_string()),
            (0i64..5_000_000).prop_map(|v| v.to_string()),
        ]
        .boxed(),
        Kind::Int => (-5i64..3000).prop_map(|v| v.to_string()).boxed(),
        Kind::Number => (-10.0f64..500.0).prop_map(|v| format!("{v:.2}")).boxed(),
        Kind::Date => (1990i32..2026, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| format!("DATE '{y:04}-{m:02}-{d:02}'"))
            .boxed(),
        Kind::Text => "[a-zA-Z0-9 %_']{0,8}"
            .prop_map(|s| format!("'{}'", s.replace('\'', "''")))
            .boxed(),
    }
}

/// A predicate on `t`'s columns: comparisons, ranges, IN lists, NULL tests, their combinations.
fn predicate(t: &'static Table) -> BoxedStrategy<String> {
    let comparison = prop::sample::select(t.columns.to_vec())
        .prop_flat_map(|(c, k)| {
            (
                Just(c),
                prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]),
                literal(k),
                literal(k),
                0..5u8,
            )
        })
        .prop_map(|(c, op, a, b, shape)| match shape {
            0 => format!("{c} IN ({a}, {b})"),
            1 => format!("{c} BETWEEN {a} AND {b}"),
            2 => format!("{c} IS NULL"),
            3 => format!("NOT ({c} {op} {a})"),
            _ => format!("{c} {op} {a}"),
        });
    comparison
        .prop_recursive(2, 6, 2, |inner| {
            (
                inner.clone(),
                inner,
                prop::sample::select(vec!["AND", "OR"]),
            )
                .prop_map(|(a, b, op)| format!("({a} {op} {b})"))
        })
        .boxed()
}

fn aggregate(t: &'static Table) -> BoxedStrategy<String> {
    (
        column_of(t, &[Kind::Number, Kind::Int]),
        column_of(t, &[Kind::Concept, Kind::Date, Kind::Text]),
        0..9u8,
    )
        .prop_map(|(num, other, which)| match which {
            0 => "COUNT(*)".to_string(),
            1 => "COUNT(DISTINCT person_id)".to_string(),
            2 => format!("SUM({num})"),
            3 => format!("AVG({num})"),
            4 => format!("MIN({other})"),
            5 => format!("MAX({num})"),
            6 => format!("COUNT({other})"),
            7 => format!("STDDEV({num})"),
            _ => "100.0 * COUNT(*) / SUM(COUNT(*)) OVER ()".to_string(),
        })
        .boxed()
}

/// `SELECT groups, aggregates FROM t [WHERE] GROUP BY groups [HAVING] [ORDER BY] [LIMIT]`.
fn grouped(t: &'static Table) -> BoxedStrategy<String> {
    (
        prop::collection::vec(column_of(t, &[Kind::Concept, Kind::Int, Kind::Text]), 0..3),
        prop::collection::vec(aggregate(t), 1..3),
        prop::option::of(predicate(t)),
        0..4u8,
        prop::option::of(0u32..60),
    )
        .prop_map(move |(mut groups, aggregates, filter, tail, limit)| {
            groups.dedup();
            let mut select: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            select.extend(
                aggregates
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("{a} AS a{i}")),
            );
            let mut sql = format!("SELECT {} FROM {}", select.join(", "), t.name);
            if let Some(f) = filter {
                sql += &format!(" WHERE {f}");
            }
            if !groups.is_empty() {
                sql += &format!(" GROUP BY {}", groups.join(", "));
            }
            match tail {
                0 => sql += " HAVING COUNT(*) > 5",
                1 => sql += " ORDER BY a0 DESC NULLS LAST",
                _ => {}
            }
            if let Some(n) = limit {
                sql += &format!(" LIMIT {n}");
            }
            sql
        })
        .boxed()
}

/// A per-person intermediate (first date, event count) summarised over persons.
fn per_person(t: &'static Table) -> BoxedStrategy<String> {
    (
        column_of(t, &[Kind::Date, Kind::Number, Kind::Int]),
        prop::option::of(predicate(t)),
        0..4u8,
    )
        .prop_map(move |(c, filter, outer)| {
            let filter = filter.map(|f| format!("WHERE {f}")).unwrap_or_default();
            let inner = format!(
                "SELECT person_id, MIN({c}) AS first_value, COUNT(*) AS events FROM {} {filter} GROUP BY person_id",
                t.name
            );
            match outer {
                0 => format!(
                    "WITH x AS ({inner}) SELECT p.gender_concept_id, COUNT(*) AS persons, AVG(x.events) AS mean_events FROM x JOIN person p ON p.person_id = x.person_id GROUP BY 1"
                ),
                1 => format!(
                    "WITH x AS ({inner}) SELECT COUNT(*) AS persons FROM x WHERE x.events >= 2"
                ),
                2 => format!(
                    "WITH x AS ({inner}) SELECT (SELECT COUNT(*) FROM x) AS n, COUNT(*) AS persons FROM person"
                ),
                _ => inner,
            }
        })
        .boxed()
}

/// The latest value per person by a window, then counted.
fn windowed(t: &'static Table) -> BoxedStrategy<String> {
    (column_of(t, &[Kind::Date, Kind::Int]), 0..3u8)
        .prop_map(move |(c, shape)| {
            let ranked = format!(
                "SELECT person_id, {c}, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY {c} DESC) AS rn FROM {}",
                t.name
            );
            match shape {
                0 => format!("SELECT COUNT(*) AS persons FROM ({ranked}) r WHERE rn = 1"),
                1 => format!(
                    "SELECT rn, COUNT(DISTINCT person_id) AS persons FROM ({ranked}) r GROUP BY rn ORDER BY rn LIMIT 10"
                ),
                _ => ranked,
            }
        })
        .boxed()
}

fn set_operation(t: &'static Table) -> BoxedStrategy<String> {
    (
        predicate(t),
        prop::sample::select(vec!["UNION ALL", "UNION", "EXCEPT", "INTERSECT"]),
    )
        .prop_map(move |(p, op)| {
            format!(
                "SELECT COUNT(*) AS n FROM {0} {op} SELECT COUNT(*) AS n FROM {0} WHERE {p}",
                t.name
            )
        })
        .boxed()
}

fn vocabulary_join(t: &'static Table) -> BoxedStrategy<String> {
    column_of(t, &[Kind::Concept])
        .prop_map(move |c| {
            format!(
                "SELECT c.concept_name, COUNT(DISTINCT t.person_id) AS persons FROM {} t JOIN concept c ON c.concept_id = t.{c} GROUP BY c.concept_name ORDER BY persons DESC LIMIT 20",
                t.name
            )
        })
        .boxed()
}

/// One statement of any of the shapes above, on any table.
pub fn statement() -> impl Strategy<Value = String> {
    (table(), 0..7u8).prop_flat_map(|(t, shape)| match shape {
        0 | 1 => grouped(t),
        2 => per_person(t),
        3 => windowed(t),
        4 => set_operation(t),
        5 => vocabulary_join(t),
        _ => (prop::option::of(predicate(t)), 0u32..50)
            .prop_map(move |(p, n)| {
                let filter = p.map(|p| format!(" WHERE {p}")).unwrap_or_default();
                format!("SELECT * FROM {}{filter} LIMIT {n}", t.name)
            })
            .boxed(),
    })
}

/// A statement with a few tokens dropped, repeated or swapped: text that mostly does not
/// parse, or parses into something no one wrote.
pub fn mutant() -> impl Strategy<Value = String> {
    (
        statement(),
        prop::collection::vec(
            (
                0..3u8,
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
            ),
            1..4,
        ),
    )
        .prop_map(|(sql, edits)| {
            let mut tokens: Vec<String> = sql.split(' ').map(str::to_string).collect();
            for (how, a, b) in edits {
                if tokens.len() < 2 {
                    break;
                }
                let (i, j) = (a.index(tokens.len()), b.index(tokens.len()));
                match how {
                    0 => {
                        tokens.remove(i);
                    }
                    1 => {
                        let t = tokens[i].clone();
                        tokens.insert(j, t);
                    }
                    _ => tokens.swap(i, j),
                }
            }
            tokens.join(" ")
        })
}
