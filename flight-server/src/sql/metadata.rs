//! Catalog listings. Each answers from the query service's listing of what the caller may
//! query (tables above their tier are absent, like tables that do not exist), audited there.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::Ticket;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo,
    SqlSupportedTransaction,
};
use strata_engine::dataset::{CATALOG_NAME, SCHEMA_NAME};
use tonic::{Request, Response, Status};

use super::{DoGetStream, StrataFlightSql};
use crate::call::flight;
use crate::error::{codec, status};

impl StrataFlightSql {
    /// A listing that needs nothing of the caller but their authentication, audited.
    async fn answered(
        &self,
        request: &Request<Ticket>,
        action: &str,
        batch: Result<RecordBatch, impl std::fmt::Display>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = self
            .query
            .answer(&flight(request), action, batch.map_err(codec))
            .await
            .map_err(status)?;
        Ok(Self::batch_response(batch))
    }

    pub(super) async fn catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG_NAME);
        self.answered(&request, "get_catalogs", builder.build())
            .await
    }

    pub(super) async fn schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG_NAME, SCHEMA_NAME);
        self.answered(&request, "get_db_schemas", builder.build())
            .await
    }

    pub(super) async fn table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        self.answered(&request, "get_table_types", builder.build())
            .await
    }

    pub(super) async fn sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query.into_builder(&self.sql_info).build();
        self.answered(&request, "get_sql_info", batch).await
    }

    pub(super) async fn xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query.into_builder(&self.xdbc).build();
        self.answered(&request, "get_xdbc_type_info", batch).await
    }

    pub(super) async fn tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let listed = self
            .query
            .list_tables(&flight(&request))
            .await
            .map_err(status)?;
        let mut builder = query.into_builder();
        for table in &listed {
            builder
                .append(
                    CATALOG_NAME,
                    SCHEMA_NAME,
                    &table.name,
                    "TABLE",
                    &table.schema,
                )
                .map_err(|e| status(codec(e)))?;
        }
        Ok(Self::batch_response(
            builder.build().map_err(|e| status(codec(e)))?,
        ))
    }

    pub(super) async fn primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let ours = query.catalog.as_deref().is_none_or(|c| c == CATALOG_NAME)
            && query.db_schema.as_deref().is_none_or(|s| s == SCHEMA_NAME);
        let call = flight(&request);
        let listed = if ours {
            self.query
                .describe_table(&call, "get_primary_keys", &query.table)
                .await
        } else {
            self.query.answer(&call, "get_primary_keys", Ok(None)).await
        }
        .map_err(status)?;
        let rows: Vec<(String, String)> = listed
            .and_then(|t| t.primary_key.map(|k| (t.name, k)))
            .into_iter()
            .collect();
        primary_keys_batch(&rows)
            .map(Self::batch_response)
            .map_err(|e| status(codec(e)))
    }
}

fn primary_keys_batch(rows: &[(String, String)]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = rows.len();
    let strings = |f: &dyn Fn(&(String, String)) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![CATALOG_NAME; n])),
        Arc::new(StringArray::from(vec![SCHEMA_NAME; n])),
        strings(&|r| r.0.clone()),
        strings(&|r| r.1.clone()),
        strings(&|r| format!("{}_pkey", r.0)),
        Arc::new(Int32Array::from(vec![1; n])),
    ];
    RecordBatch::try_new(Arc::new(primary_keys_schema()), columns)
}

pub(super) fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

pub(super) fn sql_info() -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Strata");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.build().expect("static sql info")
}
