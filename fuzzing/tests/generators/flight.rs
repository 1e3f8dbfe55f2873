//! Flight SQL inputs in the harness's layout (`[call, kind, body…]`): bodies that are valid
//! messages of the chosen kind (statements from the SQL generator, metadata filters with
//! wildcards, handles) or arbitrary bytes.

use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, TicketStatementQuery,
};
use proptest::prelude::*;
use prost::Message;

use super::sql;

fn pattern() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[a-z_%]{0,10}")
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

/// A valid message for descriptor or ticket kind `kind` (an index into `COMMAND_TYPES`).
fn command(kind: u8) -> BoxedStrategy<Vec<u8>> {
    match kind {
        0 => sql::statement()
            .prop_map(|query| {
                CommandStatementQuery {
                    query,
                    transaction_id: None,
                }
                .encode_to_vec()
            })
            .boxed(),
        1 => bytes()
            .prop_map(|h| {
                CommandPreparedStatementQuery {
                    prepared_statement_handle: h.into(),
                }
                .encode_to_vec()
            })
            .boxed(),
        2 => bytes()
            .prop_map(|h| {
                TicketStatementQuery {
                    statement_handle: h.into(),
                }
                .encode_to_vec()
            })
            .boxed(),
        4 => (pattern(), pattern())
            .prop_map(|(catalog, db_schema_filter_pattern)| {
                CommandGetDbSchemas {
                    catalog,
                    db_schema_filter_pattern,
                }
                .encode_to_vec()
            })
            .boxed(),
        5 => (
            pattern(),
            pattern(),
            pattern(),
            prop::collection::vec("[A-Z ]{0,8}", 0..3),
            any::<bool>(),
        )
            .prop_map(
                |(
                    catalog,
                    db_schema_filter_pattern,
                    table_name_filter_pattern,
                    table_types,
                    include_schema,
                )| {
                    CommandGetTables {
                        catalog,
                        db_schema_filter_pattern,
                        table_name_filter_pattern,
                        table_types,
                        include_schema,
                    }
                    .encode_to_vec()
                },
            )
            .boxed(),
        7 => prop::collection::vec(any::<u32>(), 0..6)
            .prop_map(|info| CommandGetSqlInfo { info }.encode_to_vec())
            .boxed(),
        8..=11 => (pattern(), pattern(), "[a-z_]{0,20}")
            .prop_map(|(catalog, db_schema, table)| {
                CommandGetPrimaryKeys {
                    catalog,
                    db_schema,
                    table,
                }
                .encode_to_vec()
            })
            .boxed(),
        12 => prop::option::of(any::<i32>())
            .prop_map(|data_type| CommandGetXdbcTypeInfo { data_type }.encode_to_vec())
            .boxed(),
        _ => bytes().boxed(),
    }
}

/// A valid action body for action kind `kind` (an index into `ACTION_TYPES`).
fn action(kind: u8) -> BoxedStrategy<Vec<u8>> {
    match kind {
        0 => sql::statement()
            .prop_map(|query| {
                ActionCreatePreparedStatementRequest {
                    query,
                    transaction_id: None,
                }
                .as_any()
                .encode_to_vec()
            })
            .boxed(),
        1 => bytes()
            .prop_map(|h| {
                ActionClosePreparedStatementRequest {
                    prepared_statement_handle: h.into(),
                }
                .as_any()
                .encode_to_vec()
            })
            .boxed(),
        _ => bytes().boxed(),
    }
}

pub fn input() -> impl Strategy<Value = Vec<u8>> {
    let kinds = strata_fuzzing::COMMAND_TYPES.len() as u8 + 2;
    let actions = strata_fuzzing::ACTION_TYPES.len() as u8;
    (any::<u8>(), 0..kinds).prop_flat_map(move |(call, kind)| {
        let kind = if call % 4 == 2 { kind % actions } else { kind };
        let body = if call % 4 == 2 {
            action(kind)
        } else {
            command(kind)
        };
        prop_oneof![
            4 => body,
            1 => bytes(),
        ]
        .prop_map(move |body| {
            let mut input = vec![call, kind];
            input.extend(body);
            input
        })
    })
}
