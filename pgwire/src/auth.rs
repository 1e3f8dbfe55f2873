//! Login: the password is a passport (the user name must be its `sub`), checked by the query
//! service as the bearer token of any other door. Cleartext passwords are taken only over TLS or
//! from loopback, where they cannot be read on the way.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::ClientInfo;
use pgwire::api::ConnectionManager;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use strata_query::{Call, Principal, QueryError, QueryService};

use crate::accounts::Accounts;
use crate::error::fatal;
use crate::session::Connection;

/// A login's verdict: the principal, and the passport it came from, which every statement of
/// the session presents again (an expired passport or a key taken out of the JWKS ends the
/// session's queries at its next statement).
#[derive(Debug, Clone)]
pub struct Verified {
    pub principal: Principal,
    /// `Bearer <JWT>`, as a gRPC call carries it.
    pub bearer: String,
}

pub struct Login {
    query: Arc<QueryService>,
    driver: AuthDriver<DefaultServerParameterProvider, Verified>,
    passports: CleartextPasswordAuth<Passports>,
    accounts: Arc<Accounts>,
    scram: ScramAuth<Verified>,
    /// Mutual TLS: a connection without TLS has shown no client certificate.
    client_certificates: bool,
}

impl Login {
    pub fn new(
        query: Arc<QueryService>,
        connections: Arc<ConnectionManager>,
        accounts: Accounts,
        client_certificates: bool,
    ) -> Self {
        let accounts = Arc::new(accounts);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = strata_query::postgres::SERVER_VERSION.to_owned();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        Login {
            passports: CleartextPasswordAuth::new(Arc::new(Passports {
                query: query.clone(),
            })),
            query,
            driver: AuthDriver::new(parameters).with_connection_manager(connections),
            scram: ScramAuth::new(accounts.clone()),
            accounts,
            client_certificates,
        }
    }

    /// Whether a user name logs in with SCRAM (a service account) rather than a passport.
    pub fn scram_users(&self) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
        let accounts = self.accounts.clone();
        Arc::new(move |user| accounts.has(user))
    }

    async fn finish<C>(&self, client: &mut C, outcome: AuthOutcome<Verified>) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let AuthOutcome::Authenticated {
            identity,
            final_message,
        } = outcome
        else {
            return Ok(());
        };
        let verified = identity.ok_or_else(|| fatal("28000", "no passport".into()))?;
        let call = call(client).with_principal(Some(verified.principal));
        client.session_extensions().insert(Connection::new(
            call,
            verified.bearer,
            self.query.clone(),
        ));
        self.driver
            .complete_authentication(client, final_message)
            .await
    }
}

/// The request as the query service sees it, before authentication.
fn call(client: &(impl ClientInfo + ?Sized)) -> Call {
    Call::new("pg")
        .with_dialect(strata_query::Dialect::Postgres)
        .with_peer(Some(client.socket_addr().to_string()))
        .with_workspace(
            client
                .metadata()
                .get(pgwire::api::METADATA_APPLICATION_NAME)
                .map(String::as_str),
        )
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                if self.client_certificates && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this server requires TLS with a client certificate \
                         (sslmode=require with sslcert and sslkey)"
                            .into(),
                    ));
                }
                let user = client.metadata().get(pgwire::api::METADATA_USER);
                let mechanism = if user.is_some_and(|u| self.accounts.has(u)) {
                    // SCRAM proves the password without sending it: fine on any network.
                    self.scram.create()
                } else if client.is_secure() || client.socket_addr().ip().is_loopback() {
                    self.passports.create()
                } else {
                    return Err(fatal(
                        "28000",
                        "passwords (passports) are accepted only over TLS or from loopback".into(),
                    ));
                };
                let outcome = self.driver.begin_authentication(client, mechanism).await?;
                self.finish(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let outcome = self.driver.advance_authentication(client, message).await?;
                self.finish(client, outcome).await
            }
            _ => Ok(()),
        }
    }
}

/// Passports as passwords.
struct Passports {
    query: Arc<QueryService>,
}

impl Debug for Passports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passports")
    }
}

#[async_trait]
impl AuthSource<Verified> for Passports {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Err(fatal(
            "28000",
            "passports are verified, not looked up".into(),
        ))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<Verified>> {
        let call = Call::new("pg").with_peer(Some(login.host().to_owned()));
        let token = String::from_utf8_lossy(presented);
        let bearer = format!("Bearer {}", token.trim());
        let principal = self
            .query
            .authenticate(&call, Some(&bearer))
            .map_err(|e| fatal("28P01", e.message()))?;
        if login.user() != Some(principal.sub.as_str()) {
            let refused = QueryError::Unauthenticated(
                "the user name must be the passport's subject (sub)".into(),
            );
            let call = call.with_principal(Some(principal));
            let refused = self
                .query
                .answer::<()>(&call, "authenticate", Err(refused))
                .await
                .unwrap_err();
            return Err(fatal("28000", refused.message()));
        }
        Ok(Some(Verified { principal, bearer }))
    }
}
