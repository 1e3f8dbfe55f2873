//! What a worker must know of the query to give the names in its fragments the coordinator's
//! meaning: the principal's protection parameters and the registered policy planned with. They
//! travel as datafusion-distributed config headers on the authenticated channel; no client can
//! set them (statements that change settings are refused before planning).

use datafusion::common::extensions_options;
use datafusion::config::ConfigExtension;
use strata_planner::disclosure::{Dominance, Level, Protection};

extensions_options! {
    pub struct QueryOptions {
        /// Whether the principal's cells are protected (the operator's are not).
        pub protected: bool, default = false
        pub threshold: u64, default = 20
        /// Counts rounded up to a multiple of this; 0: not rounded.
        pub rounding: u64, default = 0
        pub aggregates_only: bool, default = false
        pub dominance_n: usize, default = 2
        pub dominance_k: f64, default = 90.0
        pub dominance_p: f64, default = 10.0
        /// The registered policy's fingerprint when the plan reads registered views; empty
        /// otherwise.
        pub registered_policy: String, default = String::new()
        /// The query's memory limit (`[limits] query_memory_mb`) in bytes; 0: none.
        pub memory_bytes: u64, default = 0
        /// The coordinator's build and dataset (`Dataset::fingerprint`): a worker refuses
        /// fragments planned by another build or over other files. Empty: a fragment from no
        /// Strata coordinator, refused.
        pub build: String, default = String::new()
        pub dataset: String, default = String::new()
    }
}

/// This build of Strata (a plan's encoding and the functions' meanings may change between
/// builds).
pub(crate) const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("STRATA_BUILD_ID"));

impl ConfigExtension for QueryOptions {
    const PREFIX: &'static str = "strata";
}

impl QueryOptions {
    pub fn new(protection: Option<Protection>, registered_policy: Option<String>) -> Self {
        let mut o = QueryOptions {
            registered_policy: registered_policy.unwrap_or_default(),
            ..Default::default()
        };
        if let Some(p) = protection {
            o.protected = true;
            o.threshold = p.threshold;
            o.rounding = p.rounding.unwrap_or(0);
            o.aggregates_only = p.level == Level::AggregatesOnly;
            o.dominance_n = p.dominance.n;
            o.dominance_k = p.dominance.k;
            o.dominance_p = p.dominance.p;
        }
        o
    }

    /// What the coordinator and its workers must share: the build, and the dataset's files.
    pub fn with_origin(mut self, dataset: &str) -> Self {
        self.build = BUILD.to_string();
        self.dataset = dataset.to_string();
        self
    }

    pub fn with_memory(mut self, bytes: Option<usize>) -> Self {
        self.memory_bytes = bytes.unwrap_or(0) as u64;
        self
    }

    pub fn protection(&self) -> Option<Protection> {
        self.protected.then_some(Protection {
            threshold: self.threshold,
            rounding: (self.rounding > 0).then_some(self.rounding),
            level: if self.aggregates_only {
                Level::AggregatesOnly
            } else {
                Level::RowLevel
            },
            dominance: Dominance {
                n: self.dominance_n,
                k: self.dominance_k,
                p: self.dominance_p,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::config::ConfigExtension;

    #[test]
    fn protection_survives_the_trip_to_a_worker() {
        let sent = Protection {
            threshold: 11,
            rounding: Some(5),
            level: Level::AggregatesOnly,
            dominance: Dominance {
                n: 3,
                k: 80.0,
                p: 12.5,
            },
        };
        let options = QueryOptions::new(Some(sent), Some("abc".into()));
        // As the headers carry them: every entry as text, read back into a fresh extension.
        let mut received = QueryOptions::default();
        for entry in datafusion::config::ExtensionOptions::entries(&options) {
            let value = entry.value.expect("every option has a value");
            let key = entry
                .key
                .trim_start_matches(&format!("{}.", QueryOptions::PREFIX));
            datafusion::config::ExtensionOptions::set(&mut received, key, &value).unwrap();
        }
        let got = received.protection().expect("protected");
        assert_eq!(got.threshold, 11);
        assert_eq!(got.rounding, Some(5));
        assert_eq!(got.level, Level::AggregatesOnly);
        assert_eq!(
            (got.dominance.n, got.dominance.k, got.dominance.p),
            (3, 80.0, 12.5)
        );
        assert_eq!(received.registered_policy, "abc");
    }

    #[test]
    fn an_unprotected_principal_sends_no_protection() {
        let options = QueryOptions::new(None, None);
        assert!(options.protection().is_none());
        assert!(options.registered_policy.is_empty());
    }
}
