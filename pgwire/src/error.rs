//! The one place where the query service's errors become PostgreSQL errors, with the SQLSTATE a
//! client expects.

use pgwire::error::{ErrorInfo, PgWireError};
use strata_query::QueryError;

pub fn pg_error(e: QueryError) -> PgWireError {
    let (code, message) = match &e {
        QueryError::Unauthenticated(_) => ("28P01", e.message()),
        QueryError::Denied(_) => ("42501", e.message()),
        // An unknown table and one above the caller's tier get the same answer.
        QueryError::UnavailableTable { table, .. } => (
            "42P01",
            format!("relation \"{table}\" does not exist or is not available to you"),
        ),
        QueryError::NotFound(_) => ("42704", e.message()),
        QueryError::Invalid(_) => ("42601", e.message()),
        QueryError::Unsupported(_) => ("0A000", e.message()),
        QueryError::ResourcesExhausted(_) => ("53400", e.message()),
        QueryError::AuditUnavailable => ("58030", e.message()),
        QueryError::Cancelled => ("57014", e.message()),
        QueryError::ShuttingDown => ("57P01", e.message()),
        QueryError::Storage { damaged: true, .. } => ("XX001", e.message()),
        QueryError::Storage { damaged: false, .. } => ("58030", e.message()),
        QueryError::Cluster(_) => ("58000", e.message()),
        QueryError::Execution(_) | QueryError::Internal(_) => ("XX000", e.message()),
    };
    error(code, message)
}

/// An error of this door itself (protocol use, session commands).
pub fn error(code: &str, message: String) -> PgWireError {
    reported("ERROR", code, message)
}

/// A login refused: the connection ends.
pub fn fatal(code: &str, message: String) -> PgWireError {
    reported("FATAL", code, message)
}

fn reported(severity: &str, code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_owned(),
        code.to_owned(),
        message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: QueryError) -> String {
        match pg_error(e) {
            PgWireError::UserError(info) => info.code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_kind_has_its_sqlstate() {
        assert_eq!(code(QueryError::Unauthenticated("x".into())), "28P01");
        assert_eq!(code(QueryError::Denied("x".into())), "42501");
        assert_eq!(code(QueryError::Unsupported("x".into())), "0A000");
        assert_eq!(code(QueryError::ResourcesExhausted("x".into())), "53400");
        assert_eq!(code(QueryError::Cancelled), "57014");
        assert_eq!(code(QueryError::ShuttingDown), "57P01");
    }

    #[test]
    fn unknown_and_forbidden_tables_read_alike() {
        let forbidden = pg_error(QueryError::UnavailableTable {
            table: "genotype".into(),
            message: "table 'genotype' requires the controlled tier (yours: registered)".into(),
            denied: true,
        });
        let unknown = pg_error(QueryError::UnavailableTable {
            table: "genotype".into(),
            message: "table 'genotype' not found".into(),
            denied: false,
        });
        assert_eq!(forbidden.to_string(), unknown.to_string());
        assert!(matches!(forbidden, PgWireError::UserError(i) if i.code == "42P01"));
    }
}
