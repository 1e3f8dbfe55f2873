//! Arrow results as PostgreSQL rows: each Arrow type gets the PostgreSQL type a client expects,
//! in text or binary format as the client asked. Types PostgreSQL has no counterpart for
//! (intervals, structs, maps, unions, lists of those) travel as their Arrow text rendering.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormat};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::ToSql;
use rust_decimal::Decimal;

/// The PostgreSQL type a column of `data_type` is sent as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(p, _) if *p <= 28 => Type::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Dictionary(_, value) => pg_type(value),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            match pg_type(f.data_type()) {
                Type::BOOL => Type::BOOL_ARRAY,
                Type::INT2 => Type::INT2_ARRAY,
                Type::INT4 => Type::INT4_ARRAY,
                Type::INT8 => Type::INT8_ARRAY,
                Type::FLOAT4 => Type::FLOAT4_ARRAY,
                Type::FLOAT8 => Type::FLOAT8_ARRAY,
                Type::TEXT => Type::TEXT_ARRAY,
                Type::DATE => Type::DATE_ARRAY,
                _ => Type::TEXT,
            }
        }
        _ => Type::TEXT,
    }
}

/// The row description of `schema`, each column in the format the client asked for.
pub fn fields(schema: &Schema, format: &Format, options: &Arc<FormatOptions>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
            .with_format_options(options.clone())
        })
        .collect()
}

/// Every row of `batch` as PostgreSQL data rows described by `fields`.
pub fn rows(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let columns: Vec<Column> = batch
        .columns()
        .iter()
        .zip(fields.iter())
        .map(|(array, field)| Column::new(array, field))
        .collect::<PgWireResult<_>>()?;
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for column in &columns {
            column.encode(row, &mut encoder)?;
        }
        out.push(encoder.take_row());
    }
    Ok(out)
}

/// One column with what encoding a value needs.
struct Column<'a> {
    array: ArrayRef,
    /// Logical nulls: a NullArray (a column that is NULL by type) has no validity buffer.
    nulls: Option<arrow::buffer::NullBuffer>,
    field: &'a FieldInfo,
    /// For the types sent as their text rendering.
    text: Option<ArrayFormatter<'a>>,
}

impl<'a> Column<'a> {
    fn new(original: &'a ArrayRef, field: &'a FieldInfo) -> PgWireResult<Self> {
        // Dictionary columns are sent as their values.
        let array = match original.data_type() {
            DataType::Dictionary(_, value) => {
                arrow::compute::cast(original, value).map_err(arrow_error)?
            }
            _ => original.clone(),
        };
        let text = (*field.datatype() == Type::TEXT && !is_string(array.data_type()))
            .then(|| ArrayFormatter::try_new(original.as_ref(), &TEXT_FORMAT))
            .transpose()
            .map_err(arrow_error)?;
        Ok(Column {
            nulls: array.logical_nulls(),
            array,
            field,
            text,
        })
    }

