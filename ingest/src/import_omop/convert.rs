//! Text → typed columns for CSV exports. CSV files are read as text only (no type inference,
//! so `concept_code` "0123" stays "0123") and each known column is then parsed here by its CDM
//! type, accepting the spellings real exports use.
//!
//! - Missing values: an empty field, `NA`, `NULL`, `null`, `\N` or `NaN` (R, SQL dumps, pandas)
//!   become null in typed columns; text columns keep everything but the empty field.
//! - Integers: `42`, `+42`, `-7`, and `42.0` (pandas writes integer columns with gaps as floats).
//! - Dates: `2020-01-31`, `2020/01/31`, `20200131` (Athena vocabulary files); a time part after
//!   the date (`2020-01-31 00:00:00`) is ignored.
//! - Datetimes: a date as above, optionally followed by `T` or a space and `HH:MM[:SS[.ffffff]]`,
//!   optionally followed by `Z` or a `±HH[:MM]` offset, which is converted to UTC; a bare date is
//!   midnight.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use chrono::{Datelike, NaiveDate};

use strata_engine::tables::ColumnType;

/// Why a value could not be read: the row (0-based inside the array) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    pub row: usize,
    pub expected: &'static str,
}

fn is_null_token(s: &str) -> bool {
    matches!(s, "" | "NA" | "NULL" | "null" | "\\N" | "NaN" | "nan")
}

/// Parses one column of text into its CDM type.
pub fn convert(values: &StringArray, ty: ColumnType) -> Result<ArrayRef, BadValue> {
    fn each<T>(
        values: &StringArray,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<Option<T>>, BadValue> {
        let mut out = Vec::with_capacity(values.len());
        for row in 0..values.len() {
            if values.is_null(row) {
                out.push(None);
                continue;
            }
            let s = values.value(row).trim();
            if is_null_token(s) {
                out.push(None);
                continue;
            }
            match parse(s) {
                Some(v) => out.push(Some(v)),
                None => return Err(BadValue { row, expected }),
            }
        }
        Ok(out)
    }
    Ok(match ty {
        ColumnType::Text => Arc::new(values.clone()),
        ColumnType::Id | ColumnType::BigInt => {
            Arc::new(Int64Array::from(each(values, "an integer", parse_int)?))
        }
        ColumnType::ConceptId | ColumnType::Int => {
            let parse = |s: &str| parse_int(s).and_then(|v| i32::try_from(v).ok());
            Arc::new(Int32Array::from(each(values, "a 32-bit integer", parse)?))
        }
        ColumnType::Number => Arc::new(Float64Array::from(each(values, "a number", parse_float)?)),
        ColumnType::Date => Arc::new(Date32Array::from(each(
            values,
            "a date (YYYY-MM-DD)",
            parse_date,
        )?)),
        ColumnType::Datetime => Arc::new(TimestampMicrosecondArray::from(each(
            values,
            "a datetime (YYYY-MM-DD HH:MM:SS)",
            parse_datetime,
        )?)),
        ColumnType::Flag => Arc::new(BooleanArray::from(each(
            values,
            "true or false",
            parse_flag,
        )?)),
    })
}

pub fn parse_int(s: &str) -> Option<i64> {
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    // "42.0" / "42." from float-typed writers, but never a real fraction.
    let (int, frac) = s.split_once('.')?;
    if !frac.bytes().all(|b| b == b'0') || int.is_empty() || int == "-" || int == "+" {
        return None;
    }
    int.parse::<i64>().ok()
}

/// `true`/`false` as SQL dumps, R and pandas spell them, or `1`/`0`.
pub fn parse_flag(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Some(true),
        "false" | "f" | "0" => Some(false),
        _ => None,
    }
}

pub fn parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| !v.is_nan())
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

/// Splits a leading date off `s`, returning days since 1970-01-01 and the rest.
fn split_date(s: &str) -> Option<(i32, &str)> {
    let b = s.as_bytes();
    let (y, m, d, rest) = if b.len() >= 10 && (b[4] == b'-' || b[4] == b'/') && b[7] == b[4] {
        (
            digits(&s[0..4])?,
            digits(&s[5..7])?,
            digits(&s[8..10])?,
            &s[10..],
        )
    } else if b.len() >= 8 && b[..8].iter().all(u8::is_ascii_digit) {
        (
            digits(&s[0..4])?,
            digits(&s[4..6])?,
            digits(&s[6..8])?,
            &s[8..],
        )
    } else {
        return None;
    };
    let date = NaiveDate::from_ymd_opt(y as i32, m, d)?;
    Some((date.num_days_from_ce() - UNIX_EPOCH_CE_DAYS, rest))
}

pub fn parse_date(s: &str) -> Option<i32> {
    let (days, rest) = split_date(s)?;
    if rest.is_empty() || rest.starts_with(' ') || rest.starts_with('T') {
        Some(days)
    } else {
        None
    }
}

