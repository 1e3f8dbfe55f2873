//! `strata demo`: a synthetic dataset under ./.strata/ (made once), dev keys and passports for
//! every tier, served on localhost with connection instructions.

use std::path::Path;

use anyhow::Context;
use strata_engine::Tier;
use strata_passport::dev::DevIssuer;
use strata_query::config::ServerConfig;
use strata_testdata::generate::{GenerateOptions, generate};

use crate::ServerArgs;
use crate::commands::serve::serve;

pub async fn demo(persons: u64, args: &ServerArgs, config: &ServerConfig) -> anyhow::Result<()> {
    let home = std::env::current_dir()?.join(".strata");
    let dataset = home.join("demo");
    if !dataset.join(strata_engine::catalog::CATALOG_FILE).exists() {
        eprintln!(
            "creating a synthetic dataset of {persons} participants in {}",
            dataset.display()
        );
        let opts = GenerateOptions {
            out: dataset.clone(),
            persons,
            shards: 4,
            seed: 42,
            progress: true,
        };
        tokio::task::spawn_blocking(move || generate(&opts)).await??;
    }
    let keys_dir = home.join("keys");
    let issuer = crate::commands::keys::ensure_keys(&keys_dir)?;
    let mut args = args.clone();
    if args.jwks.is_none() {
        args.jwks = Some(keys_dir.join("jwks.json"));
    }
    // The demo opens the PostgreSQL door too, for BI tools, ODBC and R DBI.
    if args.pg_listen.is_none() {
        args.pg_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 5433)));
    }
    let tokens = demo_tokens(&issuer, &home.join("tokens"))?;
    let banner = DEMO_BANNER
        .replace("{tokens}", &tokens)
        .replace("{tokens_dir}", &home.join("tokens").display().to_string());
    serve(&dataset, &args, config, Some(banner)).await
}

/// Dev passports for each tier and egress mode, valid for a day, written to `dir/<name>.jwt`
/// and listed for the banner.
fn demo_tokens(issuer: &DevIssuer, dir: &Path) -> anyhow::Result<String> {
    use strata_passport::dev::{TokenSpec, mint_passport};
    use strata_passport::principal::Egress;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let now = strata_passport::now_unix();
    let kinds = [
        ("public", Tier::Public, None, "aggregates only"),
        (
            "registered",
            Tier::Registered,
            None,
            "shifted dates, generalized demographics",
        ),
        ("controlled", Tier::Controlled, None, "real dates, genomics"),
        (
            "controlled-aggregates",
            Tier::Controlled,
            Some(Egress::Aggregates),
            "a dashboard service account",
        ),
    ];
    let mut listing = String::new();
    for (name, tier, egress, what) in kinds {
        let mut spec = TokenSpec::new(tier, &format!("demo-{name}"), now);
        spec.egress = egress;
        spec.ttl_secs = 24 * 3600;
        let token = mint_passport(issuer, &spec);
        let path = dir.join(format!("{name}.jwt"));
        std::fs::write(&path, &token)
            .with_context(|| format!("cannot write {}", path.display()))?;
        listing.push_str(&format!("  {name:<22} ({what}): {}\n", path.display()));
    }
    Ok(listing)
}

const DEMO_BANNER: &str = r#"
Strata demo: a synthetic research-program dataset is served on grpc://{addr}

Every call needs a data passport. Dev passports (valid 24 h, re-made at each start):
{tokens}
Python (pip install adbc-driver-flightsql pyarrow pandas):

    import adbc_driver_flightsql.dbapi as flight_sql
    token = open("{tokens_dir}/registered.jwt").read()
    conn = flight_sql.connect("grpc://{addr}", db_kwargs={
        "adbc.flight.sql.authorization_header": "Bearer " + token})
    cur = conn.cursor()
    cur.execute("""
        SELECT c.concept_name, COUNT(DISTINCT co.person_id) AS persons
        FROM condition_occurrence co JOIN concept c ON c.concept_id = co.condition_concept_id
        GROUP BY c.concept_name ORDER BY persons DESC LIMIT 10""")
    print(cur.fetch_df())

R (install.packages(c("adbcdrivermanager", "adbcflightsql"))):

    library(adbcdrivermanager)
    token <- readLines("{tokens_dir}/registered.jwt", warn = FALSE)
    db <- adbc_database_init(adbcflightsql::adbcflightsql(), uri = "grpc://{addr}",
                             adbc.flight.sql.authorization_header = paste("Bearer", token))
    con <- adbc_connection_init(db)
    con |> read_adbc("SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1") |> as.data.frame()

PostgreSQL clients (psql, ODBC, R DBI, BI tools) on {pg_addr}: the user is the passport's
subject (demo-registered, demo-controlled, …), the password is the passport itself.

    PGPASSWORD="$(cat {tokens_dir}/registered.jwt)" psql "host={pg_host} port={pg_port} user=demo-registered dbname=strata"

    # R (Debian: r-cran-dbi r-cran-rpostgresql r-cran-dbplyr)
    con <- DBI::dbConnect(RPostgreSQL::PostgreSQL(), host = "{pg_host}", port = {pg_port},
                          dbname = "strata", user = "demo-registered",
                          password = readLines("{tokens_dir}/registered.jwt", warn = FALSE))
    DBI::dbGetQuery(con, "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1")

Tables: person, observation_period, visit_occurrence, condition_occurrence, drug_exposure,
procedure_occurrence, measurement, observation, death, ds_survey, Fitbit tables (registered
tier), variant and genotype (controlled tier), and the vocabulary (concept, concept_ancestor,
concept_relationship: public). The audit log is in .strata/demo/.strata-server/audit.jsonl
(`strata audit --dataset .strata/demo`).
Press Ctrl-C to stop.
"#;
