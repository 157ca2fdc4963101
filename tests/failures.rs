//! Backend failures: each gives the right status within its timeout, an error body
//! naming the problem and a request id, and leaves the client connection usable.
//! And the stale-pool retry: idempotent requests only.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{
    assert_within, close_after_first, garbage, hang, refused, reset, Backend, Client, Config, Response,
};
use std::time::{Duration, Instant};

/// `/bad/...` → the failing backend at `url`, `/ok` → a healthy echo backend, and the
/// mock `/mock`. Test timeouts: connect 300 ms, response 500 ms.
fn gateway(bad_url: &str, healthy: &Backend) -> common::Gateway {
    Config::new()
        .endpoint("bad", bad_url)
        .endpoint("good", &healthy.url())
        .prefix_to("bad", "/bad", "{#endpoints['bad']}/x")
        .prefix_to("ok", "/ok", "{#endpoints['good']}/ok")
        .mock("mock", "/mock", 200, "mocked")
        .start()
}

/// The error response names `problem` and carries the request id in the body and the
/// `x-request-id` header.
fn assert_error_body(r: &Response, status: u16, problem: &str) {
    assert_eq!(r.status, status, "{r:?}");
    let text = r.text();
    assert!(text.starts_with("ringway: "), "{text:?}");
    assert!(text.contains(problem), "body {text:?} should name {problem:?}");
    let id = r.header("x-request-id").expect("x-request-id header");
    assert!(!id.is_empty());
    assert!(text.contains(&format!("request-id: {id}")), "{text:?} vs id {id}");
}

/// After the failure, the same client connection still serves a proxied and a mock
/// request.
fn assert_connection_still_works(c: &mut Client) {
    let r = c.get("/ok");
    assert_eq!((r.status, r.header("x-target")), (200, Some("/ok")), "{r:?}");
    assert_eq!(c.get("/mock").text(), "mocked");
}

fn timed_get(c: &mut Client, path: &str) -> (Response, Duration) {
    let t = Instant::now();
    let r = c.get(path);
    (r, t.elapsed())
}

#[test]
fn refused_backend_is_502_and_the_client_connection_survives() {
    let good = Backend::echo("good");
    let bad = refused();
    let gw = gateway(&bad.url(), &good);
    let mut c = gw.client();
    let (r, took) = timed_get(&mut c, "/bad");
    assert_error_body(&r, 502, "refused");
    assert!(!r.closes(), "{}", r.head.raw);
    assert_within("refused", took, Duration::ZERO, Duration::from_millis(300));
    assert_connection_still_works(&mut c);
}

#[test]
fn hanging_backend_is_504_after_response_timeout_and_the_client_connection_survives() {
    let good = Backend::echo("good");
    let bad = hang();
    let gw = gateway(&bad.url(), &good);
    let mut c = gw.client();
    let (r, took) = timed_get(&mut c, "/bad");
    assert_error_body(&r, 504, "did not respond in time");
    assert_within(
        "hang",
        took,
        Duration::from_millis(450),
        Duration::from_millis(1500),
    );
    assert_connection_still_works(&mut c);
}

#[test]
fn resetting_backend_is_502_and_the_client_connection_survives() {
    let good = Backend::echo("good");
    let bad = reset();
    let gw = gateway(&bad.url(), &good);
    let mut c = gw.client();
    let (r, took) = timed_get(&mut c, "/bad");
    assert_error_body(&r, 502, "upstream");
    assert_within("reset", took, Duration::ZERO, Duration::from_millis(1000));
    assert_connection_still_works(&mut c);
}

#[test]
fn garbage_response_head_is_502_and_the_client_connection_survives() {
    let good = Backend::echo("good");
    let bad = garbage();
    let gw = gateway(&bad.url(), &good);
    let mut c = gw.client();
    let (r, took) = timed_get(&mut c, "/bad");
    assert_error_body(&r, 502, "invalid");
    assert_within("garbage", took, Duration::ZERO, Duration::from_millis(1000));
    assert_connection_still_works(&mut c);
}

