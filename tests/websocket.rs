//! WebSocket and other upgrades through the real binary (issue 13), against a
//! WebSocket server nobody here wrote — Python's `websockets` library from PyPI
//! (`tests/websocket_support/server.py`) — with the `tungstenite` crate as the
//! client. The upgrade's framing in raw bytes is in `tests/upgrades.rs`.
//!
//! `.ci/run` installs `websockets` into the venv and sets `RINGWAY_PYTHON`.
//! Without it the tests that need the server say so and pass, except in CI
//! (`CI=true`), where a missing library fails them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]
mod common;
mod tls_support;
mod websocket_support;

use common::Gateway;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;
use websocket_support::*;

// ---------------------------------------------------------------------------------
// WebSocket, end to end

#[test]
fn echo_of_text_binary_and_1_mib_messages_ping_pong_and_close_codes() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let (gw, admin) = gateway(&server.url(), "", "");
    let mut ws = connect(gw.addr, "/echo");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("hello"));
    let big = bytes(1 << 20, 7);
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(next_data(&mut ws), Message::binary(big));
    // A ping is answered by the server's pong, payload and all.
    ws.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        m => panic!("expected the pong, got {m:?}"),
    }
    close(ws);
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /echo 1000")
    );

    // The server's close code reaches the client.
    let mut ws = connect(gw.addr, "/close");
    ws.send(Message::text("x")).unwrap();
    match ws.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::from(4001));
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected a close frame 4001, got {other:?}"),
    }
    while ws.read().is_ok() {}
    drop(ws);
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /close 4001")
    );

    assert_eq!(
        wait_metric(admin, "ringway_tunnels_total", &["end=\"closed\""], 2),
        2
    );
    assert_eq!(metric(admin, "ringway_tunnels_open", &[]), 0);
    assert!(metric(admin, "ringway_tunnel_bytes_total", &["direction=\"in\""]) > 1 << 20);
    assert!(metric(admin, "ringway_tunnel_bytes_total", &["direction=\"out\""]) > 1 << 20);
    // One access log line per tunnel, written when it ended.
    let line = gw
        .stdout_line("{", Duration::from_secs(3))
        .expect("an access log line");
    assert!(line.contains("\"status\":101"), "{line}");
    assert!(line.contains("\"tunnel_end\":\"closed\""), "{line}");
    let bytes_in: u64 = line
        .split("\"tunnel_bytes_in\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .expect("tunnel_bytes_in");
    assert!(bytes_in > 1 << 20, "{line}");
}

#[test]
fn server_pings_are_answered_through_the_tunnel() {
    // The server pings every 300 ms and closes (1011) a peer whose pong is 600 ms
    // late: the connection staying up for 1.5 s is the pongs getting back.
    let Some(server) = WsServer::start(0.3) else {
        return;
    };
    let (gw, _admin) = gateway(&server.url(), "", "");
    let mut ws = connect(gw.addr, "/echo");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while Instant::now() < until {
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(m) => panic!("unexpected {m:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the tunnel broke: {e}"),
        }
        let _ = ws.flush();
    }
    assert!(pings >= 3, "{pings} pings in 1.5 s");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("still here"));
    close(ws);
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /echo 1000")
    );
}

#[test]
fn a_client_that_vanishes_ends_the_tunnel() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let (gw, admin) = gateway(&server.url(), "", "");
    let baseline = gw.open_sockets();
    let mut ws = connect(gw.addr, "/echo");
    ws.send(Message::text("one")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("one"));
    assert_eq!(metric(admin, "ringway_tunnels_open", &[]), 1);
    // Gone without a close frame.
    ws.get_ref().shutdown(Shutdown::Both).unwrap();
    drop(ws);
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /echo 1006")
    );
    assert_eq!(wait_metric(admin, "ringway_tunnels_open", &[], 0), 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while gw.open_sockets() > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        gw.open_sockets() <= baseline,
        "a descriptor of the tunnel is left open"
    );
}

#[test]
fn two_hundred_concurrent_tunnels() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let (gw, admin) = gateway(&server.url(), "", "");
    let addr = gw.addr;
    let clients: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let mut ws = connect(addr, &format!("/echo/{i}"));
                for j in 0..10u64 {
                    let m = bytes(1 + (i as usize * 97 + j as usize * 1009) % 8192, i * 100 + j);
                    ws.send(Message::binary(m.clone())).unwrap();
                    assert_eq!(next_data(&mut ws), Message::binary(m));
                }
                close(ws);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    assert_eq!(
        wait_metric(admin, "ringway_tunnels_total", &["end=\"closed\""], 200),
        200
    );
    assert_eq!(metric(admin, "ringway_tunnels_open", &[]), 0);
}

#[test]
fn an_upstream_refusing_the_upgrade_is_answered_as_it_refused() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let (gw, admin) = gateway(&server.url(), "", "");
    let stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://{}/refuse", gw.addr);
    match tungstenite::client(url.as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status(), 403);
            let body = resp.body().as_deref().unwrap_or_default();
            assert_eq!(body, b"refused by the server\n");
        }
        Err(e) => panic!("expected a 403, got {e}"),
        Ok(_) => panic!("expected a 403, got a WebSocket"),
    }
    assert_eq!(metric(admin, "ringway_tunnels_total", &[]), 0);
    assert_eq!(metric(admin, "ringway_tunnels_open", &[]), 0);
}

