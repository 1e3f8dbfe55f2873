//! Which filters a remote source is asked to apply, and the SQL text that asks it.
//!
//! A pushed filter only narrows what travels: DataFusion applies every filter again to the
//! rows that arrive (the table reports pushed filters as *Inexact*). So a remote that applies a
//! filter more loosely than DataFusion would (a case-insensitive collation, say) costs bytes,
//! never a wrong answer. What must not be pushed is a filter a remote could apply *more
//! strictly*, dropping rows DataFusion would keep: string order and inequality under another
//! collation, float literals printed and parsed again, casts and functions whose meaning
//! differs between engines. Those stay local.

use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;

/// Longest `IN` list sent: past it the statement text grows faster than the rows it saves.
const MAX_IN_LIST: usize = 1024;

/// Whether `filter` is applied by the remote as well as locally.
pub fn pushable(filter: &Expr, schema: &Schema) -> bool {
    supported(filter, schema, false)
}

/// `negated`: under a NOT, where string equality turns into inequality (which a looser
/// collation would apply more strictly).
fn supported(e: &Expr, schema: &Schema, negated: bool) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                supported(left, schema, negated) && supported(right, schema, negated)
            }
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq => {
                let (column, value) = match (column_type(left, schema), column_type(right, schema))
                {
                    (Some(c), None) => (c, right.as_ref()),
                    (None, Some(c)) => (c, left.as_ref()),
                    _ => return false,
                };
                let equality = matches!(op, Operator::Eq) != negated;
                comparable(column, value, equality)
            }
            _ => false,
        },
        Expr::Not(inner) => supported(inner, schema, !negated),
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => column_type(inner, schema).is_some(),
        Expr::InList(list) => {
            let Some(column) = column_type(&list.expr, schema) else {
                return false;
            };
            let equality = !(list.negated ^ negated);
            list.list.len() <= MAX_IN_LIST
                && list.list.iter().all(|v| comparable(column, v, equality))
        }
        // Over exact types only, so NOT BETWEEN is as safe as BETWEEN.
        Expr::Between(Between {
            expr, low, high, ..
        }) => {
            let Some(column) = column_type(expr, schema) else {
                return false;
            };
            comparable(column, low, false) && comparable(column, high, false)
        }
        _ => false,
    }
}

/// The type of a bare column of the table.
fn column_type<'a>(e: &Expr, schema: &'a Schema) -> Option<&'a DataType> {
    match e {
        Expr::Column(c) => schema.field_with_name(&c.name).ok().map(|f| f.data_type()),
        _ => None,
    }
}

/// Exact types: integers, dates and booleans compare the same everywhere.
fn ordered(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Date32 | DataType::Boolean)
}

fn text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Days from 1970-01-01 of 0001-01-01 and 9999-12-31: dates every engine writes and reads as
/// `YYYY-MM-DD`.
const DATES: std::ops::RangeInclusive<i32> = -719_162..=2_932_896;

/// A non-null literal of the column's own type; strings under equality only, and only those that
/// mean the same with or without backslash escapes (engines differ there) and hold no control
/// characters.
fn comparable(column: &DataType, value: &Expr, equality: bool) -> bool {
    let Expr::Literal(v, _) = value else {
        return false;
    };
    if v.is_null() || &v.data_type() != column {
        return false;
    }
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            text(column) && equality && !s.chars().any(|c| c == '\\' || c.is_control())
        }
        ScalarValue::Date32(Some(days)) => DATES.contains(days),
        _ => ordered(column),
    }
}

