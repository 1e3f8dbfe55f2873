//! Session and catalog functions PostgreSQL drivers call that DataFusion and datafusion-pg-catalog
//! lack. None of them reads participant data.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::scalar::ScalarValue;

use super::SERVER_VERSION;

pub fn all() -> Vec<ScalarUDF> {
    vec![
        version(),
        to_regtype(),
        constant("pg_get_serial_sequence", 2, ScalarValue::Utf8(None)),
        // Relations are looked up by name in pg_class; an oid for a bound name is not known.
        constant("to_regclass", 1, ScalarValue::Int32(None)),
        constant(
            "pg_collation_is_visible",
            1,
            ScalarValue::Boolean(Some(true)),
        ),
        constant("pg_type_is_visible", 1, ScalarValue::Boolean(Some(true))),
        constant(
            "pg_function_is_visible",
            1,
            ScalarValue::Boolean(Some(true)),
        ),
        ScalarUDF::new_from_impl(JsonBuildObject::new()),
    ]
}

/// `version()` in PostgreSQL's words (SQLAlchemy parses it; ≥ 12 keeps psqlODBC off `relhasoids`).
fn version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {SERVER_VERSION} (Strata {}) on {}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// A function of `arity` text arguments whose answer never depends on them: there are no
/// sequences, collations or other schemas' types to look up in Strata.
fn constant(name: &str, arity: usize, value: ScalarValue) -> ScalarUDF {
    let returns = value.data_type();
    create_udf(
        name,
        vec![DataType::Utf8; arity],
        returns,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// `to_regtype(name)`: the oid of a built-in type, NULL for any other name (drivers probe for
/// extension types such as `hstore` this way).
fn to_regtype() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = as_text(&args[0])?;
            let names = names.as_string::<i32>();
            let oids: Int32Array = (0..names.len())
                .map(|i| {
                    (!names.is_null(i))
                        .then(|| type_oid(names.value(i)))
                        .flatten()
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }),
    )
}

fn as_text(value: &ColumnarValue) -> Result<ArrayRef> {
    let array = match value {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array()?,
    };
    Ok(datafusion::arrow::compute::cast(&array, &DataType::Utf8)?)
}

fn type_oid(name: &str) -> Option<i32> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "bool" | "boolean" => 16,
        "bytea" => 17,
        "name" => 19,
        "int8" | "bigint" => 20,
        "int2" | "smallint" => 21,
        "int4" | "integer" | "int" => 23,
        "text" => 25,
        "oid" => 26,
        "json" => 114,
        "float4" | "real" => 700,
        "float8" | "double precision" => 701,
        "varchar" | "character varying" => 1043,
        "date" => 1082,
        "time" => 1083,
        "timestamp" | "timestamp without time zone" => 1114,
        "timestamptz" | "timestamp with time zone" => 1184,
        "interval" => 1186,
        "numeric" | "decimal" => 1700,
        "uuid" => 2950,
        "jsonb" => 3802,
        _ => return None,
    })
}

/// `json_build_object(key, value, …)` as JSON text (SQLAlchemy's column reflection selects it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in columns.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?.to_string();
                let value = match pair.get(1) {
                    Some(v) => json_value(&ScalarValue::try_from_array(v, row)?),
                    None => serde_json::Value::Null,
                };
                object.insert(key, value);
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

fn json_value(value: &ScalarValue) -> serde_json::Value {
    if value.is_null() {
        return serde_json::Value::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => (*b).into(),
        v if v.data_type().is_integer() => v
            .to_string()
            .parse::<i64>()
            .map_or(v.to_string().into(), Into::into),
        v => v.to_string().into(),
    }
}
