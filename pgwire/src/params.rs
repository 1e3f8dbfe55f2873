//! Bound parameters of the extended protocol as DataFusion values: decoded in the type the
//! client declared (or the one the plan infers), in text or binary as sent, then cast to the
//! type the plan expects.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::PgWireResult;
use rust_decimal::Decimal;
use strata_query::Prepared;

use crate::encode::pg_type;
use crate::error::{error, pg_error};

pub fn values<S: Clone>(portal: &Portal<S>, prepared: &Prepared) -> PgWireResult<ParamValues> {
    let schema = prepared.parameter_schema().map_err(pg_error)?;
    let declared = &portal.statement.parameter_types;
    let mut values = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let expected = schema
            .field_with_name(&format!("${}", i + 1))
            .ok()
            .map(|f| f.data_type().clone())
            .filter(|t| *t != DataType::Null);
        let wire = declared
            .get(i)
            .cloned()
            .flatten()
            .filter(|t| *t != Type::UNKNOWN)
            .or_else(|| expected.as_ref().map(pg_type))
            .unwrap_or(Type::TEXT);
        let value = decode(portal, i, &wire)?;
        values.push(match expected {
            Some(t) if value.data_type() != t && !value.is_null() => value
                .cast_to(&t)
                .map_err(|_| error("22P02", format!("parameter ${} is not a valid {t}", i + 1)))?,
            Some(t) if value.is_null() => ScalarValue::try_from(&t).unwrap_or(value),
            _ => value,
        });
    }
    Ok(ParamValues::from(values))
}

fn decode<S: Clone>(portal: &Portal<S>, i: usize, wire: &Type) -> PgWireResult<ScalarValue> {
    Ok(match *wire {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, wire)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, wire)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, wire)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, wire)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, wire)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, wire)?),
        Type::NUMERIC => match portal.parameter::<Decimal>(i, wire)? {
            Some(d) => ScalarValue::Decimal128(Some(d.mantissa()), 38, d.scale() as i8),
            None => ScalarValue::Decimal128(None, 38, 0),
        },
        Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<NaiveDate>(i, wire)?
                .map(|d| (d - NaiveDate::default()).num_days() as i32),
        ),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<NaiveDateTime>(i, wire)?
                .map(|t| t.and_utc().timestamp_micros()),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<DateTime<FixedOffset>>(i, wire)?
                .map(|t| t.timestamp_micros()),
            Some("+00:00".into()),
        ),
        Type::TIME => {
            ScalarValue::Time64Microsecond(portal.parameter::<NaiveTime>(i, wire)?.map(|t| {
                use chrono::Timelike;
                t.num_seconds_from_midnight() as i64 * 1_000_000 + t.nanosecond() as i64 / 1000
            }))
        }
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(i, wire)?),
        Type::OID => ScalarValue::UInt32(portal.parameter::<u32>(i, wire)?),
        // Text and every type without a counterpart here: the value as the client wrote it.
        _ => ScalarValue::Utf8(portal.parameter::<String>(i, &Type::TEXT)?),
    })
}
