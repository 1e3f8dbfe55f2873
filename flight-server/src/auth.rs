//! Every gRPC call's bearer passport is verified by the query service before any handler runs;
//! the principal rides in the request's extensions.

use std::sync::Arc;

use strata_query::QueryService;
use tonic::{Request, Status};

use crate::error::status;

pub fn interceptor(
    query: Arc<QueryService>,
    door: &'static str,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let call = crate::call::call(door, &request);
        // A header that is not text is a token that cannot verify (and is audited as such).
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("Bearer \u{fffd}"));
        let principal = query.authenticate(&call, header).map_err(status)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}
