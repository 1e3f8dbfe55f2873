//! A query service result as the rows of a PostgreSQL response.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use strata_query::Results;

use crate::encode;
use crate::error::pg_error;

/// Rows described by `fields`, encoded batch by batch as the client reads them.
pub struct Rows {
    pub fields: Arc<Vec<FieldInfo>>,
    pub stream: BoxStream<'static, PgWireResult<DataRow>>,
}

impl Rows {
    pub fn new(results: Results, format: &Format) -> Self {
        let (schema, batches) = match results {
            Results::Computed(batches, schema) => (
                schema,
                stream::iter((*batches).clone().into_iter().map(Ok)).boxed(),
            ),
            Results::Streaming(stream) => (stream.schema(), stream.boxed()),
        };
        let options = Arc::new(FormatOptions::default());
        let fields = Arc::new(encode::fields(&schema, format, &options));
        let encoded = fields.clone();
        let stream = batches
            .flat_map(move |batch| {
                let rows = batch
                    .map_err(pg_error)
                    .and_then(|b| encode::rows(&b, &encoded));
                match rows {
                    Ok(rows) => stream::iter(rows.into_iter().map(Ok)).left_stream(),
                    Err(e) => stream::once(async { Err(e) }).right_stream(),
                }
            })
            .boxed();
        Rows { fields, stream }
    }

    pub fn response(self) -> QueryResponse {
        QueryResponse::new(self.fields, self.stream)
    }
}
