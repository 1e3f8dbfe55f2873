//! `pg_catalog` in a principal's session: datafusion-pg-catalog's schema over the session's own
//! catalog list (so it lists only what the principal may query), its static system tables loaded
//! once per process, and the session functions drivers call.
//!
//! Relation oids are handed out in the order the catalog lists names. A client looks an oid up in
//! one statement and uses it in the next (`\d person`, psqlODBC, SQLAlchemy's reflection), and every
//! statement gets a fresh session: the listing order must therefore be the same in every session
//! of a principal — sorted, the principal's named cohorts after the dataset's tables.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::{
    self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables, array_bounds_udf,
    catalog_info::CatalogInfo, context::EmptyContextProvider, format_type,
    generate_series_arg_coercion::CoerceIntArgsToBigInt, has_privilege_udf,
    oid_type_planner::PgOidTypePlanner, pg_get_expr_udf, quote_ident_udf,
};

use super::keys::{self, Walk};
use crate::PlannerError;

/// The system tables of a PostgreSQL server, parsed once.
fn static_tables() -> Result<Arc<PgCatalogStaticTables>, PlannerError> {
    static TABLES: OnceLock<Arc<PgCatalogStaticTables>> = OnceLock::new();
    if let Some(tables) = TABLES.get() {
        return Ok(tables.clone());
    }
    let tables = Arc::new(PgCatalogStaticTables::try_new().map_err(PlannerError::from_datafusion)?);
    Ok(TABLES.get_or_init(|| tables).clone())
}

/// The session's default catalog, read in place (`ctx.state()` would copy the whole state, and
/// `remove_catalog` runs at the end of every session).
fn default_catalog(ctx: &SessionContext) -> String {
    ctx.state_ref()
        .read()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone()
}

/// Registers `pg_catalog`, its functions and `version()` in a principal's session.
pub fn install_catalog(ctx: &SessionContext) -> Result<(), PlannerError> {
    let name = default_catalog(ctx);
    let tables = static_tables()?;
    let schema = PgCatalogSchemaProvider::try_new(
        Listing(ctx.state().catalog_list().clone()),
        tables.clone(),
        EmptyContextProvider,
    )
    .map_err(PlannerError::from_datafusion)?;
    let schema = Primed {
        inner: schema,
        listing: Listing(ctx.state().catalog_list().clone()),
        catalog: name.clone(),
        primed: AtomicU8::new(0),
        walk: Arc::new(OnceLock::new()),
    };
    ctx.catalog(&name)
        .ok_or_else(|| PlannerError::Internal(format!("no catalog {name}")))?
        .register_schema("pg_catalog", Arc::new(schema))
        .map_err(PlannerError::from_datafusion)?;
    register_functions(ctx, &name, &tables);
    // Postgres oid-alias types (`::regclass`, `::regtype`) plan as integers.
    {
        let state = ctx.state_ref();
        let existing = state.read().clone();
        *state.write() = SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(PgOidTypePlanner))
            .build();
    }
    CoerceIntArgsToBigInt::widen(ctx);
    Ok(())
}

/// Takes `pg_catalog` out of a session that is ending. Its tables list the session's catalogs,
/// so they hold the catalog list that holds them: left in, every PostgreSQL statement's session
/// (its catalogs, schemas and tables) was a cycle never freed, a few kilobytes a statement
/// (found by the fuzz target `sql`). Plans made in the session keep working: their pg_catalog
/// tables still hold the list, which no longer holds them.
pub fn remove_catalog(ctx: &SessionContext) {
    let name = default_catalog(ctx);
    if let Some(catalog) = ctx.catalog(&name) {
        let _ = catalog.deregister_schema("pg_catalog", true);
    }
}

