//! Every frontend message checked whole before pgwire decodes it. pgwire 0.42 reads message
//! bodies with unchecked `get_*` and `split_to` on its whole read buffer: a Bind whose
//! parameter length points past the message panics the connection's task (found by the fuzz
//! target `pg_messages`), and a body shorter or longer than its fields makes pgwire read the
//! next message's bytes as this one's. Here the socket hands pgwire only messages whose fields
//! fill their length exactly; anything else ends the connection with a protocol violation
//! (08P01), as PostgreSQL does.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// PostgreSQL's own limit on a startup packet.
const MAX_STARTUP: usize = 10_000;
/// The largest statement, bound values or copy data the door takes (Query, Parse, Bind,
/// CopyData): far above any research query, and a bound on what one connection can make the
/// server hold.
pub const MAX_MESSAGE: usize = 64 << 20;
/// The largest of the other messages, as pgwire's own limit (a password among them, before
/// any login).
const MAX_SMALL_MESSAGE: usize = 10_000;
const CANCEL_CODE: u32 = 80877102;
const SSL_CODE: u32 = 80877103;
const GSSENC_CODE: u32 = 80877104;

/// Why a message was refused; its text goes to the client with SQLSTATE 08P01.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid frontend message: {0}")]
pub struct Invalid(pub String);

fn invalid(what: impl Into<String>) -> Invalid {
    Invalid(what.into())
}

/// Where the connection is in the protocol, for what the next message may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Untagged packets: a startup message, a cancel request.
    Startup,
    /// Tagged messages; `sasl_initial`: the next password message is SCRAM's first.
    Tagged { sasl_initial: bool },
}

