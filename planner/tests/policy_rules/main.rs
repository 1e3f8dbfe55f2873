//! Plan-text tests of Strata's policy rules, in DataFusion's style: each builds a small plan over
//! in-memory tables, applies a rule through its public constructor as the server's executor does,
//! and compares the resulting plan's text (or refusal) with the expected one, so a reviewer can
//! read what each rule does. Where it is cheap, the plan also runs and its result is checked.

mod common;
mod egress;
mod lineage;
mod registered_views;
mod shift_bounds;
mod tier_guard;
