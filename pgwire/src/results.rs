//! A query service result as the rows of a PostgreSQL response.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use strata_query::{QueryError, Results};

use crate::encode;
use crate::error::pg_error;

/// Rows described by `fields`, encoded batch by batch as the client reads them.
pub struct Rows {
    pub fields: Arc<Vec<FieldInfo>>,
    pub stream: BoxStream<'static, PgWireResult<DataRow>>,
}

type BatchStream = BoxStream<'static, Result<RecordBatch, QueryError>>;

fn batches(results: Results) -> (SchemaRef, BatchStream) {
    match results {
        Results::Computed(batches, schema) => (
            schema,
            stream::iter((*batches).clone().into_iter().map(Ok)).boxed(),
        ),
        Results::Streaming(stream) => (stream.schema(), stream.boxed()),
    }
}

/// Row descriptions in the client's formats.
pub fn fields(schema: &SchemaRef, format: &Format) -> Arc<Vec<FieldInfo>> {
    Arc::new(encode::fields(
        schema,
        format,
        &Arc::new(FormatOptions::default()),
    ))
}

impl Rows {
    pub fn new(results: Results, format: &Format) -> Self {
        let (schema, batches) = batches(results);
        let fields = fields(&schema, format);
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

/// A cursor's result, read a number of rows at a time.
pub struct Batches {
    pub schema: SchemaRef,
    stream: BatchStream,
    pending: Option<RecordBatch>,
}

impl Batches {
    pub fn new(results: Results) -> Self {
        let (schema, stream) = batches(results);
        Batches {
            schema,
            stream,
            pending: None,
        }
    }

    /// The next `n` rows (all that are left for `None`).
    pub async fn take(&mut self, n: Option<usize>) -> Result<Vec<RecordBatch>, QueryError> {
        let mut out = Vec::new();
        let mut wanted = n.unwrap_or(usize::MAX);
        while wanted > 0 {
            let batch = match self.pending.take() {
                Some(b) => b,
                None => match self.stream.next().await {
                    Some(b) => b?,
                    None => break,
                },
            };
            if batch.num_rows() > wanted {
                self.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                out.push(batch.slice(0, wanted));
                break;
            }
            wanted -= batch.num_rows();
            out.push(batch);
        }
        Ok(out)
    }
}

/// Encoded rows of `batches` as one response.
pub fn response(
    batches: &[RecordBatch],
    fields: Arc<Vec<FieldInfo>>,
) -> PgWireResult<QueryResponse> {
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(encode::rows(batch, &fields)?.into_iter().map(Ok));
    }
    Ok(QueryResponse::new(fields, stream::iter(rows)))
}
