//! A lingering close for client connections.
//!
//! When the server ends a connection (a shutdown ends each one once its last stream is
//! written), closing the socket while the client's window updates sit unread in its receive
//! buffer makes the kernel answer with a reset, and a reset throws away whatever of the
//! response is still in the send buffer: the client loses the tail of a result it was promised.
//! So a connection is closed as HTTP servers always have: stop writing (FIN after the last
//! byte), read and discard until the client closes, then close.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a closed connection waits for the client to close its side.
pub(crate) const LINGER: Duration = Duration::from_secs(5);

/// A client connection that lingers when dropped. `closing` tracks the lingering ones, so the
/// server can wait for them before the process exits.
pub(crate) struct Lingering {
    stream: Option<TcpStream>,
    closing: TaskTracker,
}

impl Lingering {
    pub(crate) fn new(stream: TcpStream, closing: TaskTracker) -> Self {
        Lingering {
            stream: Some(stream),
            closing,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("taken only on drop"))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        // Outside a runtime (never while serving) the socket simply closes.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.closing.spawn(async move {
            let drained = async {
                let _ = stream.shutdown().await;
                let mut sink = [0u8; 4096];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drained).await;
        });
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl Connected for Lingering {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream
            .as_ref()
            .expect("taken only on drop")
            .connect_info()
    }
}
