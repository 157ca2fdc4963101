//! Fixtures of the upgrade tests (`tests/websocket.rs`, `tests/upgrades.rs`): the
//! WebSocket server (`server.py`: Python's `websockets`, from PyPI into the venv),
//! a `tungstenite` client, and the gateway config they run against.

#![allow(dead_code)] // each test file uses a different part

use crate::common::{self, Gateway};
use crate::tls_support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

// ---------------------------------------------------------------------------------
// The WebSocket server and client

/// The WebSocket server (`websockets`, under the venv's python), killed on drop.
pub struct WsServer {
    child: Child,
    pub port: u16,
    /// The server's "ended PATH CODE" lines.
    ended: mpsc::Receiver<String>,
}

impl WsServer {
    /// Starts the server; `ping` is its ping interval in seconds (0: none). `None`
    /// (after saying so) when the library is not installed outside CI.
    pub fn start(ping: f64) -> Option<WsServer> {
        WsServer::start_with(ping, &[])
    }

    /// [`WsServer::start`] with more arguments (a certificate and key: TLS).
    pub fn start_with(ping: f64, args: &[&str]) -> Option<WsServer> {
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next "ended PATH CODE" line, waiting at most `within`.
    pub fn next_end(&self, within: Duration) -> Option<String> {
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
pub fn python() -> Option<PathBuf> {
    common::venv_python("websockets.asyncio.server", "python websockets")
}

/// A WebSocket client connected through the gateway at `addr` to `path`.
pub fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, resp) = tungstenite::client(url.as_str(), stream).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// The gateway in front of `backend`: one shard, an admin port, the access log on
/// stdout, `/` proxied (WebSocket allowed, the default), plus `extra` TOML.
pub fn gateway(backend: &str, upstream: &str, extra: &str) -> (Gateway, SocketAddr) {
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

pub fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> u64 {
    tls_support::metric(admin, name, labels)
}

/// Waits (at most 3 s) for a metric to reach `want`.
pub fn wait_metric(admin: SocketAddr, name: &str, labels: &[&str], want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = tls_support::metric(admin, name, labels);
        if v == want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
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
pub fn close<S: Read + Write>(mut ws: WebSocket<S>) {
    let frame = tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    ws.close(Some(frame)).unwrap();
    while ws.read().is_ok() {}
}

/// The next data message (pings and pongs are skipped).
pub fn next_data(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}
