//! WebSocket and other upgrades through the real binary (issue 13), against a
//! WebSocket server nobody here wrote — Python's `websockets` library from PyPI
//! (`tests/websocket_support/server.py`) — with the `tungstenite` crate as the
//! client, and raw bytes where the framing of the upgrade itself is the point.
//!
//! `.ci/run` installs `websockets` into the venv and sets `RINGWAY_PYTHON`.
//! Without it the tests that need the server say so and pass, except in CI
//! (`CI=true`), where a missing library fails them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod tls_support;

use common::{Gateway, Scripted};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

// ---------------------------------------------------------------------------------
// The WebSocket server and client

/// The WebSocket server (`websockets`, under the venv's python), killed on drop.
struct WsServer {
    child: Child,
    port: u16,
    /// The server's "ended PATH CODE" lines.
    ended: mpsc::Receiver<String>,
}

impl WsServer {
    /// Starts the server; `ping` is its ping interval in seconds (0: none). `None`
    /// (after saying so) when the library is not installed outside CI.
    fn start(ping: f64) -> Option<WsServer> {
        WsServer::start_with(ping, &[])
    }

    /// [`WsServer::start`] with more arguments (a certificate and key: TLS).
    fn start_with(ping: f64, args: &[&str]) -> Option<WsServer> {
        let py = python()?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/websocket_support/server.py");
        let mut child = Command::new(py)
            .arg(script)
            .arg(ping.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the WebSocket server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a listening line").unwrap();
        let port = first
            .strip_prefix("listening ")
            .expect("listening PORT")
            .parse()
            .unwrap();
        let (tx, ended) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Some(WsServer { child, port, ended })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next "ended PATH CODE" line, waiting at most `within`.
    fn next_end(&self, within: Duration) -> Option<String> {
        self.ended.recv_timeout(within).ok()
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A venv python that can import `websockets`, if there is one.
fn python() -> Option<PathBuf> {
    common::venv_python("websockets.asyncio.server", "python websockets")
}

/// A WebSocket client connected through the gateway at `addr` to `path`.
fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, resp) = tungstenite::client(url.as_str(), stream).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// The gateway in front of `backend`: one shard, an admin port, the access log on
/// stdout, `/` proxied (WebSocket allowed, the default), plus `extra` TOML.
fn gateway(backend: &str, upstream: &str, extra: &str) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
shards = 1
drain_timeout = "3s"
[upstream]
connect_timeout = "3s"
response_timeout = "5s"
{upstream}
[admin]
listen = "127.0.0.1:0"
[log]
access = "stdout"
[endpoints]
ws = "{backend}"
{extra}
[[groups]]
name = "it"
[[groups.routes]]
name = "ws"
path = {{ regex = "/(.*)" }}
to = "{{#endpoints['ws']}}/{{#group[0]}}"
"#
    ));
    let admin = tls_support::admin_addr(&gw);
    (gw, admin)
}

fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> u64 {
    tls_support::metric(admin, name, labels)
}

/// Waits (at most 3 s) for a metric to reach `want`.
fn wait_metric(admin: SocketAddr, name: &str, labels: &[&str], want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = tls_support::metric(admin, name, labels);
        if v == want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Closes with 1000 and waits for the server's answer; then the TCP connection is
/// closed, as the client does once the closing handshake is done.
fn close<S: Read + Write>(mut ws: WebSocket<S>) {
    let frame = tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    ws.close(Some(frame)).unwrap();
    while ws.read().is_ok() {}
}

/// The next data message (pings and pongs are skipped).
fn next_data(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

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

// ---------------------------------------------------------------------------------
// The upgrade's framing, in raw bytes

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
