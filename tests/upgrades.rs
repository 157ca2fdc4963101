//! Upgrades in raw bytes (issue 13), through the real binary: where the framing of
//! the upgrade itself is the point — bytes held behind the head until the 101,
//! half-close, refused upgrades, the checks on a 101, an upgrade the route does
//! not allow, the half-closed timeout. The WebSocket end-to-end tests are in
//! `tests/websocket.rs`.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod tls_support;
mod websocket_support;

use common::{Gateway, Scripted};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use websocket_support::{gateway, wait_metric};

const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn raw_client(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads a head (through the blank line) and returns it.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn read_to_end(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A backend that reads one head and hands the connection to `then`.
fn scripted(then: impl Fn(TcpStream, String) + Send + Sync + 'static) -> Scripted {
    Scripted::custom(move |mut s, _| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = read_head(&mut s);
        then(s, head);
    })
}

#[test]
fn no_client_byte_passes_the_head_before_the_101_and_then_in_order() {
    let backend = scripted(|mut s, head| {
        assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
            "{head}"
        );
        // The bytes the client sent behind its head are held back…
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 16];
        assert!(s.read(&mut b).is_err(), "a byte arrived before the 101");
        s.write_all(SWITCHED).unwrap();
        // …and come first once the upstream has switched.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut early = [0u8; 5];
        s.read_exact(&mut early).unwrap();
        assert_eq!(&early, b"EARLY");
        s.write_all(b"LATE").unwrap();
    });
    let (gw, _admin) = gateway(&backend.url(), "", "");
    let mut c = raw_client(&gw);
    c.write_all(format!("{UPGRADE}\r\nEARLY").as_bytes()).unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nconnection: upgrade\r\nupgrade: websocket\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(read_to_end(&mut c), "LATE");
}

#[test]
fn half_close_is_passed_on_and_the_other_direction_goes_on() {
    let backend = scripted(|mut s, _| {
        s.write_all(SWITCHED).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap(); // the client's half-close, passed on
        assert_eq!(got, b"last words");
        s.write_all(b"heard: last words").unwrap();
    });
    let (gw, admin) = gateway(&backend.url(), "", "");
    let mut c = raw_client(&gw);
    c.write_all(format!("{UPGRADE}\r\n").as_bytes()).unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 101 "));
    c.write_all(b"last words").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut c), "heard: last words");
    assert_eq!(
        wait_metric(admin, "ringway_tunnels_total", &["end=\"closed\""], 1),
        1
    );
}

#[test]
fn an_upgrade_request_with_a_body_is_refused() {
    let backend = scripted(|_, _| {});
    let (gw, _admin) = gateway(&backend.url(), "", "");
    for framing in [
        "Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut c = raw_client(&gw);
        c.write_all(format!("{UPGRADE}{framing}").as_bytes()).unwrap();
        let answer = read_to_end(&mut c);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(
            answer.contains("an upgrade request cannot have a body"),
            "{answer}"
        );
        assert!(answer.contains("connection: close"), "{answer}");
    }
    // Nor can a WebSocket upgrade without its key.
    let mut c = raw_client(&gw);
    c.write_all(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    let answer = read_to_end(&mut c);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("needs a Sec-WebSocket-Key"), "{answer}");
    assert_eq!(backend.connections(), 0);
}

#[test]
fn an_empty_content_length_is_no_body() {
    let backend = scripted(|mut s, _| {
        s.write_all(SWITCHED).unwrap();
        s.write_all(b"hi").unwrap();
    });
    let (gw, _admin) = gateway(&backend.url(), "", "");
    let mut c = raw_client(&gw);
    c.write_all(format!("{UPGRADE}Content-Length: 0\r\n\r\n").as_bytes())
        .unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 101 "));
    assert_eq!(read_to_end(&mut c), "hi");
}

#[test]
fn a_101_that_does_not_answer_the_upgrade_is_a_502() {
    for (reply, problem) in [
        (
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
            "has no Sec-WebSocket-Accept",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            "a protocol the request did not ask for",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
            "has no Upgrade field",
        ),
        (
            // A server that did not read the key (the accept of another one).
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\r\n",
            "does not answer the request's Sec-WebSocket-Key",
        ),
    ] {
        let backend = scripted(move |mut s, _| {
            let _ = s.write_all(reply);
        });
        let (gw, _admin) = gateway(&backend.url(), "", "");
        let mut c = raw_client(&gw);
        c.write_all(format!("{UPGRADE}\r\n").as_bytes()).unwrap();
        let head = read_head(&mut c);
        assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
        let body = read_to_end(&mut c);
        assert!(body.contains(problem), "{body}");
    }
}

#[test]
fn an_upgrade_the_route_does_not_allow_goes_as_a_plain_request() {
    // h2c is not allowed by default (nginx#1472): the upstream sees no upgrade, and
    // a 101 it sends anyway is refused.
    let backend = scripted(|mut s, head| {
        assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
        let _ =
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
    });
    let (gw, _admin) = gateway(&backend.url(), "", "");
    let mut c = raw_client(&gw);
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        .unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    assert!(read_to_end(&mut c).contains("switched protocols without being asked to"));

    // A route that lists a protocol forwards that one only, and not WebSocket.
    let backend = scripted(|mut s, head| {
        let lower = head.to_ascii_lowercase();
        let answer: &[u8] = if lower.contains("\r\nupgrade: foo/2\r\n") {
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/2\r\nConnection: Upgrade\r\n\r\n"
        } else {
            assert!(!lower.contains("upgrade"), "{head}");
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain"
        };
        let _ = s.write_all(answer);
        let _ = s.write_all(b"from foo");
    });
    let gw = Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 1\n[endpoints]\nb = \"{}\"\n[[groups]]\nname = \"it\"\n\
         [[groups.routes]]\nname = \"foo\"\npath = {{ prefix = \"/\" }}\nto = \"{{#endpoints['b']}}\"\nupgrade = [\"foo\"]\n",
        backend.url()
    ));
    let mut c = raw_client(&gw);
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket, Foo/2\r\n\r\n")
        .unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("\r\nupgrade: foo/2\r\n"), "{head}");
    assert_eq!(read_to_end(&mut c), "from foo");
    let mut c = raw_client(&gw);
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    let head = read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
}

#[test]
fn a_half_closed_tunnel_ends_after_upgrade_half_closed_timeout() {
    // The client closes its side; the upstream never does and goes quiet.
    let backend = scripted(|mut s, _| {
        s.write_all(SWITCHED).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        std::thread::sleep(Duration::from_secs(5));
    });
    let (gw, admin) = gateway(&backend.url(), "upgrade_half_closed_timeout = \"600ms\"", "");
    let mut c = raw_client(&gw);
    c.write_all(format!("{UPGRADE}\r\n").as_bytes()).unwrap();
    assert!(read_head(&mut c).starts_with("HTTP/1.1 101 "));
    c.shutdown(Shutdown::Write).unwrap();
    let half = Instant::now();
    assert_eq!(read_to_end(&mut c), "");
    let after = half.elapsed();
    assert!(
        after >= Duration::from_millis(400) && after < Duration::from_secs(3),
        "ended {after:?} after the half-close (idle timeout: 1 h)"
    );
    assert_eq!(
        wait_metric(admin, "ringway_tunnels_total", &["end=\"idle_timeout\""], 1),
        1
    );
}