/// `SELECT <columns> FROM <table> [WHERE <filters>] [LIMIT n]` in PostgreSQL's SQL, which
/// DataFusion, DuckDB and most Flight SQL servers read. Identifiers are always quoted: the
/// remote sees exactly the names its schema gave.
pub fn statement(
    table: &str,
    columns: &[&str],
    filters: &[&Expr],
    limit: Option<usize>,
) -> datafusion::error::Result<String> {
    let unparser = Unparser::new(&PostgreSqlDialect {});
    let mut sql = format!(
        "SELECT {} FROM {}",
        columns
            .iter()
            .map(|c| quoted(c))
            .collect::<Vec<_>>()
            .join(", "),
        table_name(table)
    );
    for (i, filter) in filters.iter().enumerate() {
        let unqualified = strip_qualifiers(filter)?;
        sql.push_str(if i == 0 { " WHERE (" } else { " AND (" });
        sql.push_str(&unparser.expr_to_sql(&unqualified)?.to_string());
        sql.push(')');
    }
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    Ok(sql)
}

/// `schema.table` as quoted identifiers.
pub(crate) fn table_name(table: &str) -> String {
    table.split('.').map(quoted).collect::<Vec<_>>().join(".")
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The filter's columns as the remote names them: without the local table's qualifier.
fn strip_qualifiers(e: &Expr) -> datafusion::error::Result<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.clone()
        .transform(|e| match e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                datafusion::common::Column::new_unqualified(c.name),
            ))),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use datafusion::prelude::{col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("person_id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
        ])
    }

    #[test]
    fn exact_comparisons_are_pushed_and_loose_ones_are_not() {
        let s = schema();
        assert!(pushable(&col("person_id").eq(lit(5i64)), &s));
        assert!(pushable(&lit(5i64).lt(col("person_id")), &s));
        assert!(pushable(&col("name").eq(lit("a")), &s));
        assert!(pushable(
            &col("person_id").in_list(vec![lit(1i64), lit(2i64)], false),
            &s
        ));
        assert!(pushable(&col("name").in_list(vec![lit("a")], false), &s));
        assert!(pushable(
            &col("person_id").between(lit(1i64), lit(9i64)),
            &s
        ));
        assert!(pushable(
            &col("person_id").gt(lit(1i64)).or(col("name").is_null()),
            &s
        ));
        // String order and inequality depend on collation; floats on printing.
        assert!(!pushable(&col("name").lt(lit("b")), &s));
        assert!(!pushable(&col("name").not_eq(lit("b")), &s));
        assert!(!pushable(
            &Expr::Not(Box::new(col("name").eq(lit("b")))),
            &s
        ));
        assert!(!pushable(&col("name").in_list(vec![lit("a")], true), &s));
        assert!(!pushable(&col("value").gt(lit(1.5f64)), &s));
        // Another type than the column's, functions, column against column.
        assert!(!pushable(&col("person_id").eq(lit(5i32)), &s));
        assert!(!pushable(&col("person_id").eq(col("person_id")), &s));
        assert!(!pushable(
            &datafusion::functions::expr_fn::lower(col("name")).eq(lit("a")),
            &s
        ));
        assert!(!pushable(&col("missing").eq(lit(1i64)), &s));
        assert!(!pushable(
            &col("person_id").eq(lit(ScalarValue::Int64(None))),
            &s
        ));
        // Strings that read differently where backslash escapes, dates outside 1..9999.
        assert!(!pushable(&col("name").eq(lit("C:\\temp")), &s));
        assert!(!pushable(&col("name").eq(lit("a\nb")), &s));
        assert!(pushable(
            &col("day").eq(lit(ScalarValue::Date32(Some(0)))),
            &s
        ));
        assert!(!pushable(
            &col("day").eq(lit(ScalarValue::Date32(Some(i32::MAX)))),
            &s
        ));
        assert!(!pushable(
            &col("day").gt(lit(ScalarValue::Date32(Some(-800_000)))),
            &s
        ));
    }

    #[test]
    fn the_statement_quotes_names_and_drops_qualifiers() {
        let filter = col("partner.person_id").eq(lit(5i64));
        let sql = statement(
            "cdm.measurement",
            &["person_id", "a\"b"],
            &[&filter],
            Some(10),
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT \"person_id\", \"a\"\"b\" FROM \"cdm\".\"measurement\" WHERE ((\"person_id\" = 5)) LIMIT 10"
        );
    }
}
