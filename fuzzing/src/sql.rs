//! SQL text through planning, the tier guard, the disclosure rewrite and execution, for every
//! protection level and both dialects.

use std::time::Duration;

use futures::StreamExt;
use strata_query::{Dialect, QueryError, Results};

use crate::World;

/// Longer than any limit the world sets (10 s per query): past it, a limit failed to stop a
/// query, which is a bug whatever the input.
const NO_QUERY_OUTLIVES: Duration = Duration::from_secs(60);

/// Plans and runs `text` as each principal of the world (and once in the PostgreSQL dialect).
/// Holds: every statement ends, within the limits, in rows or a typed error. Returns each
/// principal's outcome (the error's message), so tests can tell answers from refusals.
pub fn sql(text: &str) -> Vec<Result<(), String>> {
    let world = World::get();
    let mut outcomes = Vec::new();
    for (i, principal) in world.principals.iter().enumerate() {
        let dialect = if i == 0 {
            Dialect::Postgres
        } else {
            Dialect::Generic
        };
        let call = world.call("fuzz", principal).with_dialect(dialect);
        let run = async {
            let mut prepared = world.query.prepare(&call, "fuzz_query", text).await?;
            world
                .query
                .settle(&call, "fuzz_query", &mut prepared)
                .await?;
            match world.query.run(&call, "fuzz_query", &prepared).await? {
                Results::Computed(batches, _) => drop(batches),
                Results::Streaming(mut stream) => {
                    while let Some(batch) = stream.next().await {
                        batch?;
                    }
                }
            }
            Ok::<_, QueryError>(())
        };
        let ended = world.within(NO_QUERY_OUTLIVES, run);
        let Some(outcome) = ended else {
            panic!(
                "a statement outlived every limit ({}s): {text:?}",
                NO_QUERY_OUTLIVES.as_secs()
            );
        };
        outcomes.push(outcome.map_err(|e| e.message()));
    }
    outcomes
}
