//! The tier of every table, and of the columns that demand more than their table, as the
//! catalog declares them: what the tier guard, the registered views and the listings read.

use std::collections::HashMap;

use strata_engine::{Catalog, Tier};

/// Tiers of every table and of the columns that demand more than their table.
#[derive(Debug, Default, Clone)]
pub struct TierMap {
    pub(crate) tables: HashMap<String, TableTiers>,
}

#[derive(Debug, Clone)]
pub(crate) struct TableTiers {
    pub(crate) tier: Tier,
    pub(crate) columns: HashMap<String, Tier>,
    /// Rows are participants' rows (the table has a person key).
    participant: bool,
    person_key: Option<String>,
}

impl TierMap {
    pub fn from_catalog(catalog: &Catalog) -> Self {
        let tables = catalog
            .tables
            .iter()
            .map(|(name, t)| {
                let columns = t
                    .column_tiers
                    .iter()
                    .map(|(c, tier)| (c.clone(), *tier))
                    .collect();
                (
                    name.clone(),
                    TableTiers {
                        tier: t.tier,
                        columns,
                        participant: t.person_key.is_some(),
                        person_key: t.person_key.clone(),
                    },
                )
            })
            .collect();
        TierMap { tables }
    }

    /// Adds a table that is not in the catalog (a named cohort, say) at a tier.
    pub fn insert(&mut self, table: &str, tier: Tier, participant: bool) {
        self.tables.insert(
            table.to_string(),
            TableTiers {
                tier,
                columns: HashMap::new(),
                participant,
                person_key: participant.then(|| "person_id".to_string()),
            },
        );
    }

    /// Person key column names of the participant tables.
    pub fn person_keys(&self) -> impl Iterator<Item = &str> {
        self.tables.values().filter_map(|t| t.person_key.as_deref())
    }

    /// Whether a column of a participant table identifies a participant: the person key, the
    /// row's own id and visit ids (each row and visit is one participant's), the source
    /// identifier and the exact time of birth.
    pub fn identifies(&self, table: &str, column: &str) -> bool {
        let Some(t) = self.tables.get(table).filter(|t| t.participant) else {
            return false;
        };
        t.person_key.as_deref() == Some(column)
            || column.strip_suffix("_id") == Some(table)
            || matches!(
                column,
                "person_source_value"
                    | "birth_datetime"
                    | "visit_occurrence_id"
                    | "visit_detail_id"
            )
    }

    /// Whether the table's rows belong to participants.
    pub fn is_participant_table(&self, table: &str) -> bool {
        // Unknown tables count as participant data: the safe assumption.
        self.tables.get(table).is_none_or(|t| t.participant)
    }

    pub fn table_tier(&self, table: &str) -> Option<Tier> {
        self.tables.get(table).map(|t| t.tier)
    }

    /// The tier a column demands: its own if higher than its table's.
    pub fn column_tier(&self, table: &str, column: &str) -> Option<Tier> {
        let t = self.tables.get(table)?;
        Some(t.columns.get(column).copied().unwrap_or(t.tier).max(t.tier))
    }

    pub fn tables(&self) -> impl Iterator<Item = (&str, Tier)> {
        self.tables.iter().map(|(n, t)| (n.as_str(), t.tier))
    }
}
