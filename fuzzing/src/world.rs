//! The server every target talks to, built once per process: a small generated dataset, the
//! real query service over it with passports from a development issuer, and the PostgreSQL door
//! on a loopback port. Limits are tight so that a fuzzed cross join ends in an error quickly.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use strata_engine::{Dataset, DatasetOptions, Tier};
use strata_passport::dev::{DEFAULT_ISSUER, DevIssuer, TokenSpec, mint_passport};
use strata_passport::{Egress, PassportVerifier, Principal, now_unix};
use strata_query::config::{ServerConfig, ServiceAccount};
use strata_query::{Authenticator, Call, QueryService};
use strata_testdata::generate::{GenerateOptions, generate};

/// Participants in the fuzzed dataset: enough for groups on both sides of the threshold.
const PERSONS: u64 = 300;
/// The PostgreSQL service account's user name (it logs in with SCRAM, not a passport).
pub const SERVICE_USER: &str = "fuzz-service";

pub struct World {
    pub runtime: tokio::runtime::Runtime,
    pub query: Arc<QueryService>,
    pub issuer: DevIssuer,
    pub verifier: PassportVerifier,
    /// Row-level principals (controlled, registered) and aggregates-only ones (public, which
    /// reads the vocabulary only, and controlled with egress `aggregates`), in that order.
    pub principals: Vec<Principal>,
    /// A controlled-tier passport, and the subject it names (a PostgreSQL login).
    pub controlled_token: String,
    pub controlled_sub: String,
    pub pg_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl World {
    /// The process's world, built on first use.
    pub fn get() -> &'static World {
        static WORLD: OnceLock<World> = OnceLock::new();
        WORLD.get_or_init(|| World::build().expect("the fuzzing world builds"))
    }

    fn build() -> anyhow::Result<World> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("dataset");
        generate(&GenerateOptions {
            out: data.clone(),
            persons: PERSONS,
            shards: 2,
            seed: 20261207,
            progress: false,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let issuer = DevIssuer::generate(DEFAULT_ISSUER);
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, issuer.jwks().to_string())?;
        let verifier =
            PassportVerifier::from_jwks_file(&jwks, false).map_err(|e| anyhow::anyhow!("{e}"))?;

        let mut config = ServerConfig {
            state_dir: Some(dir.path().join("state")),
            ..Default::default()
        };
        // A service account, so that SCRAM logins (whose first password message has its own
        // layout) are reached too; its keys are well-formed and match no password.
        let service_passport = dir.path().join("service.jwt");
        let mut service = TokenSpec::new(Tier::Controlled, SERVICE_USER, now_unix());
        service.ttl_secs = 30 * 24 * 3600;
        service.egress = Some(Egress::Aggregates);
        std::fs::write(&service_passport, mint_passport(&issuer, &service))?;
        config.pg.service_accounts.push(ServiceAccount {
            user: SERVICE_USER.into(),
            scram: format!(
                "SCRAM-SHA-256$4096:c2FsdHNhbHQ=${0}:{0}",
                "A".repeat(43) + "="
            ),
            passport: service_passport,
        });
        config.limits.query_timeout_secs = 10;
        config.limits.query_memory_mb = 256;
        config.limits.queue_timeout_secs = 30;
        // Every input adds released sets to the aggregates-only principals' ledgers: a budget
        // well under the fuzzers' memory limit (past it their protected results are refused,
        // which is a path to fuzz too).
        config.disclosure.ledger_budget_mb = 64;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let now = now_unix();
        let mint = |tier: Tier, sub: &str, egress: Option<Egress>| {
            let mut spec = TokenSpec::new(tier, sub, now);
            spec.ttl_secs = 30 * 24 * 3600;
            spec.egress = egress;
            mint_passport(&issuer, &spec)
        };
        let controlled_sub = "fuzz-controlled".to_string();
        let controlled_token = mint(Tier::Controlled, &controlled_sub, None);
        let tokens = [
            controlled_token.clone(),
            mint(Tier::Registered, "fuzz-registered", None),
            mint(Tier::Public, "fuzz-public", None),
            mint(
                Tier::Controlled,
                "fuzz-aggregates",
                Some(Egress::Aggregates),
            ),
        ];
        let (query, principals, pg_addr) = runtime.block_on(async {
            let dataset = Arc::new(Dataset::open(&data, &DatasetOptions::default()).await?);
            let auth =
                Authenticator::jwks_file(&jwks, false).map_err(|e| anyhow::anyhow!("{e}"))?;
            let query = Arc::new(
                QueryService::open(dataset, &config, auth)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            let mut principals = Vec::new();
            for token in &tokens {
                let principal = query
                    .authenticate(&Call::new("fuzz"), Some(&format!("Bearer {token}")))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                principals.push(principal);
            }
            let door = strata_pgwire::Door::new(query.clone(), &config)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let pg_addr = listener.local_addr()?;
            tokio::spawn(strata_pgwire::serve(
                door,
                listener,
                std::future::pending(),
                std::future::pending(),
            ));
            Ok::<_, anyhow::Error>((query, principals, pg_addr))
        })?;
        Ok(World {
            runtime,
            query,
            issuer,
            verifier,
            principals,
            controlled_token,
            controlled_sub,
            pg_addr,
            _dir: dir,
        })
    }

    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs `future` to its end, or `None` past `limit`.
    pub fn within<F: Future>(&self, limit: std::time::Duration, future: F) -> Option<F::Output> {
        self.runtime
            .block_on(async { tokio::time::timeout(limit, future).await.ok() })
    }

    /// A call of `door` by `principal`.
    pub fn call(&self, door: &'static str, principal: &Principal) -> Call {
        Call::new(door).with_principal(Some(principal.clone()))
    }
}
