//! PostgreSQL frontend bytes: startup packets (valid, odd or broken), and message sequences
//! after login (simple and extended queries with statements from the SQL generator, parameters
//! of every format, describes, closes, syncs), with a share of broken framing.

use proptest::prelude::*;
use strata_fuzzing::pg_message;

use super::sql;

fn cstring(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9_]{1,8}"]
}

/// A first packet: a startup message (protocol 3.0, 3.2 or another), an SSL, GSS or cancel
/// request, or noise.
pub fn startup() -> impl Strategy<Value = Vec<u8>> {
    let parameters = prop::collection::vec(
        (
            prop::sample::select(
                &[
                    "user",
                    "database",
                    "options",
                    "application_name",
                    "",
                    "replication",
                ][..],
            ),
            ".{0,12}",
        ),
        0..4,
    );
    let startup = (
        prop::sample::select(&[196608u32, 196610, 131072, 80877103, 80877102, 80877104, 0][..]),
        parameters,
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(code, parameters, trailer)| {
            let mut body = code.to_be_bytes().to_vec();
            for (k, v) in parameters {
                body.extend(cstring(k));
                body.extend(cstring(&v));
            }
            body.push(0);
            let mut packet = pg_message(None, &body);
            packet.extend(trailer);
            packet
        });
    prop_oneof![4 => startup, 2 => service_login(), 1 => prop::collection::vec(any::<u8>(), 0..64)]
}

/// A service account's startup, then password messages as SCRAM's client sends them (a
/// mechanism, a length, the data; then bare data), with lengths right or wrong.
fn service_login() -> impl Strategy<Value = Vec<u8>> {
    let initial = (
        prop::sample::select(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", ""][..]),
        any::<i32>(),
        prop::collection::vec(any::<u8>(), 0..24),
        any::<bool>(),
    )
        .prop_map(|(mechanism, len, data, honest)| {
            let mut body = cstring(mechanism);
            let len = if honest { data.len() as i32 } else { len };
            body.extend(len.to_be_bytes());
            body.extend(data);
            pg_message(Some(b'p'), &body)
        });
    let later = prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| pg_message(Some(b'p'), &b));
    (initial, prop::collection::vec(later, 0..2)).prop_map(|(first, rest)| {
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in [
            ("user", strata_fuzzing::SERVICE_USER),
            ("database", "strata"),
        ] {
            body.extend(cstring(k));
            body.extend(cstring(v));
        }
        body.push(0);
        [pg_message(None, &body), first, rest.concat()].concat()
    })
}

fn parameter() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just((-1i32).to_be_bytes().to_vec()),
        (0i64..5000).prop_map(|v| {
            let text = v.to_string();
            let mut b = (text.len() as i32).to_be_bytes().to_vec();
            b.extend(text.as_bytes());
            b
        }),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(|v| {
            let mut b = (v.len() as i32).to_be_bytes().to_vec();
            b.extend(v);
            b
        }),
        (any::<i32>(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(len, v)| {
            let mut b = len.to_be_bytes().to_vec();
            b.extend(v);
            b
        }),
    ]
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    let query = sql::statement().prop_map(|s| pg_message(Some(b'Q'), &cstring(&s)));
    let parse = (
        name(),
        sql::statement(),
        prop::collection::vec(any::<u32>(), 0..3),
    )
        .prop_map(|(n, s, oids)| {
            let mut body = cstring(&n);
            body.extend(cstring(&s));
            body.extend((oids.len() as i16).to_be_bytes());
            for oid in oids {
                body.extend(oid.to_be_bytes());
            }
            pg_message(Some(b'P'), &body)
        });
    let bind = (
        name(),
        name(),
        prop::collection::vec(0i16..3, 0..3),
        prop::collection::vec(parameter(), 0..3),
        prop::collection::vec(0i16..3, 0..3),
    )
        .prop_map(|(portal, statement, formats, parameters, results)| {
            let mut body = cstring(&portal);
            body.extend(cstring(&statement));
            body.extend((formats.len() as i16).to_be_bytes());
            for f in formats {
                body.extend(f.to_be_bytes());
            }
            body.extend((parameters.len() as i16).to_be_bytes());
            for p in parameters {
                body.extend(p);
            }
            body.extend((results.len() as i16).to_be_bytes());
            for f in results {
                body.extend(f.to_be_bytes());
            }
            pg_message(Some(b'B'), &body)
        });
    let describe_or_close = (
        prop::sample::select(&[b'D', b'C'][..]),
        prop::sample::select(&[b'S', b'P', b'X'][..]),
        name(),
    )
        .prop_map(|(tag, what, n)| {
            let mut body = vec![what];
            body.extend(cstring(&n));
            pg_message(Some(tag), &body)
        });
    let execute = (name(), any::<i32>()).prop_map(|(portal, rows)| {
        let mut body = cstring(&portal);
        body.extend(rows.to_be_bytes());
        pg_message(Some(b'E'), &body)
    });
    let bare = prop::sample::select(&[b'S', b'H', b'X', b'c'][..])
        .prop_map(|tag| pg_message(Some(tag), &[]));
    let broken = (
        any::<u8>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(tag, len, body)| {
            let mut m = vec![tag];
            m.extend(len.to_be_bytes());
            m.extend(body);
            m
        });
    prop_oneof![
        3 => query,
        3 => parse,
        3 => bind,
        2 => describe_or_close,
        2 => execute,
        2 => bare,
        1 => broken,
    ]
}

/// Messages after a login.
pub fn messages() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(message(), 1..7).prop_map(|ms| ms.concat())
}
