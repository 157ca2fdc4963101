//! Every request the gateway must refuse, as raw bytes: the status, and that the
//! connection is closed after it. Limits in this file: `max_header_bytes = 4096`,
//! `max_headers = 10`, `client_header_timeout = "300ms"`.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{admin_metrics, assert_within, start_with_admin, Backend, Client, Config, Gateway};
use std::time::{Duration, Instant};

/// An echo backend behind `/`, the mock `/mock`, and the small limits.
fn gateway(b: &Backend) -> Gateway {
    Config::new()
        .limits("max_header_bytes = 4096")
        .limits("max_headers = 10")
        .limits("client_header_timeout = \"300ms\"")
        .endpoint("b", &b.url())
        .mock("mock", "/mock", 200, "mocked")
        .route("name = \"all\"\npath = { regex = \"/(.*)\" }\nto = \"{#endpoints['b']}/{#group[0]}\"")
        .start()
}

/// Sends `raw` on a new connection: the answer is `status` with `connection: close`,
/// the connection is closed after it, and nothing reached the backend.
fn assert_rejected(raw: &[u8], status: u16) {
    let b = Backend::echo("b");
    let gw = gateway(&b);
    let mut c = gw.client();
    c.send(raw);
    let r = c
        .try_response(false)
        .unwrap_or_else(|e| panic!("no response to {:?}: {e}", String::from_utf8_lossy(raw)));
    assert_eq!(r.status, status, "{:?} → {r:?}", String::from_utf8_lossy(raw));
    assert!(r.closes(), "no connection: close in {}", r.head.raw);
    assert!(r.text().contains("request-id: "), "{:?}", r.text());
    assert!(c.is_closed(), "connection left open after {status}");
    assert!(b.requests().is_empty(), "forwarded: {:?}", b.requests());
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    assert_rejected(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn transfer_encoding_with_content_length_after_it_is_400() {
    assert_rejected(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn differing_content_lengths_are_400() {
    assert_rejected(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    );
}

#[test]
fn differing_content_length_list_is_400() {
    assert_rejected(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
    );
}

#[test]
fn invalid_content_length_is_400() {
    for cl in ["abc", "-1", "+5", "0x5", "5 5", "", "99999999999999999999999"] {
        assert_rejected(
            format!("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: {cl}\r\n\r\nhello").as_bytes(),
            400,
        );
    }
}

#[test]
fn chunked_not_last_transfer_coding_is_400() {
    assert_rejected(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn unknown_transfer_coding_is_501() {
    assert_rejected(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: foo\r\n\r\n",
        501,
    );
}

#[test]
fn obs_fold_is_400() {
    assert_rejected(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n", 400);
}

#[test]
fn whitespace_before_colon_is_400() {
    assert_rejected(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Space : a\r\n\r\n", 400);
    assert_rejected(b"GET /x HTTP/1.1\r\nHost : h\r\n\r\n", 400);
}

#[test]
fn invalid_header_bytes_are_400() {
    assert_rejected(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Nul: a\x00b\r\n\r\n", 400);
    assert_rejected(b"GET /x HTTP/1.1\r\nHost: h\r\nX(bad): a\r\n\r\n", 400);
}

#[test]
fn missing_host_on_http11_is_400() {
    assert_rejected(b"GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n", 400);
}

#[test]
fn two_host_headers_are_400() {
    assert_rejected(b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

#[test]
fn head_larger_than_max_header_bytes_is_431() {
    let big = "v".repeat(5000);
    assert_rejected(
        format!("GET /x HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        431,
    );
}

#[test]
fn unfinished_head_larger_than_max_header_bytes_is_431() {
    // No end of head in sight: the limit applies before the head is complete.
    let big = "v".repeat(5000);
    assert_rejected(
        format!("GET /x HTTP/1.1\r\nHost: h\r\nX-Big: {big}").as_bytes(),
        431,
    );
}

#[test]
fn more_than_max_headers_is_431() {
    let mut raw = String::from("GET /x HTTP/1.1\r\nHost: h\r\n");
    for i in 0..10 {
        raw += &format!("X-{i}: {i}\r\n");
    }
    raw += "\r\n";
    assert_rejected(raw.as_bytes(), 431);
}

#[test]
fn exactly_max_headers_is_accepted() {
    let b = Backend::echo("b");
    let gw = gateway(&b);
    let mut raw = String::from("GET /x HTTP/1.1\r\nHost: h\r\n");
    for i in 0..9 {
        raw += &format!("X-{i}: {i}\r\n");
    }
    raw += "\r\n";
    let mut c = gw.client();
    c.send(raw.as_bytes());
    assert_eq!(c.response().status, 200);
}

#[test]
fn half_sent_head_is_408_after_client_header_timeout() {
    let b = Backend::echo("b");
    let gw = gateway(&b);
    let mut c = gw.client();
    let t = Instant::now();
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n");
    let r = c.response();
    assert_within(
        "408",
        t.elapsed(),
        Duration::from_millis(250),
        Duration::from_millis(1000),
    );
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.closes());
}

#[test]
fn connection_is_closed_after_408() {
    let b = Backend::echo("b");
    let gw = gateway(&b);
    let mut c = gw.client();
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n");
    assert_eq!(c.response().status, 408);
    assert!(c.is_closed(), "connection left open after 408");
}

#[test]
fn idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let b = Backend::echo("b");
    let gw = Config::new()
        .limits("keepalive_timeout = \"300ms\"")
        .mock("mock", "/mock", 200, "mocked")
        .start();
    let mut c = gw.client();
    assert_eq!(c.get("/mock").status, 200);
    let t = Instant::now();
    assert!(
        c.is_closed(),
        "idle connection still open after {:?}",
        t.elapsed()
    );
    assert_within(
        "keep-alive close",
        t.elapsed(),
        Duration::from_millis(250),
        Duration::from_millis(1500),
    );
    drop(b);
}

#[test]
fn head_trickled_past_client_header_timeout_is_408() {
    // Bytes keep arriving, but the head as a whole is late.
    let b = Backend::echo("b");
    let gw = gateway(&b);
    let mut c = gw.client();
    let t = Instant::now();
    for piece in [
        "GET /x",
        " HTTP/1.1\r\n",
        "Host: h\r\n",
        "X-A: 1\r\n",
        "X-B: 2\r\n",
    ] {
        // The gateway may answer and close before the last piece; keep going.
        let _ = std::io::Write::write_all(&mut c.wire.stream, piece.as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = c.response();
    assert_eq!(r.status, 408, "{r:?}");
    assert_within(
        "408",
        t.elapsed(),
        Duration::from_millis(250),
        Duration::from_millis(1000),
    );
}

/// A bad chunked body: no 2xx, and the connection is closed (a 400 first is fine).
fn assert_bad_chunked_body_closes(path: &str, body: &[u8]) {
    let b = Backend::echo("b");
    let gw = gateway(&b);
    let mut c: Client = gw.client();
    let mut raw =
        format!("POST {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    raw.extend_from_slice(body);
    raw.extend_from_slice(b"GET /mock HTTP/1.1\r\nHost: h\r\n\r\n");
    c.send(&raw);
    if let Ok(r) = c.try_response(false) {
        assert!(!(200..300).contains(&r.status), "bad chunked body → {r:?}");
        assert!(r.closes(), "{}", r.head.raw);
    }
    assert!(c.is_closed(), "connection open after a bad chunked body");
}

#[test]
fn bad_chunk_size_closes_the_connection_when_proxied() {
    assert_bad_chunked_body_closes("/x", b"zz\r\nhello\r\n0\r\n\r\n");
}

#[test]
fn overflowing_chunk_size_closes_the_connection_when_proxied() {
    assert_bad_chunked_body_closes("/x", b"fffffffffffffffffff1\r\nhello\r\n0\r\n\r\n");
}

#[test]
fn missing_crlf_after_chunk_data_closes_the_connection_when_proxied() {
    assert_bad_chunked_body_closes("/x", b"5\r\nhelloXX0\r\n\r\n");
}

#[test]
fn bad_chunk_size_to_a_mock_route_is_not_answered_2xx() {
    assert_bad_chunked_body_closes("/mock", b"zz\r\nhello\r\n0\r\n\r\n");
}

#[test]
fn garbage_request_line_is_400() {
    assert_rejected(b"NOT HTTP AT ALL\r\n\r\n", 400);
}

#[test]
fn rejection_after_a_good_keep_alive_request_still_closes() {
    let b = Backend::echo("b");
    let gw = gateway(&b);
    let mut c = gw.client();
    assert_eq!(c.get("/mock").status, 200);
    c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 400);
    assert!(c.is_closed());
}

/// The value of the `ringway_parked_connections` gauge.
fn parked(admin: std::net::SocketAddr) -> Option<u64> {
    admin_metrics(admin)
        .lines()
        .find_map(|l| l.strip_prefix("ringway_parked_connections "))
        .and_then(|v| v.trim().parse().ok())
}

/// A keep-alive client that stays quiet for longer than a second has its connection
/// parked (`src/downstream/mod.rs`, `PARK_AFTER`): its next request, whose head is
/// larger than the parked read's 64 bytes and arrives in two pieces, is served as any
/// other, and so is the one after another quiet spell.
#[test]
fn parked_keep_alive_connection_serves_its_next_requests() {
    let b = Backend::echo("b");
    let (gw, admin) = start_with_admin(
        &Config::new()
            .limits("keepalive_timeout = \"10s\"")
            .endpoint("b", &b.url())
            .route("name = \"all\"\npath = { regex = \"/(.*)\" }\nto = \"{#endpoints['b']}/{#group[0]}\""),
    );
    let mut c = gw.client();
    assert_eq!(c.get("/first").status, 200);
    assert_eq!(parked(admin), Some(0), "parked at once");
    let filler = "v".repeat(200);
    for n in 0..2 {
        std::thread::sleep(Duration::from_millis(1600));
        assert_eq!(parked(admin), Some(1), "not parked after 1.6 s idle");
        c.send(format!("GET /after-park-{n} HTTP/1.1\r\nHost: h\r\nX-Filler: ").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
        c.send(format!("{filler}\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "{r:?}");
        assert!(!r.closes(), "closed after a parked request: {}", r.head.raw);
        assert_eq!(parked(admin), Some(0), "still counted as parked");
    }
    let seen = b.requests();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/first", "/after-park-0", "/after-park-1"]);
    assert_eq!(seen[2].head.header("x-filler"), Some(filler.as_str()));
}

/// A parked connection still ends at its keep-alive deadline: the sweep that expires
/// parked reads runs once a second, so it closes within a second after it.
#[test]
fn parked_connection_is_closed_after_keepalive_timeout() {
    let (gw, admin) = start_with_admin(
        &Config::new()
            .limits("keepalive_timeout = \"1500ms\"")
            .mock("mock", "/mock", 200, "mocked"),
    );
    let mut c = gw.client();
    assert_eq!(c.get("/mock").status, 200);
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(parked(admin), Some(1), "not parked after 1.2 s idle");
    c.set_read_timeout(Duration::from_secs(5));
    let mut byte = [0u8; 1];
    let n = std::io::Read::read(&mut c.wire.stream, &mut byte);
    assert!(
        matches!(n, Ok(0)),
        "parked connection not closed: {n:?} after {:?}",
        t.elapsed()
    );
    assert_within(
        "parked keep-alive close",
        t.elapsed(),
        Duration::from_millis(1400),
        Duration::from_millis(3500),
    );
    assert_eq!(parked(admin), Some(0));
}
