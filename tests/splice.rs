//! Response bodies moved with splice(2) (issue 13), through the real binary: large
//! `Content-Length` bodies arrive whole and in order; an upstream that dies or
//! stalls mid-body, or a client that stops reading, ends the connection within its
//! timeout; small bodies, chunked ones and TLS keep the copy path.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod tls_support;

use common::{Backend, Client, Gateway, Reply, Scripted};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The gateway in front of `backend`, on the epoll driver (where ringway splices;
/// `io_uring: true` keeps io_uring, where it copies).
fn gateway(backend: &str, upstream: &str) -> (Gateway, SocketAddr) {
    gateway_on(backend, upstream, false)
}

fn gateway_on(backend: &str, upstream: &str, io_uring: bool) -> (Gateway, SocketAddr) {
    let env: &[(&str, &str)] = if io_uring {
        &[]
    } else {
        &[("RINGWAY_DRIVER", "legacy")]
    };
    let gw = Gateway::start_env(
        &format!(
            r#"
[server]
listen = ["127.0.0.1:0"]
shards = 1
[upstream]
connect_timeout = "1s"
response_timeout = "1s"
{upstream}
[admin]
listen = "127.0.0.1:0"
[endpoints]
b = "{backend}"
[[groups]]
name = "it"
[[groups.routes]]
name = "all"
path = {{ regex = "/(.*)" }}
to = "{{#endpoints['b']}}/{{#group[0]}}"
"#
        ),
        env,
    );
    let admin = tls_support::admin_addr(&gw);
    (gw, admin)
}

fn spliced(admin: SocketAddr) -> u64 {
    tls_support::metric(admin, "ringway_spliced_bytes_total", &[])
}

#[test]
fn large_bodies_are_spliced_whole_and_small_ones_copied() {
    let big = pattern(3 << 20);
    let body = big.clone();
    let backend = Backend::start(move |r| match r.target.as_str() {
        "/big" => Reply::ok(body.clone()),
        "/small" => Reply::ok(b"small".to_vec()),
        _ => Reply::ok(body.clone()).chunked(100_000),
    });
    let (gw, admin) = gateway(&backend.url(), "splice_min_bytes = 262144");
    let mut c = Client::connect(gw.addr);
    for _ in 0..3 {
        let r = c.get("/big");
        assert_eq!(r.status, 200);
        assert!(
            r.body == big,
            "a spliced body arrived changed ({} bytes)",
            r.body.len()
        );
        // Keep-alive holds after a spliced body: the next response follows it.
        assert_eq!(c.get("/small").body, b"small");
    }
    let moved = spliced(admin);
    assert!(
        moved > 3 * (3 << 20) - 3 * 64 * 1024,
        "spliced {moved} of 3 × 3 MiB"
    );
    // The upstream connection went back to the pool after each spliced body.
    assert_eq!(backend.connections(), 1);
    // A chunked body is copied (its framing is read), and arrives whole.
    let r = c.get("/chunked");
    assert!(r.body == big);
    assert_eq!(spliced(admin), moved);
}

#[test]
fn splice_off_and_io_uring_copy_the_same_bytes() {
    let big = pattern(1 << 20);
    let body = big.clone();
    let backend = Backend::start(move |_| Reply::ok(body.clone()));
    // Where io_uring is unavailable the binary runs epoll (and splices): only the
    // setting is checked then.
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("--version")
        .output()
        .unwrap();
    let uring = String::from_utf8_lossy(&version.stdout).contains("driver: io_uring");
    let cases: &[(&str, bool)] = if uring {
        &[("splice_min_bytes = 0", false), ("splice_min_bytes = 1", true)]
    } else {
        &[("splice_min_bytes = 0", false)]
    };
    for &(setting, io_uring) in cases {
        let (gw, admin) = gateway_on(&backend.url(), setting, io_uring);
        let r = Client::connect(gw.addr).get("/");
        assert!(r.body == big, "{setting}");
        assert_eq!(spliced(admin), 0, "{setting}, io_uring: {io_uring}");
    }
}

#[test]
fn an_upstream_that_dies_or_stalls_mid_body_ends_the_connection_in_time() {
    for stall in [false, true] {
        let backend = Scripted::custom(move |mut s, _| {
            let _ = common::read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n");
            let _ = s.write_all(&vec![b'x'; 1 << 20]);
            if stall {
                std::thread::sleep(Duration::from_secs(4));
            }
        });
        let (gw, admin) = gateway(&backend.url(), "splice_min_bytes = 65536");
        let mut c = TcpStream::connect(gw.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let body = got.len() - got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4;
        assert_eq!(body, 1 << 20, "stall={stall}: the bytes sent, then the close");
        // A stall ends at response_timeout (1 s), not at the upstream's leisure.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "stall={stall}: {:?}",
            started.elapsed()
        );
        assert!(
            spliced(admin) > 0,
            "stall={stall}: the body went through the splice path"
        );
    }
}

#[test]
fn a_client_that_stops_reading_is_dropped_at_send_timeout() {
    let big = pattern(64 << 20);
    let backend = Backend::start(move |r| match r.target.as_str() {
        "/small" => Reply::ok(b"small".to_vec()),
        _ => Reply::ok(big.clone()),
    });
    let (gw, admin) = gateway(
        &backend.url(),
        "splice_min_bytes = 65536\n[limits]\nsend_timeout = \"1s\"",
    );
    let mut c = TcpStream::connect(gw.addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    // Read a little, then nothing for 2 s: the gateway's splice into this socket
    // stalls, and its send timeout (1 s) ends the connection.
    let mut first = [0u8; 4096];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the connection was closed"
    );
    assert!(
        rest.len() + first.len() < 64 << 20,
        "cut short, not delivered whole"
    );
    assert!(spliced(admin) > 0);
    // And the gateway serves on.
    assert_eq!(Client::connect(gw.addr).get("/small").body, b"small");
}