/// What datafusion-pg-catalog's `setup_pg_catalog` registers, with Strata's `version()`.
fn register_functions(ctx: &SessionContext, catalog: &str, tables: &PgCatalogStaticTables) {
    ctx.register_udf(pg::create_current_database_udf(catalog));
    ctx.register_udf(pg::create_current_schema_udf());
    ctx.register_udf(pg::create_current_schemas_udf());
    ctx.register_udf(pg::create_pg_get_userbyid_udf());
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_any_column_privilege",
    ] {
        ctx.register_udf(has_privilege_udf::create_has_privilege_udf(name));
    }
    ctx.register_udf(pg::create_pg_table_is_visible());
    ctx.register_udf(format_type::create_format_type_udf());
    ctx.register_udf(pg::create_session_user_udf());
    ctx.register_udtf("pg_get_keywords", tables.pg_get_keywords.clone());
    ctx.register_udf(pg_get_expr_udf::create_pg_get_expr_udf());
    ctx.register_udf(pg::create_pg_get_partkeydef_udf());
    ctx.register_udf(pg::create_pg_relation_is_publishable_udf());
    ctx.register_udf(pg::create_pg_get_statisticsobjdef_columns_udf());
    ctx.register_udf(pg::create_pg_encoding_to_char_udf());
    ctx.register_udf(pg::create_pg_backend_pid_udf());
    ctx.register_udf(pg::create_pg_relation_size_udf());
    ctx.register_udf(pg::create_pg_total_relation_size_udf());
    ctx.register_udf(pg::create_pg_stat_get_numscans());
    ctx.register_udf(pg::create_pg_get_constraintdef());
    ctx.register_udf(pg::create_pg_get_partition_ancestors_udf());
    ctx.register_udf(quote_ident_udf::create_quote_ident_udf());
    ctx.register_udf(quote_ident_udf::create_parse_ident_udf());
    ctx.register_udf(array_bounds_udf::create_array_upper_udf());
    ctx.register_udf(array_bounds_udf::create_array_lower_udf());
    for udf in super::functions::all() {
        ctx.register_udf(udf);
    }
}

/// pg_catalog whose oids are handed out by one walk of `pg_class` (catalog, schemas, tables),
/// before any of its tables is read: its other tables (pg_attribute …) hand out table oids only,
/// and would number the same relation differently when read first.
#[derive(Debug)]
struct Primed {
    inner: PgCatalogSchemaProvider<Listing, EmptyContextProvider>,
    listing: Listing,
    catalog: String,
    /// 0: not yet, 1: walking (the walk reads this schema's own tables: they pass through),
    /// 2: done.
    primed: AtomicU8,
    /// The walk's rows and the primary keys among them (`pg_index`, `pg_constraint`).
    walk: Arc<OnceLock<Walk>>,
}

impl Primed {
    async fn walk(&self) -> Result<(), DataFusionError> {
        let Some(pg_class) = self.inner.table("pg_class").await? else {
            return Ok(());
        };
        let batches = SessionContext::new()
            .read_table(pg_class)?
            .collect()
            .await?;
        let mut schemas = HashMap::new();
        for table in self
            .listing
            .table_names(&self.catalog, "public")
            .await?
            .unwrap_or_default()
        {
            if let Some(schema) = self
                .listing
                .table_schema(&self.catalog, "public", &table)
                .await?
            {
                schemas.insert(table, schema);
            }
        }
        let keys = keys::keys(&batches, &schemas);
        let _ = self.walk.set(Walk {
            pg_class: batches,
            keys,
        });
        Ok(())
    }
}

#[async_trait]
impl SchemaProvider for Primed {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if self
            .primed
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let walked = self.walk().await;
            self.primed.store(2, Ordering::Release);
            walked?;
        }
        let table = self.inner.table(name).await?;
        match (name, table) {
            ("pg_class" | "pg_index" | "pg_constraint", Some(system)) => Ok(Some(Arc::new(
                keys::Amended::new(name, system, self.walk.clone()),
            ))),
            (_, table) => Ok(table),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// The session's catalog list, listed in a stable order (see the module comment).
#[derive(Clone)]
struct Listing(Arc<dyn CatalogProviderList>);

impl std::fmt::Debug for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listing")
    }
}

fn sorted(mut names: Vec<String>, last: impl Fn(&str) -> bool) -> Vec<String> {
    names.sort_by(|a, b| (last(a), a).cmp(&(last(b), b)));
    names
}

#[async_trait]
impl CatalogInfo for Listing {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(sorted(
            CatalogProviderList::catalog_names(self.0.as_ref()),
            |_| false,
        ))
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        // `public` first: its tables' oids do not move when a system schema is added.
        Ok(self
            .0
            .catalog(catalog)
            .map(|c| sorted(c.schema_names(), |s| s != "public")))
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok(self
            .0
            .catalog(catalog)
            .and_then(|c| c.schema(schema))
            .map(|s| sorted(s.table_names(), |t| t.starts_with("cohort_"))))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        self.0.table_schema(catalog, schema, table).await
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        self.0.table_type(catalog, schema, table).await
    }
}
