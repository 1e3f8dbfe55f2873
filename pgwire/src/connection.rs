//! One client connection: pgwire's TLS negotiation, then its message loop over a socket that
//! passes only checked messages (`frames`). The loop is pgwire's `process_socket` with that one
//! change, and a protocol violation answered with 08P01 before the connection closes.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::frames::Checked;

/// As pgwire: a client that has not logged in within a minute is dropped.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn serve<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    scram_user: Arc<dyn Fn(&str) -> bool + Send + Sync>,
) -> std::io::Result<()> {
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    let negotiated = tokio::select! {
        _ = &mut startup => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // A direct TLS hello without a certificate to answer it.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let parts = negotiated.into_parts();
    // Bytes that came with the SSLRequest, before the handshake, were not encrypted: a
    // man in the middle could have put them there (PostgreSQL's CVE-2021-23214).
    if parts.codec.client_info.is_secure && !parts.read_buf.is_empty() {
        tracing::info!("postgres connection closed: data before the TLS handshake");
        return Ok(());
    }
    // pgwire's `client_certificates()` finds the TLS stream by downcasting the socket, which is
    // now wrapped: certificates are checked in the handshake (tls.rs), never read from there.
    let checked = Checked::new(parts.io, parts.read_buf, move |user| scram_user(user));
    let mut next = FramedParts::new(checked, parts.codec);
    next.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(next);

    let startup_handler = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let message = if matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        ) {
            tokio::select! {
                _ = &mut startup => None,
                message = socket.next() => message,
            }
        } else {
            socket.next().await
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(_)) => {
                if let Some(refused) = socket.get_ref().refused() {
                    let refused = refused.to_string();
                    tracing::info!(reason = %refused, "postgres connection closed: protocol violation");
                    let info = ErrorInfo::new("FATAL".into(), "08P01".into(), refused);
                    let _ = socket
                        .send(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await;
                }
                break;
            }
            None => break,
        };
        // The client is leaving: close (asyncpg waits for the server to drop the socket).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let in_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let is_cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        if let Err(mut e) = process_message(
            message,
            &mut socket,
            startup_handler.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, in_extended_query).await?;
            if fatal {
                break;
            }
        }
        if is_cancel_request {
            break;
        }
    }
    Ok(())
}