#[test]
fn connect_timeout_is_504_within_connect_timeout() {
    let good = Backend::echo("good");
    let (bad, fillers) = common::full_backlog();
    let gw = gateway(&bad.url(), &good);
    let mut c = gw.client();
    // A request that works first, so the client connection (and a pooled upstream
    // one) are open before counting.
    assert_connection_still_works(&mut c);
    let sockets_before = gw.open_sockets();
    let (r, took) = timed_get(&mut c, "/bad");
    // The timed-out connect is cancelled, not left in flight holding its socket
    // until the kernel gives up on the SYN (minutes later).
    let settle = std::time::Instant::now();
    while gw.open_sockets() > sockets_before && settle.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        gw.open_sockets(),
        sockets_before,
        "the timed-out upstream socket is still open"
    );
    drop(fillers);
    assert_error_body(&r, 504, "connect timed out");
    assert_within(
        "connect timeout",
        took,
        Duration::from_millis(250),
        Duration::from_millis(1500),
    );
    assert_connection_still_works(&mut c);
}

#[test]
fn refused_backend_with_a_request_body_is_502_and_the_body_is_skipped() {
    let good = Backend::echo("good");
    let bad = refused();
    let gw = gateway(&bad.url(), &good);
    let mut c = gw.client();
    c.send(b"POST /bad HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789");
    let r = c.response();
    assert_error_body(&r, 502, "refused");
    // The body was consumed, not taken for the next request.
    assert_connection_still_works(&mut c);
}

#[test]
fn backend_closing_mid_response_body_closes_the_client_connection() {
    let bad = common::Scripted::custom(|mut s, _| {
        if !common::read_request(&mut s) {
            return;
        }
        let _ = std::io::Write::write_all(&mut s, b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part");
    });
    let good = Backend::echo("good");
    let gw = gateway(&bad.url(), &good);
    let mut c = gw.client();
    c.send(b"GET /bad HTTP/1.1\r\nHost: h\r\n\r\n");
    // The head was relayed already: the client must see a truncated body and a close,
    // never a second response glued on.
    let r = c.try_response(false);
    assert!(r.is_err(), "a truncated body must not read as complete: {r:?}");
    c.wire.buf.clear();
    assert!(c.is_closed());
}

// ---------------------------------------------------------------------------------
// Stale pooled connections

#[test]
fn stale_pooled_connection_get_is_retried_on_a_fresh_connection() {
    let bad = close_after_first();
    let good = Backend::echo("good");
    let gw = gateway(&bad.url(), &good);
    let r = gw.client().get("/bad");
    assert_eq!((r.status, r.text().as_str()), (200, "first on connection 0"));
    // Let the backend's close reach the pooled connection.
    std::thread::sleep(Duration::from_millis(150));
    let r = gw.client().get("/bad");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "first on connection 1"),
        "{r:?}"
    );
    assert_eq!(bad.connections(), 2);
}

/// The retry itself: a GET on a pooled connection that looks open but is closed once
/// the request arrives (no response byte) goes again on a fresh connection.
#[test]
fn pooled_connection_that_fails_before_any_response_byte_retries_a_get() {
    let bad = common::drop_second();
    let good = Backend::echo("good");
    let gw = gateway(&bad.url(), &good);
    assert_eq!(gw.client().get("/bad").status, 200);
    std::thread::sleep(Duration::from_millis(150));
    let r = gw.client().get("/bad");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "first on connection 1"),
        "{r:?}"
    );
    assert_eq!(bad.connections(), 2);
}

/// A POST whose body reached the upstream is never sent again, even on a pooled
/// connection. (Until issue 9 this test used a pooled connection the backend had
/// already closed; such a connection is now found closed before it is handed out, so
/// the backend here closes only once the POST has arrived.)
#[test]
fn pooled_connection_that_fails_after_a_post_body_is_502_and_never_retried() {
    let bad = common::drop_second();
    let good = Backend::echo("good");
    let gw = gateway(&bad.url(), &good);
    let r = gw.client().get("/bad");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(150));
    let mut c = gw.client();
    c.send(b"POST /bad HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody");
    let r = c.response();
    assert_error_body(&r, 502, "upstream");
    assert_eq!(bad.connections(), 1, "the POST was retried on a new connection");
    assert_connection_still_works(&mut c);
}