    fn encode(&self, row: usize, out: &mut DataRowEncoder) -> PgWireResult<()> {
        let array = self.array.as_ref();
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return self.put(out, &None::<i64>);
        }
        if let Some(text) = &self.text {
            return self.put(out, &text.value(row).to_string());
        }
        match array.data_type() {
            DataType::Boolean => self.put(out, &array.as_boolean().value(row)),
            DataType::Int8 => self.put(out, &(array.as_primitive::<Int8Type>().value(row) as i16)),
            DataType::Int16 => self.put(out, &array.as_primitive::<Int16Type>().value(row)),
            DataType::Int32 => self.put(out, &array.as_primitive::<Int32Type>().value(row)),
            DataType::Int64 => self.put(out, &array.as_primitive::<Int64Type>().value(row)),
            DataType::UInt8 => {
                self.put(out, &(array.as_primitive::<UInt8Type>().value(row) as i16))
            }
            DataType::UInt16 => {
                self.put(out, &(array.as_primitive::<UInt16Type>().value(row) as i32))
            }
            DataType::UInt32 => {
                self.put(out, &(array.as_primitive::<UInt32Type>().value(row) as i64))
            }
            DataType::UInt64 => {
                let v = array.as_primitive::<UInt64Type>().value(row);
                let v = i64::try_from(v)
                    .map_err(|_| api_error("an unsigned value exceeds bigint".into()))?;
                self.put(out, &v)
            }
            DataType::Float16 => self.put(
                out,
                &array.as_primitive::<Float16Type>().value(row).to_f32(),
            ),
            DataType::Float32 => self.put(out, &array.as_primitive::<Float32Type>().value(row)),
            DataType::Float64 => self.put(out, &array.as_primitive::<Float64Type>().value(row)),
            DataType::Decimal128(_, scale) => {
                let v = array.as_primitive::<Decimal128Type>().value(row);
                let d = Decimal::try_from_i128_with_scale(v, *scale as u32)
                    .map_err(|e| api_error(e.to_string()))?;
                self.put(out, &d)
            }
            DataType::Utf8 => self.put(out, &array.as_string::<i32>().value(row)),
            DataType::LargeUtf8 => self.put(out, &array.as_string::<i64>().value(row)),
            DataType::Utf8View => self.put(out, &array.as_string_view().value(row)),
            DataType::Binary => self.put(out, &array.as_binary::<i32>().value(row)),
            DataType::LargeBinary => self.put(out, &array.as_binary::<i64>().value(row)),
            DataType::BinaryView => self.put(out, &array.as_binary_view().value(row)),
            DataType::FixedSizeBinary(_) => self.put(out, &array.as_fixed_size_binary().value(row)),
            DataType::Date32 | DataType::Date64 => self.put(out, &date(array, row)?),
            DataType::Timestamp(_, None) => self.put(out, &timestamp(array, row)?),
            DataType::Timestamp(_, Some(_)) => self.put(
                out,
                &DateTime::<Utc>::from_naive_utc_and_offset(timestamp(array, row)?, Utc),
            ),
            DataType::Time32(_) | DataType::Time64(_) => self.put(out, &time(array, row)?),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
                self.list(array, row, out)
            }
            other => Err(api_error(format!("cannot send a {other} value"))),
        }
    }

    fn put<T: ToSql + ToSqlText + Sized>(
        &self,
        out: &mut DataRowEncoder,
        v: &T,
    ) -> PgWireResult<()> {
        out.encode_field_with_type_and_format(
            v,
            self.field.datatype(),
            self.field.format(),
            self.field.format_options(),
        )
    }

    /// A list of primitive values as a PostgreSQL array of the element type.
    fn list(&self, array: &dyn Array, row: usize, out: &mut DataRowEncoder) -> PgWireResult<()> {
        let values = match array.data_type() {
            DataType::List(_) => array.as_list::<i32>().value(row),
            DataType::LargeList(_) => array.as_list::<i64>().value(row),
            _ => array.as_fixed_size_list().value(row),
        };
        let values = values.as_ref();
        match *self.field.datatype() {
            Type::BOOL_ARRAY => self.put(out, &values.as_boolean().iter().collect::<Vec<_>>()),
            Type::INT2_ARRAY => self.put(out, &primitives::<Int16Type>(values)?),
            Type::INT4_ARRAY => self.put(out, &primitives::<Int32Type>(values)?),
            Type::INT8_ARRAY => self.put(out, &primitives::<Int64Type>(values)?),
            Type::FLOAT4_ARRAY => self.put(out, &primitives::<Float32Type>(values)?),
            Type::FLOAT8_ARRAY => self.put(out, &primitives::<Float64Type>(values)?),
            Type::DATE_ARRAY => {
                let dates = (0..values.len())
                    .map(|i| (!values.is_null(i)).then(|| date(values, i)).transpose())
                    .collect::<PgWireResult<Vec<_>>>()?;
                self.put(out, &dates)
            }
            _ => {
                let v = arrow::compute::cast(values, &DataType::Utf8).map_err(arrow_error)?;
                let v: Vec<Option<String>> = v
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map(str::to_owned))
                    .collect();
                self.put(out, &v)
            }
        }
    }
}

/// A list's values as the element type of its PostgreSQL array.
fn primitives<T: ArrowPrimitiveType>(values: &dyn Array) -> PgWireResult<Vec<Option<T::Native>>> {
    let cast = arrow::compute::cast(values, &T::DATA_TYPE).map_err(arrow_error)?;
    Ok(cast.as_primitive::<T>().iter().collect())
}

const TEXT_FORMAT: ArrowFormat<'static> = ArrowFormat::new();

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn date(array: &dyn Array, row: usize) -> PgWireResult<NaiveDate> {
    let date = match array.data_type() {
        DataType::Date32 => array.as_primitive::<Date32Type>().value_as_date(row),
        _ => array.as_primitive::<Date64Type>().value_as_date(row),
    };
    date.ok_or_else(|| api_error("a date out of range".into()))
}

fn timestamp(array: &dyn Array, row: usize) -> PgWireResult<NaiveDateTime> {
    let t = match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value_as_datetime(row),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value_as_datetime(row),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .value_as_datetime(row),
        _ => array
            .as_primitive::<TimestampNanosecondType>()
            .value_as_datetime(row),
    };
    t.ok_or_else(|| api_error("a timestamp out of range".into()))
}

fn time(array: &dyn Array, row: usize) -> PgWireResult<NaiveTime> {
    let t = match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            array.as_primitive::<Time32SecondType>().value_as_time(row)
        }
        DataType::Time32(_) => array
            .as_primitive::<Time32MillisecondType>()
            .value_as_time(row),
        DataType::Time64(TimeUnit::Microsecond) => array
            .as_primitive::<Time64MicrosecondType>()
            .value_as_time(row),
        _ => array
            .as_primitive::<Time64NanosecondType>()
            .value_as_time(row),
    };
    t.ok_or_else(|| api_error("a time out of range".into()))
}

/// Arrow's messages can quote values: the client gets the kind of failure, the log the detail.
fn arrow_error(e: arrow::error::ArrowError) -> PgWireError {
    tracing::warn!(error = %e, "a result value could not be encoded");
    api_error("a result value could not be encoded for PostgreSQL".into())
}

fn api_error(message: String) -> PgWireError {
    PgWireError::ApiError(message.into())
}
