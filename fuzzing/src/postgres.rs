//! The PostgreSQL door's messages, over a real loopback connection: arbitrary bytes from the
//! first one (the startup packet), or after a successful login with a controlled passport (so
//! Query, Parse, Bind, Describe, Execute and the rest reach the door's handlers).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::World;

/// Longer than the statements of one input can take under the world's limits (a few, 10 s
/// each): a connection whose client has sent everything and closed its side must be answered
/// and closed by then.
const NO_CONNECTION_OUTLIVES: Duration = Duration::from_secs(180);

/// Sends `bytes` as the start of a connection. Holds: the door answers and closes.
pub fn pg_raw(bytes: &[u8]) {
    let world = World::get();
    let ended = world.within(NO_CONNECTION_OUTLIVES, async {
        let Ok(mut socket) = TcpStream::connect(world.pg_addr).await else {
            panic!("the PostgreSQL door stopped accepting connections");
        };
        send_and_drain(&mut socket, bytes).await;
    });
    assert!(
        ended.is_some(),
        "a connection outlived every limit: {bytes:?}"
    );
}

/// Logs in with the world's controlled passport, then sends `bytes` as frontend messages.
/// Holds: the login succeeds (no earlier input can break the door), and the door answers
/// and closes.
pub fn pg_after_login(bytes: &[u8]) {
    let world = World::get();
    let ended = world.within(NO_CONNECTION_OUTLIVES, async {
        let Ok(mut socket) = TcpStream::connect(world.pg_addr).await else {
            panic!("the PostgreSQL door stopped accepting connections");
        };
        log_in(&mut socket, &world.controlled_sub, &world.controlled_token).await;
        send_and_drain(&mut socket, bytes).await;
    });
    assert!(
        ended.is_some(),
        "a connection outlived every limit: {bytes:?}"
    );
}

/// Writes everything, closes the write side, and reads until the door closes.
async fn send_and_drain(socket: &mut TcpStream, bytes: &[u8]) {
    // The door may close first (a malformed message ends the connection): write errors are
    // part of the answer.
    let _ = socket.write_all(bytes).await;
    let _ = socket.shutdown().await;
    let mut sink = vec![0u8; 64 << 10];
    while let Ok(n) = socket.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// The startup packet, the passport as a cleartext password, up to ReadyForQuery.
async fn log_in(socket: &mut TcpStream, user: &str, passport: &str) {
    let mut startup = Vec::new();
    startup.extend_from_slice(&196608u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", "strata")] {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    }
    startup.push(0);
    socket.write_all(&pg_message(None, &startup)).await.unwrap();
    loop {
        let (tag, body) = read_message(socket).await;
        match tag {
            b'R' if body.get(..4) == Some(&3u32.to_be_bytes()) => {
                let mut password = passport.as_bytes().to_vec();
                password.push(0);
                socket
                    .write_all(&pg_message(Some(b'p'), &password))
                    .await
                    .unwrap();
            }
            b'Z' => return,
            b'E' => panic!(
                "the door refused the world's login: {}",
                String::from_utf8_lossy(&body)
            ),
            _ => {}
        }
    }
}

/// A message: its tag (none for the startup packet), its length, its body.
pub fn pg_message(tag: Option<u8>, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(body.len() + 5);
    message.extend(tag);
    message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    message
}

async fn read_message(socket: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = socket.read_u8().await.expect("the door answers the login");
    let len = socket.read_u32().await.expect("the door answers the login") as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    socket
        .read_exact(&mut body)
        .await
        .expect("the door answers the login");
    (tag, body)
}
