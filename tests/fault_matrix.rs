//! The fault matrix of the hardening issue (issue 9): one gateway, one backend per
//! fault, 50 concurrent clients each. Every client gets the answer its fault calls
//! for within its time bound, and afterwards the gateway's descriptors and memory
//! come back to where they were — nothing leaks on any failure path.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{Backend, Client, Config, Gateway, Reply, Scripted};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const CLIENTS: usize = 50;

/// What a client should see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Status(u16),
    /// The head came, the body was cut short: the connection closes mid-body.
    Truncated,
}

/// Reads one response on `addr` for `path`: its status, or `Truncated`.
fn one(addr: std::net::SocketAddr, path: &str) -> Result<Expect, String> {
    let mut c = Client::connect(addr);
    c.set_read_timeout(Duration::from_secs(10));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    match c.try_response(false) {
        Ok(r) => Ok(Expect::Status(r.status)),
        // The head was read (the error names it), the body was not complete.
        Err(e) if e.contains("(head ") => Ok(Expect::Truncated),
        Err(e) => Err(e),
    }
}

/// The gateway's open descriptors and resident memory (KiB).
fn usage(gw: &Gateway) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", gw.pid())).map_or(0, |d| d.count());
    let rss = std::fs::read_to_string(format!("/proc/{}/status", gw.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

/// Writes `bytes`, then resets the connection (SO_LINGER 0).
fn write_then_reset(mut s: TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
    thread::sleep(Duration::from_millis(20));
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
}

/// Reads a request head, for the scripted backends.
fn read_head(s: &mut TcpStream) -> bool {
    common::read_request(s)
}

#[test]
fn issue9_fault_matrix_answers_within_bounds_and_leaks_nothing() {
    let faults: Vec<(&str, Scripted, Expect, Duration)> = vec![
        (
            "refuses",
            common::refused(),
            Expect::Status(502),
            Duration::from_secs(2),
        ),
        (
            "never answers",
            common::hang(),
            Expect::Status(504),
            Duration::from_secs(4),
        ),
        (
            "resets mid-head",
            Scripted::custom(|mut s, _| {
                if read_head(&mut s) {
                    write_then_reset(s, b"HTTP/1.1 200 OK\r\ncontent-le");
                }
            }),
            Expect::Status(502),
            Duration::from_secs(2),
        ),
        (
            "resets mid-body",
            Scripted::custom(|mut s, _| {
                if read_head(&mut s) {
                    write_then_reset(s, b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial");
                }
            }),
            Expect::Truncated,
            Duration::from_secs(2),
        ),
        (
            "answers garbage",
            common::garbage(),
            Expect::Status(502),
            Duration::from_secs(2),
        ),
        (
            "answers slowly",
            Scripted::custom(|mut s, _| {
                if read_head(&mut s) {
                    thread::sleep(Duration::from_millis(300));
                    let _ =
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                }
            }),
            Expect::Status(200),
            Duration::from_secs(3),
        ),
        (
            "closes after the head",
            Scripted::custom(|mut s, _| {
                if read_head(&mut s) {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n");
                }
            }),
            Expect::Truncated,
            Duration::from_secs(2),
        ),
    ];
    // A backend that closes its idle keep-alive connections after 100 ms.
    let idle_closer = Backend::start_idle(Duration::from_millis(100), |_| Reply::ok(b"fine".to_vec()));

    let mut config = Config::new()
        .upstream("connect_timeout = \"1s\"")
        .upstream("response_timeout = \"1s\"");
    for (i, (_, b, _, _)) in faults.iter().enumerate() {
        config = config.endpoint(&format!("f{i}"), &b.url()).route(&format!(
            "name = \"f{i}\"\npath = {{ prefix = \"/f{i}\" }}\nto = \"{{#endpoints['f{i}']}}/x\""
        ));
    }
    config = config
        .endpoint("idle", &idle_closer.url())
        .route("name = \"idle\"\npath = { prefix = \"/idle\" }\nto = \"{#endpoints['idle']}/x\"");
    let gw = config.start();
    let addr = gw.addr;
    let (fds0, rss0) = usage(&gw);

    for (i, (name, _b, expect, bound)) in faults.iter().enumerate() {
        let start = Instant::now();
        let results: Vec<(Result<Expect, String>, Duration)> = (0..CLIENTS)
            .map(|_| {
                let path = format!("/f{i}");
                thread::spawn(move || {
                    let t = Instant::now();
                    (one(addr, &path), t.elapsed())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        for (got, took) in &results {
            assert_eq!(got.as_ref(), Ok(expect), "{name}: {got:?} after {took:?}");
            assert!(took <= bound, "{name}: {took:?} > {bound:?}");
        }
        eprintln!("{name}: {CLIENTS} clients in {:?}", start.elapsed());
    }

    // Pooled connections the backend closes while idle: sequential requests with
    // pauses longer than its idle timeout all succeed, 50 clients at a time.
    for _ in 0..3 {
        let results: Vec<Result<Expect, String>> = (0..CLIENTS)
            .map(|_| thread::spawn(move || one(addr, "/idle")))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        assert!(
            results.iter().all(|r| r == &Ok(Expect::Status(200))),
            "{results:?}"
        );
        thread::sleep(Duration::from_millis(250));
    }

    // Everything is let go: client connections closed, upstream connections closed
    // or dropped from the pool by the sweep (within a second or two).
    let start = Instant::now();
    loop {
        let (fds, rss) = usage(&gw);
        if fds <= fds0 {
            // Buffers the shards keep for reuse are bounded (a few MiB).
            assert!(rss <= rss0 + 32 * 1024, "RSS {rss} KiB, was {rss0} KiB");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{fds} descriptors open, {fds0} before the faults"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /idle HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "still serving: {out}");
}
