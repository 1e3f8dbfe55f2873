//! Strata's functions as a session that executes shipped plan fragments holds them (a cluster
//! worker). A fragment names its functions; each name must mean there what it meant where the
//! plan was made, so the parameters a name leaves out (threshold, rounding, dominance rule, the
//! registered policy) are the coordinator's, sent with each query.
//!
//! `strata_mask` is not here on purpose: it counts suppressed cells into the coordinator's
//! report as it runs, so a plan that would run it on a worker is not shipped.

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

use crate::disclosure::Protection;
use crate::disclosure::cells::{cell_check_udf, dominance_udaf, protect_udf};
use crate::participants::{
    Output, cell_set_udf, distinct_count, internal_distinct_count, participants_udaf, set_size_udf,
};
use crate::registered::policy::{Attribute, RegisteredPolicy, RegisteredSettings};
use crate::registered::udfs::{Kind, udf};

#[derive(Default)]
pub struct Functions {
    pub scalars: Vec<Arc<ScalarUDF>>,
    pub aggregates: Vec<Arc<AggregateUDF>>,
}

impl Functions {
    /// Every function a protected plan made for `protection` may name, and the registered
    /// views' functions when `policy` is given.
    pub fn shipped(protection: Option<Protection>, policy: Option<&Arc<RegisteredPolicy>>) -> Self {
        let mut f = Functions {
            scalars: vec![cell_set_udf(), set_size_udf()],
            aggregates: vec![
                participants_udaf(Output::Bitmap),
                participants_udaf(Output::Count),
                internal_distinct_count(),
                distinct_count(),
            ],
        };
        if let Some(p) = protection {
            f.scalars.push(cell_check_udf(p.threshold));
            f.scalars.push(protect_udf(p, false));
            if p.rounding.is_some_and(|b| b > 1) {
                f.scalars.push(protect_udf(p, true));
            }
            f.aggregates.push(dominance_udaf(p.dominance));
        }
        if let Some(policy) = policy {
            let mut kinds = vec![
                Kind::Shift,
                Kind::Visible,
                Kind::ShiftText,
                Kind::KeepAnswer,
            ];
            for a in [
                Attribute::Gender,
                Attribute::SexAtBirth,
                Attribute::Race,
                Attribute::Ethnicity,
            ] {
                kinds.push(Kind::Generalize(a));
                kinds.push(Kind::GeneralizeSource(a));
            }
            f.scalars
                .extend(kinds.into_iter().map(|k| udf(k, policy.clone())));
        }
        f
    }

    /// The name of every function [`Functions::shipped`] may hold, whatever the parameters.
    pub fn all_names() -> Vec<String> {
        let protection = Protection {
            threshold: 20,
            rounding: Some(20),
            level: crate::disclosure::Level::AggregatesOnly,
            dominance: crate::disclosure::Dominance {
                n: 2,
                k: 90.0,
                p: 10.0,
            },
        };
        let policy = Arc::new(RegisteredPolicy::from_facts(
            &[0; 32],
            &RegisteredSettings::default(),
            Vec::new(),
        ));
        let all = Functions::shipped(Some(protection), Some(&policy));
        all.names().map(str::to_string).collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.scalars
            .iter()
            .map(|u| u.name())
            .chain(self.aggregates.iter().map(|u| u.name()))
    }
}