pub fn parse_datetime(s: &str) -> Option<i64> {
    const DAY_US: i64 = 86_400_000_000;
    let (days, rest) = split_date(s)?;
    let mut micros = days as i64 * DAY_US;
    let rest = match rest.as_bytes().first() {
        None => return Some(micros),
        Some(b' ' | b'T') => rest[1..].trim_start(),
        Some(_) => return None,
    };
    // HH:MM[:SS[.ffffff]]
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (rest[..i].trim_end(), &rest[i..]),
        None => (rest.trim_end(), ""),
    };
    let mut parts = time.splitn(3, ':');
    let h = digits(parts.next()?)?;
    let m = digits(parts.next()?)?;
    let (sec, frac) = match parts.next() {
        None => (0, 0i64),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let frac_us = if frac.is_empty() {
                0
            } else {
                if !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let mut f = frac.to_string();
                f.truncate(6);
                while f.len() < 6 {
                    f.push('0');
                }
                f.parse::<i64>().ok()?
            };
            (digits(whole)?, frac_us)
        }
    };
    if h > 24 || m > 59 || sec > 60 {
        return None;
    }
    micros += ((h as i64 * 60 + m as i64) * 60 + sec as i64) * 1_000_000 + frac;
    match zone {
        "" | "Z" | "z" => {}
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let z = &z[1..];
            let (zh, zm) = match z.split_once(':') {
                Some((h, m)) => (digits(h)?, digits(m)?),
                None if z.len() == 4 => (digits(&z[..2])?, digits(&z[2..])?),
                None => (digits(z)?, 0),
            };
            if zh > 18 || zm > 59 {
                return None;
            }
            micros -= sign * (zh as i64 * 60 + zm as i64) * 60_000_000;
        }
    }
    Some(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};

    fn text(v: &[Option<&str>]) -> StringArray {
        StringArray::from(v.to_vec())
    }

    #[test]
    fn integers_and_nulls() {
        let a = convert(
            &text(&[
                Some("1"),
                Some(" 2 "),
                Some("3.0"),
                None,
                Some("NA"),
                Some("\\N"),
            ]),
            ColumnType::Id,
        )
        .unwrap();
        let a = a.as_primitive::<Int64Type>();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![Some(1), Some(2), Some(3), None, None, None]
        );
        let err = convert(&text(&[Some("1"), Some("1.5")]), ColumnType::Id).unwrap_err();
        assert_eq!(err.row, 1);
        assert!(convert(&text(&[Some("abc")]), ColumnType::ConceptId).is_err());
        assert!(convert(&text(&[Some("3000000000")]), ColumnType::ConceptId).is_err());
        let c = convert(&text(&[Some("8507")]), ColumnType::ConceptId).unwrap();
        assert_eq!(c.as_primitive::<Int32Type>().value(0), 8507);
    }

    #[test]
    fn text_is_never_inferred() {
        let a = convert(&text(&[Some("0123"), Some("NA")]), ColumnType::Text).unwrap();
        let a = a.as_string::<i32>();
        assert_eq!(a.value(0), "0123");
        assert_eq!(a.value(1), "NA");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("19691231"), Some(-1));
        assert_eq!(parse_date("2020/02/29"), parse_date("2020-02-29"));
        assert_eq!(parse_date("2020-02-29 00:00:00"), parse_date("2020-02-29"));
        assert_eq!(parse_date("2019-02-29"), None);
        assert_eq!(parse_date("31/01/2020"), None);
        assert_eq!(parse_date("2020-01-01x"), None);
        let a = convert(&text(&[Some("2099-12-31"), Some("")]), ColumnType::Date).unwrap();
        assert_eq!(a.as_primitive::<Date32Type>().value(0), 47_481);
        assert!(a.is_null(1));
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01"), Some(0));
        assert_eq!(parse_datetime("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(parse_datetime("1970-01-01T00:01"), Some(60_000_000));
        assert_eq!(parse_datetime("1970-01-01 00:00:00.5"), Some(500_000));
        assert_eq!(parse_datetime("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_datetime("1970-01-01 00:00:00-0130"),
            Some(5_400_000_000)
        );
        assert_eq!(parse_datetime("1970-01-01 25:00:00"), None);
        assert_eq!(parse_datetime("yesterday"), None);
        let a = convert(&text(&[Some("2000-01-01 12:00:00")]), ColumnType::Datetime).unwrap();
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            946_728_000_000_000
        );
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float("1.5"), Some(1.5));
        assert_eq!(parse_float("-2e3"), Some(-2000.0));
        assert_eq!(parse_float("x"), None);
        let a = convert(&text(&[Some("NaN"), Some("7")]), ColumnType::Number).unwrap();
        assert!(a.is_null(0));
    }
}
