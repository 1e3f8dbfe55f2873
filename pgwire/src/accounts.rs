//! Service accounts: dashboards and BI servers log in with SCRAM-SHA-256 against a verifier in
//! the config (the password never reaches the server) and act under a service passport, which
//! must have `aggregates` egress and is verified again at every login (it expires like any
//! passport).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use anyhow::{Context, bail};
use async_trait::async_trait;
use base64::Engine;
use pgwire::api::auth::sasl::scram::ScramSecret;
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;
use strata_query::config::ServiceAccount;
use strata_query::{Call, QueryService};

use crate::auth::Verified;

use crate::error::fatal;

struct Account {
    secret: Verifier,
    passport: String,
}

#[derive(Clone)]
struct Verifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

pub struct Accounts {
    query: Arc<QueryService>,
    accounts: HashMap<String, Account>,
}

impl Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.accounts.keys()).finish()
    }
}

impl Accounts {
    /// The configured accounts, each checked now: a bad verifier, an unreadable or invalid
    /// passport, or one that may read rows stops the server from starting.
    pub fn load(query: Arc<QueryService>, configured: &[ServiceAccount]) -> anyhow::Result<Self> {
        let mut accounts = HashMap::new();
        for account in configured {
            let secret = parse_verifier(&account.scram)
                .with_context(|| format!("service account {}: bad scram verifier", account.user))?;
            let passport = std::fs::read_to_string(&account.passport)
                .with_context(|| {
                    format!(
                        "service account {}: cannot read {}",
                        account.user,
                        account.passport.display()
                    )
                })?
                .trim()
                .to_owned();
            let principal = query
                .authenticate(&Call::new("pg"), Some(&format!("Bearer {passport}")))
                .map_err(|e| {
                    anyhow::anyhow!("service account {}: {}", account.user, e.message())
                })?;
            if !principal.aggregates_only() {
                bail!(
                    "service account {}: its passport must have strata_egress=aggregates",
                    account.user
                );
            }
            accounts.insert(account.user.clone(), Account { secret, passport });
        }
        Ok(Accounts { query, accounts })
    }

    pub fn has(&self, user: &str) -> bool {
        self.accounts.contains_key(user)
    }
}

#[async_trait]
impl AuthSource<Verified> for Accounts {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Err(fatal("28000", "service accounts log in with SCRAM".into()))
    }

    async fn get_scram_secret(
        &self,
        login: &LoginInfo,
    ) -> PgWireResult<(ScramSecret, Option<Verified>)> {
        let user = login.user().unwrap_or_default();
        let account = self
            .accounts
            .get(user)
            .ok_or_else(|| fatal("28P01", format!("no service account {user}")))?;
        let call = Call::new("pg").with_peer(Some(login.host().to_owned()));
        let bearer = format!("Bearer {}", account.passport);
        let principal = self
            .query
            .authenticate(&call, Some(&bearer))
            .map_err(|e| fatal("28P01", format!("service account {user}: {}", e.message())))?;
        let v = account.secret.clone();
        Ok((
            ScramSecret::Verifier {
                salt: v.salt,
                iterations: v.iterations,
                stored_key: v.stored_key,
                server_key: v.server_key,
            },
            Some(Verified { principal, bearer }),
        ))
    }
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64 parts.
fn parse_verifier(text: &str) -> anyhow::Result<Verifier> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .context("not base64")
    };
    let rest = text
        .strip_prefix("SCRAM-SHA-256$")
        .context("must start with SCRAM-SHA-256$")?;
    let (head, keys) = rest.split_once('$').context("missing $ before the keys")?;
    let (iterations, salt) = head.split_once(':').context("missing iterations:salt")?;
    let (stored, server) = keys
        .split_once(':')
        .context("missing StoredKey:ServerKey")?;
    Ok(Verifier {
        salt: b64(salt)?,
        iterations: iterations.parse().context("iterations is not a number")?,
        stored_key: b64(stored)?,
        server_key: b64(server)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_parse_as_postgresql_writes_them() {
        let v = parse_verifier(
            "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5c3RvcmVka2V5c3RvcmVka2V5MTIzNA==:c2VydmVya2V5",
        )
        .unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.salt, b"saltsalt");
        assert_eq!(v.server_key, b"serverkey");
        for bad in [
            "md5abc",
            "SCRAM-SHA-256$x:c2FsdA==$a:b",
            "SCRAM-SHA-256$4096:c2FsdA==",
        ] {
            assert!(parse_verifier(bad).is_err(), "{bad}");
        }
    }
}
