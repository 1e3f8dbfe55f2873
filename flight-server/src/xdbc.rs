//! XDBC type information for ODBC/JDBC bridges: the SQL types Strata's results use.

use arrow_flight::sql::metadata::{XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{Nullable, Searchable, XdbcDataType};

pub fn type_info() -> XdbcTypeInfoData {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types: &[(&str, XdbcDataType, Option<i32>, Option<&str>)] = &[
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(16), None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(32), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(64), None),
        ("REAL", XdbcDataType::XdbcReal, Some(24), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(53), None),
        ("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")),
        ("DATE", XdbcDataType::XdbcDate, Some(10), Some("DATE '")),
        (
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            Some(26),
            Some("TIMESTAMP '"),
        ),
    ];
    for (name, data_type, size, prefix) in types {
        let numeric = size.is_some() && prefix.is_none();
        b.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type: *data_type,
            column_size: *size,
            literal_prefix: prefix.map(str::to_string),
            literal_suffix: prefix.map(|_| "'".to_string()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: !numeric,
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale: false,
            auto_increment: numeric.then_some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: *data_type,
            datetime_subcode: None,
            num_prec_radix: numeric.then_some(2),
            interval_precision: None,
        });
    }
    b.build().expect("static xdbc info")
}