/// A socket that lets through only whole, well-formed frontend messages.
pub struct Checked<T> {
    io: T,
    /// Bytes read and not yet checked.
    raw: BytesMut,
    /// Checked bytes pgwire has not read yet.
    ready: BytesMut,
    phase: Phase,
    refused: Option<Invalid>,
    /// Whether a user logs in with SCRAM (a service account), whose first password message
    /// is a SASLInitialResponse rather than a password.
    scram_user: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl<T> Checked<T> {
    /// `io` after TLS negotiation, with the bytes pgwire already read from it (`read`).
    pub fn new(
        io: T,
        read: BytesMut,
        scram_user: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        Checked {
            io,
            raw: read,
            ready: BytesMut::new(),
            phase: Phase::Startup,
            refused: None,
            scram_user: Box::new(scram_user),
        }
    }

    /// The message that ended the connection, if one did.
    pub fn refused(&self) -> Option<&Invalid> {
        self.refused.as_ref()
    }

    /// Moves the complete messages at the front of `raw` to `ready`.
    fn check_buffered(&mut self) -> Result<(), Invalid> {
        while let Some(len) = self.next_length()? {
            if self.raw.len() < len {
                return Ok(());
            }
            let message = self.raw.split_to(len);
            self.phase = match self.phase {
                Phase::Startup => match check_startup(&message)? {
                    Some(user) => Phase::Tagged {
                        sasl_initial: (self.scram_user)(&user),
                    },
                    None => Phase::Startup,
                },
                Phase::Tagged { sasl_initial } => {
                    check_tagged(message[0], &message[5..], sasl_initial)?;
                    Phase::Tagged {
                        sasl_initial: sasl_initial && message[0] != b'p',
                    }
                }
            };
            if self.ready.is_empty() {
                self.ready = message;
            } else {
                self.ready.extend_from_slice(&message);
            }
        }
        Ok(())
    }

    /// The whole length (tag included) of the message at the front of `raw`, once its
    /// header is in.
    fn next_length(&self) -> Result<Option<usize>, Invalid> {
        let tagged = matches!(self.phase, Phase::Tagged { .. });
        let offset = usize::from(tagged);
        if self.raw.len() < offset + 4 {
            return Ok(None);
        }
        let declared = (&self.raw[offset..offset + 4]).get_i32();
        let limit = match (tagged, self.raw[0]) {
            (false, _) => MAX_STARTUP,
            (true, b'Q' | b'P' | b'B' | b'd') => MAX_MESSAGE,
            (true, _) => MAX_SMALL_MESSAGE,
        };
        let least = if tagged { 4 } else { 8 };
        if declared < least || declared as usize > limit {
            return Err(invalid(format!(
                "length {declared} is outside {least}..={limit}"
            )));
        }
        Ok(Some(offset + declared as usize))
    }
}

/// A startup-phase packet (length included): the user a startup message names (then tagged
/// messages follow), or `None` for a cancel, SSL or GSS request.
fn check_startup(packet: &[u8]) -> Result<Option<String>, Invalid> {
    let mut body = &packet[4..];
    let code = body.get_u32();
    match code {
        CANCEL_CODE if (8..=260).contains(&body.len()) => Ok(None),
        CANCEL_CODE => Err(invalid("a cancel request of the wrong length")),
        SSL_CODE | GSSENC_CODE if body.is_empty() => Ok(None),
        _ if code >> 16 == 3 => {
            let mut user = String::new();
            loop {
                let key = cstring(&mut body)?;
                if key.is_empty() {
                    break;
                }
                let value = cstring(&mut body)?;
                if key == "user" {
                    user = value;
                }
            }
            if !body.is_empty() {
                return Err(invalid("bytes after the startup parameters"));
            }
            Ok(Some(user))
        }
        _ => Err(invalid(format!(
            "unsupported protocol or request code {code}"
        ))),
    }
}

/// A tagged message's body holds exactly its fields.
fn check_tagged(tag: u8, body: &[u8], sasl_initial: bool) -> Result<(), Invalid> {
    let mut b = body;
    let what = |e: Invalid| invalid(format!("'{}': {}", tag as char, e.0));
    match tag {
        // Query, CopyFail: one string.
        b'Q' | b'f' => {
            cstring(&mut b).map_err(what)?;
        }
        // Parse: name, text, parameter types.
        b'P' => {
            cstring(&mut b).map_err(what)?;
            cstring(&mut b).map_err(what)?;
            let n = count(&mut b).map_err(what)?;
            take(&mut b, n * 4).map_err(what)?;
        }
        b'B' => bind(&mut b).map_err(what)?,
        // Describe, Close: a kind and a name.
        b'D' | b'C' => {
            take(&mut b, 1).map_err(what)?;
            cstring(&mut b).map_err(what)?;
        }
        // Execute: a portal and a row limit.
        b'E' => {
            cstring(&mut b).map_err(what)?;
            take(&mut b, 4).map_err(what)?;
        }
        // Sync, Flush, Terminate, CopyDone: nothing.
        b'S' | b'H' | b'X' | b'c' => {}
        // CopyData: bytes.
        b'd' => b = &[],
        // A password, SCRAM's first message (mechanism, length, data), or a later one (bytes).
        b'p' if sasl_initial => {
            cstring(&mut b).map_err(what)?;
            let n = take(&mut b, 4).map_err(what)?.get_i32();
            if n < -1 {
                return Err(invalid("'p': a negative length"));
            }
            take(&mut b, n.max(0) as usize).map_err(what)?;
        }
        // pgwire reads a password up to its first NUL, a later SCRAM message whole.
        b'p' => b = &[],
        other => return Err(invalid(format!("unknown message type {other:#04x}"))),
    }
    if !b.is_empty() {
        return Err(invalid(format!(
            "'{}': {} bytes after its fields",
            tag as char,
            b.len()
        )));
    }
    Ok(())
}

/// Bind: portal, statement, parameter formats, parameters, result formats.
fn bind(b: &mut &[u8]) -> Result<(), Invalid> {
    cstring(b)?;
    cstring(b)?;
    let formats = count(b)?;
    take(b, formats * 2)?;
    for _ in 0..count(b)? {
        let len = take(b, 4)?.get_i32();
        if len < -1 {
            return Err(invalid("a parameter of negative length"));
        }
        take(b, len.max(0) as usize)?;
    }
    let results = count(b)?;
    take(b, results * 2)?;
    Ok(())
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], Invalid> {
    if b.len() < n {
        return Err(invalid(format!(
            "a field of {n} bytes where {} remain",
            b.len()
        )));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn count(b: &mut &[u8]) -> Result<usize, Invalid> {
    let n = take(b, 2)?.get_i16();
    usize::try_from(n).map_err(|_| invalid("a negative count"))
}

fn cstring(b: &mut &[u8]) -> Result<String, Invalid> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| invalid("a string without its terminator"))?;
    let text = String::from_utf8_lossy(&b[..end]).into_owned();
    *b = &b[end + 1..];
    Ok(text)
}

impl<T: AsyncRead + Unpin> AsyncRead for Checked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if let Some(refused) = &this.refused {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    refused.clone(),
                )));
            }
            if let Err(refused) = this.check_buffered() {
                this.refused = Some(refused);
                continue;
            }
            if !this.ready.is_empty() {
                continue;
            }
            let mut chunk = [0u8; 16 << 10];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // The client closed: an incomplete last message is dropped with it.
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => this.raw.extend_from_slice(read.filled()),
                other => return other,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Checked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_bind_whose_parameter_overruns_the_message_is_refused() {
        // The fuzz target's first crash: one parameter declared 550,974,954 bytes long.
        let mut body = b"\0\0".to_vec();
        body.extend(0i16.to_be_bytes());
        body.extend(1i16.to_be_bytes());
        body.extend(550_974_954i32.to_be_bytes());
        body.extend(b"abc");
        let refused = check_tagged(b'B', &body, false).unwrap_err();
        assert!(refused.0.contains("550974954 bytes"), "{refused}");
    }

    #[test]
    fn well_formed_messages_pass_and_trailing_bytes_do_not() {
        let mut bind = b"\0s1\0".to_vec();
        bind.extend(1i16.to_be_bytes());
        bind.extend(0i16.to_be_bytes());
        bind.extend(2i16.to_be_bytes());
        bind.extend(2i32.to_be_bytes());
        bind.extend(b"42");
        bind.extend((-1i32).to_be_bytes());
        bind.extend(0i16.to_be_bytes());
        check_tagged(b'B', &bind, false).unwrap();
        check_tagged(b'Q', b"SELECT 1\0", false).unwrap();
        check_tagged(b'S', b"", false).unwrap();
        assert!(
            check_tagged(b'Q', b"SELECT 1", false).is_err(),
            "unterminated"
        );
        assert!(
            check_tagged(b'Q', b"SELECT 1\0X", false).is_err(),
            "trailing"
        );
        assert!(check_tagged(b'S', b"x", false).is_err());
        assert!(
            check_tagged(b'E', b"\0\0\0", false).is_err(),
            "short row limit"
        );
        assert!(check_tagged(b'F', b"", false).is_err(), "unknown type");
        // SCRAM's first message needs its length; a later one is bytes.
        assert!(check_tagged(b'p', b"SCRAM-SHA-256\0", true).is_err());
        check_tagged(b'p', b"n,,n=u,r=x", false).unwrap();
    }

    #[test]
    fn startup_packets_are_checked_to_their_last_byte() {
        let mut packet = Vec::new();
        let body = [&196608u32.to_be_bytes()[..], b"user\0ana\0database\0x\0\0"].concat();
        packet.extend(((body.len() + 4) as i32).to_be_bytes());
        packet.extend(&body);
        assert_eq!(check_startup(&packet).unwrap().as_deref(), Some("ana"));
        packet.push(b'!');
        let n = packet.len() as i32;
        packet[..4].copy_from_slice(&n.to_be_bytes());
        assert!(check_startup(&packet).is_err());
    }

    #[tokio::test]
    async fn the_socket_passes_whole_messages_and_stops_at_a_broken_one() {
        use tokio::io::AsyncReadExt;
        let mut startup = Vec::new();
        let body = [&196608u32.to_be_bytes()[..], b"user\0ana\0\0"].concat();
        startup.extend(((body.len() + 4) as i32).to_be_bytes());
        startup.extend(&body);
        let good = message(b'Q', b"SELECT 1\0");
        let bad = message(b'E', b"\0");
        let input = [startup.clone(), good.clone(), bad].concat();
        let mut socket = Checked::new(&input[..], BytesMut::new(), |_| false);
        let mut passed = Vec::new();
        let error = socket.read_to_end(&mut passed).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(passed, [startup, good].concat());
        assert!(socket.refused().is_some());
    }
}
