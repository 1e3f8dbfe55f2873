//! The SQL table function `cohort('<definition JSON>')`: the cohort's rows
//! (`person_id, cohort_start_date, cohort_end_date`) as a relation, in the caller's session, so
//! its registered views, tier guard and disclosure control apply.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use super::CohortError;

type StateSource = dyn Fn() -> Option<SessionState> + Send + Sync;

pub struct CohortFunction {
    /// The session the function is registered in (held weakly: the session holds the function).
    state: Box<StateSource>,
}

impl std::fmt::Debug for CohortFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CohortFunction")
    }
}

impl CohortFunction {
    /// Registers `cohort(…)` in `ctx`.
    pub fn register(ctx: &SessionContext) {
        let weak = ctx.state_weak_ref();
        let state = move || weak.upgrade().map(|s| s.read().clone());
        ctx.register_udtf(
            "cohort",
            Arc::new(CohortFunction {
                state: Box::new(state),
            }),
        );
    }
}

impl TableFunctionImpl for CohortFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let text = match args {
            [Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)), _)] => t,
            _ => {
                return Err(DataFusionError::Plan(
                    "cohort() takes one string literal: the cohort definition as JSON".into(),
                ));
            }
        };
        let definition: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            DataFusionError::Plan(format!("cohort(): the definition is not JSON: {e}"))
        })?;
        let state = (self.state)()
            .ok_or_else(|| DataFusionError::Plan("cohort(): the session has ended".into()))?;
        let ctx = SessionContext::new_with_state(state);
        // Table functions are planned synchronously, while compiling reads the vocabulary
        // (concept sets are resolved once, to IN lists the scans prune with). On the server's
        // multi-thread runtime the worker hands its other tasks over while it waits and the
        // compile runs on that runtime (its object-store connections stay usable); elsewhere
        // (a current-thread runtime, or none) it runs on a thread and runtime of its own.
        let compile = || super::compile(&ctx, &definition);
        let compiled = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(compile()))
            }
            _ => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| CohortError::Planning(e.to_string()))?;
                        runtime.block_on(compile())
                    })
                    .join()
            })
            .map_err(|_| DataFusionError::Internal("cohort(): compilation panicked".into()))?,
        };
        match compiled {
            Ok(df) => Ok(df.into_view()),
            Err(e) => Err(to_datafusion(e)),
        }
    }
}

fn to_datafusion(e: CohortError) -> DataFusionError {
    match e {
        CohortError::Unsupported { .. } => DataFusionError::NotImplemented(e.to_string()),
        CohortError::MissingTable(name) => {
            DataFusionError::External(Box::new(crate::error::TableNotFound(name)))
        }
        other => DataFusionError::Plan(other.to_string()),
    }
}