#[test]
fn wss_through_a_tls_listener() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let dir = tls_support::temp_dir("wss");
    let pki = tls_support::three_certs(&dir);
    let (_gw, tls_addr) = tls_support::start(&dir, &tls_support::listener_config(&pki, "", &server.url()));
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_file_iter(pki.path("edge-ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("api.example.com").unwrap();
    let tls = rustls::ClientConnection::new(config.into(), name).unwrap();
    let tcp = TcpStream::connect(tls_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let stream = rustls::StreamOwned::new(tls, tcp);
    let (mut ws, resp) = tungstenite::client("wss://api.example.com/echo", stream).expect("wss handshake");
    assert_eq!(resp.status(), 101);
    let big = bytes(300_000, 3);
    for m in [Message::text("over tls"), Message::binary(big)] {
        ws.send(m.clone()).unwrap();
        loop {
            match ws.read().unwrap() {
                Message::Ping(_) | Message::Pong(_) => {}
                got => {
                    assert_eq!(got, m);
                    break;
                }
            }
        }
    }
    close(ws);
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /echo 1000")
    );
}

#[test]
fn an_idle_tunnel_is_closed_after_upgrade_idle_timeout() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let (gw, admin) = gateway(&server.url(), "upgrade_idle_timeout = \"1s\"", "");
    let mut ws = connect(gw.addr, "/echo");
    // Traffic keeps it open past the timeout…
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        ws.send(Message::text("tick")).unwrap();
        assert_eq!(next_data(&mut ws), Message::text("tick"));
    }
    // …and silence closes it.
    let quiet = Instant::now();
    let err = loop {
        match ws.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(m) => panic!("unexpected {m:?}"),
            Err(e) => break e,
        }
    };
    let after = quiet.elapsed();
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_secs(4),
        "closed after {after:?}: {err}"
    );
    assert_eq!(
        wait_metric(admin, "ringway_tunnels_total", &["end=\"idle_timeout\""], 1),
        1
    );
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /echo 1006")
    );
}

#[test]
fn drain_waits_for_tunnels_up_to_drain_timeout_then_closes_them() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let (mut gw, _admin) = gateway(&server.url(), "", "");
    let mut ws = connect(gw.addr, "/echo");
    let term = Instant::now();
    gw.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    // Still relayed while the drain waits…
    ws.send(Message::text("during drain")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("during drain"));
    // …and closed at drain_timeout (3 s), the process exiting cleanly.
    while ws.read().is_ok() {}
    let closed = term.elapsed();
    assert!(
        closed >= Duration::from_millis(2500) && closed < Duration::from_secs(6),
        "{closed:?}"
    );
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0));
    // The tunnel was ended, and logged, by the drain.
    let line = gw
        .stdout_line("{", Duration::from_secs(1))
        .expect("the tunnel's log line");
    assert!(line.contains("\"tunnel_end\":\"drained\""), "{line}");
}

#[test]
fn auth_applies_to_the_upgrade_request() {
    let Some(server) = WsServer::start(0.0) else {
        return;
    };
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
shards = 1
[[access.subscription_keys]]
id = "app"
key = "k-123"
groups = ["it"]
[endpoints]
ws = "{}"
[[groups]]
name = "it"
auth = "subscription_key"
[[groups.routes]]
name = "ws"
path = {{ regex = "/(.*)" }}
to = "{{#endpoints['ws']}}/{{#group[0]}}"
"#,
        server.url()
    ));
    let stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match tungstenite::client(format!("ws://{}/echo", gw.addr).as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/echo", gw.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("jdcloud-apim-subscription-key", "k-123".parse().unwrap());
    let stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut ws, _) = tungstenite::client(req, stream).expect("with the key");
    ws.send(Message::text("authorized")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("authorized"));
    close(ws);
    // The refused upgrade never reached the server: one connection ended.
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /echo 1000")
    );
    assert_eq!(server.next_end(Duration::from_millis(300)), None);
}

#[test]
fn wss_to_an_https_upstream() {
    // TLS on the upstream side: the tunnel reads and writes through rustls there.
    let dir = tls_support::temp_dir("ws-upstream");
    let pki = tls_support::Pki::new(&dir, "up");
    pki.leaf("ws", "ws", &["ws.test"]);
    let Some(server) = WsServer::start_with(0.0, &[&pki.path("ws.pem"), &pki.path("ws.key")]) else {
        return;
    };
    let ca = pki.path("up-ca.pem");
    // The endpoint with its TLS settings: a table, not a URL string.
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [endpoints]\nws = {{ url = \"https://127.0.0.1:{}\", sni = \"ws.test\", ca = \"{ca}\" }}\n\
         [[groups]]\nname = \"it\"\n[[groups.routes]]\nname = \"ws\"\npath = {{ regex = \"/(.*)\" }}\n\
         to = \"{{#endpoints['ws']}}/{{#group[0]}}\"\n",
        server.port
    );
    let gw = Gateway::start(&toml);
    let admin = tls_support::admin_addr(&gw);
    let mut ws = connect(gw.addr, "/echo");
    let big = bytes(500_000, 11);
    for m in [Message::text("to tls"), Message::binary(big)] {
        ws.send(m.clone()).unwrap();
        assert_eq!(next_data(&mut ws), m);
    }
    close(ws);
    assert_eq!(
        server.next_end(Duration::from_secs(3)).as_deref(),
        Some("ended /echo 1000")
    );
    // The upstream's close (with or without close_notify) is a clean end.
    assert_eq!(
        wait_metric(admin, "ringway_tunnels_total", &["end=\"closed\""], 1),
        1
    );
}
