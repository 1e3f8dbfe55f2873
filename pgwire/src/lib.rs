//! Strata's PostgreSQL-wire door, for BI tools, ODBC and R DBI: the PostgreSQL v3 protocol
//! (pgwire) over the same query service as Flight SQL. A passport is the password; statements are
//! planned, protected, audited and run by `strata_query`; errors become SQLSTATEs in one place
//! (`error.rs`). No policy lives here.

mod accounts;
mod auth;
mod connection;
mod encode;
mod error;
mod frames;
mod params;
mod results;
mod session;
mod statements;
mod tls;

use std::future::Future;
use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use strata_query::QueryService;
use strata_query::config::ServerConfig;
use tracing::Instrument;

use crate::accounts::Accounts;
use crate::auth::Login;
use crate::statements::Statements;

/// The door's settings, checked before it opens.
pub struct Door {
    handlers: Handlers,
    tls: Option<pgwire::tokio::TlsAcceptor>,
}

impl Door {
    pub fn new(query: Arc<QueryService>, config: &ServerConfig) -> anyhow::Result<Self> {
        let accounts = Accounts::load(query.clone(), &config.pg.service_accounts)?;
        let connections = Arc::new(ConnectionManager::new());
        Ok(Door {
            handlers: Handlers {
                login: Arc::new(Login::new(
                    query,
                    connections.clone(),
                    accounts,
                    config.tls.client_ca.is_some(),
                )),
                statements: Arc::new(Statements::new(config.egress.max_rows)),
                cancel: Arc::new(DefaultCancelHandler::new(connections)),
            },
            tls: tls::acceptor(&config.tls)?,
        })
    }
}

/// Serves PostgreSQL clients on `listener` until `shutdown` completes; the open connections
/// are closed once `drained` completes too (their running queries ended: a connection between
/// statements has nothing to lose).
pub async fn serve(
    door: Door,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    drained: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let Door { handlers, tls } = door;
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Reap ended connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => {
                drop(listener);
                drained.await;
                // The last statements' final messages are on their way: a moment to send them.
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(500),
                    async { while connections.join_next().await.is_some() {} },
                )
                .await;
                connections.abort_all();
                // Cancelled connections drop their queries, whose end records must be handed
                // to the audit log before it is flushed.
                while connections.join_next().await.is_some() {}
                return Ok(());
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres door: accept failed");
                    continue;
                }
            },
        };
        // Nagle with delayed ACKs stalls small protocol messages.
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        let tls = tls.clone();
        let scram_user = handlers.login.scram_users();
        let span = tracing::info_span!("pg_connection", %peer);
        connections.spawn(
            async move {
                if let Err(e) = connection::serve(socket, tls, handlers, scram_user).await {
                    tracing::debug!(error = %e, "postgres connection ended");
                }
            }
            .instrument(span),
        );
    }
}

#[derive(Clone)]
struct Handlers {
    login: Arc<Login>,
    statements: Arc<Statements>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.statements.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.statements.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.login.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}
