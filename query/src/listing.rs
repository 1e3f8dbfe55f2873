//! What a caller may list: the tables of their tier — as they see them (registered views leave
//! columns out) — and those tables' primary keys. A table above the caller's tier is not listed,
//! the same as a table that does not exist.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use strata_passport::Principal;

use crate::call::Call;
use crate::error::QueryError;
use crate::service::QueryService;

/// One table as a caller may see it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub schema: SchemaRef,
    /// The primary-key column, for tables that have one.
    pub primary_key: Option<String>,
}

impl QueryService {
    /// The tables the caller may query, by name; audited.
    pub async fn list_tables(&self, call: &Call) -> Result<Vec<Listed>, QueryError> {
        let listed = call.principal().map(|who| {
            self.dataset
                .providers()
                .iter()
                .filter_map(|(name, table)| self.listed(who, name, table.clone()))
                .collect()
        });
        self.answer(call, "get_tables", listed).await
    }

    /// One table the caller may query (`None`: unknown or above their tier); audited.
    pub async fn describe_table(
        &self,
        call: &Call,
        action: &str,
        table: &str,
    ) -> Result<Option<Listed>, QueryError> {
        let found = call.principal().map(|who| {
            let provider = self.dataset.providers().get(table)?.clone();
            self.listed(who, table, provider)
        });
        self.answer(call, action, found).await
    }

    fn listed(&self, who: &Principal, name: &str, table: Arc<dyn TableProvider>) -> Option<Listed> {
        let schema = self.visible_table(who, name, table)?.schema();
        Some(Listed {
            primary_key: strata_engine::tables::primary_key(name, &schema),
            name: name.to_string(),
            schema,
        })
    }
}
