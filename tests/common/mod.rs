//! Fixtures for the gateway's integration tests: the real `ringway` binary on port 0,
//! backends on port 0 written with std (a recording keep-alive HTTP/1.1 server and raw
//! scripted ones), and a raw client that reads one response at a time.
//!
//! Every wait is bounded: a test that hangs fails with a message instead.

#![allow(dead_code)] // each test file uses a different part of the fixtures

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the gateway may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read timeout of the raw client.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout of backend connections (idle pooled connections wait this long).
const BACKEND_READ_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// The gateway

/// A running `ringway` process, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    file: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Stdout lines after the first listening line.
    stdout: mpsc::Receiver<String>,
}

fn unique_dir(prefix: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Gateway {
    /// Writes `toml` to a temp file and runs `ringway -c FILE`, waiting (at most 10 s)
    /// for `ringway listening on ADDR`. The config should listen on `127.0.0.1:0`.
    pub fn start(toml: &str) -> Gateway {
        let dir = unique_dir("ringway-it");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let file = dir.join("ringway.toml");
        std::fs::write(&file, toml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
            .arg("-c")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let mut err = child.stderr.take().expect("stderr");
            let sink = stderr.clone();
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        {
            let out = child.stdout.take().expect("stdout");
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    // Once nobody listens, keep draining so the child never blocks.
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut gw = Gateway {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            dir,
            file,
            stderr,
            stdout: rx,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match gw.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("ringway listening on ") {
                        gw.addr = a.trim().parse().expect("listening address");
                        return gw;
                    }
                }
                Err(_) => {
                    let status = gw.child.try_wait().ok().flatten();
                    thread::sleep(Duration::from_millis(50));
                    panic!(
                        "ringway did not start within {START_TIMEOUT:?} (exit: {status:?})\nconfig:\n{toml}\nstderr:\n{}",
                        gw.stderr()
                    );
                }
            }
        }
    }

    /// What the gateway wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many file descriptors the gateway holds open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    /// A new raw client connected to the gateway.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The config file it was started with.
    pub fn config_file(&self) -> &std::path::Path {
        &self.file
    }

    /// Sends signal `sig` (`"HUP"`, `"USR1"`, …) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// The rest of the next stdout line that starts with `prefix`, skipping others;
    /// None if none comes within `within`.
    pub fn stdout_line(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).ok()?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.to_string());
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test config, built section by section. `listen = "127.0.0.1:0"` and one shard
/// (so that every client connection shares one upstream pool) are always set;
/// timeouts are short so failures show quickly.
#[derive(Clone, Debug)]
pub struct Config {
    server: Vec<String>,
    limits: Vec<String>,
    upstream: Vec<String>,
    endpoints: Vec<String>,
    groups: Vec<String>,
    routes: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    pub fn new() -> Config {
        Config {
            server: vec![],
            limits: vec![],
            upstream: vec![],
            endpoints: vec![],
            groups: vec![],
            routes: vec![],
        }
    }

    /// A `key = value` line in `[server]`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// A `key = value` line in `[limits]`.
    pub fn limits(mut self, line: &str) -> Self {
        self.limits.push(line.to_string());
        self
    }

    /// A `key = value` line in `[upstream]` (overrides the short defaults).
    pub fn upstream(mut self, line: &str) -> Self {
        self.upstream.push(line.to_string());
        self
    }

    /// `[endpoints] name = "url"`.
    pub fn endpoint(mut self, name: &str, url: &str) -> Self {
        self.endpoints.push(format!("{name} = \"{url}\""));
        self
    }

    /// `[endpoint_groups.name]` with `lb = "round_robin"`.
    pub fn endpoint_group(mut self, name: &str, urls: &[String]) -> Self {
        let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
        self.groups.push(format!(
            "[endpoint_groups.{name}]\nendpoints = [{}]\nlb = \"round_robin\"\n",
            list.join(", ")
        ));
        self
    }

    /// A route of the single group, as the lines of its `[[groups.routes]]` table.
    pub fn route(mut self, lines: &str) -> Self {
        self.routes.push(lines.to_string());
        self
    }

    /// A proxy route: `path = { prefix = PREFIX }`, `to = TO`.
    pub fn prefix_to(self, name: &str, prefix: &str, to: &str) -> Self {
        self.route(&format!(
            "name = \"{name}\"\npath = {{ prefix = \"{prefix}\" }}\nto = \"{to}\""
        ))
    }

    /// A mock route on an exact path: `status`, `body`, and an `x-mock: yes` header.
    pub fn mock(self, name: &str, exact: &str, status: u16, body: &str) -> Self {
        self.route(&format!(
            "name = \"{name}\"\npath = {{ exact = \"{exact}\" }}\nmock = {{ status = {status}, body = \"{body}\", headers = {{ \"x-mock\" = \"yes\" }} }}"
        ))
    }

    pub fn render(&self) -> String {
        let mut s = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\n");
        if !self.server.iter().any(|l| l.trim_start().starts_with("shards")) {
            s += "shards = 1\n";
        }
        for l in &self.server {
            s += &format!("{l}\n");
        }
        s += "\n[limits]\n";
        for l in &self.limits {
            s += &format!("{l}\n");
        }
        s += "\n[upstream]\n";
        for (key, default) in [
            ("connect_timeout", "\"300ms\""),
            ("response_timeout", "\"500ms\""),
        ] {
            if !self.upstream.iter().any(|l| l.trim_start().starts_with(key)) {
                s += &format!("{key} = {default}\n");
            }
        }
        for l in &self.upstream {
            s += &format!("{l}\n");
        }
        if !self.endpoints.is_empty() {
            s += "\n[endpoints]\n";
            for l in &self.endpoints {
                s += &format!("{l}\n");
            }
        }
        for g in &self.groups {
            s += &format!("\n{g}");
        }
        s += "\n[[groups]]\nname = \"it\"\n";
        for r in &self.routes {
            s += &format!("\n[[groups.routes]]\n{r}\n");
        }
        s
    }

    pub fn start(&self) -> Gateway {
        Gateway::start(&self.render())
    }
}

// ---------------------------------------------------------------------------------
// Reading HTTP/1.1 off a std socket

/// A socket plus the bytes read from it and not consumed yet.
pub struct Wire {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

/// A parsed head: start line and fields.
#[derive(Clone, Debug)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl Head {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes; Ok(0) at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next head, or None at a clean EOF before any byte.
    pub fn head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                let raw = String::from_utf8_lossy(&raw).into_owned();
                let mut lines = raw[..raw.len() - 4].split("\r\n");
                let start = lines.next().unwrap_or_default().to_string();
                let headers = lines
                    .map(|l| match l.split_once(':') {
                        Some((k, v)) => (k.to_string(), v.trim().to_string()),
                        None => (l.to_string(), String::new()),
                    })
                    .collect();
                return Ok(Some(Head { start, headers, raw }));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF inside a head: {:?}", String::from_utf8_lossy(&self.buf)),
                ));
            }
        }
    }

    pub fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {} of {n} body bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&l[..end]).into_owned());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in a chunked body",
                ));
            }
        }
    }

    /// A chunked body, decoded; trailers are skipped. Returns (data, chunk sizes).
    pub fn chunked(&mut self) -> io::Result<(Vec<u8>, Vec<usize>)> {
        let mut body = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {line:?}")))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok((body, sizes));
            }
            sizes.push(size);
            body.extend(self.exact(size)?);
            if !self.exact(2)?.eq(b"\r\n") {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "no CRLF after chunk"));
            }
        }
    }

    pub fn read_until_close(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// The body of a message with head `h` (a request when `request`).
    fn body(&mut self, h: &Head, request: bool) -> io::Result<(Vec<u8>, Framing)> {
        if h.header("transfer-encoding").is_some() {
            let (b, sizes) = self.chunked()?;
            return Ok((b, Framing::Chunked(sizes)));
        }
        if let Some(cl) = h.header("content-length") {
            let n: usize = cl
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("content-length {cl:?}")))?;
            return Ok((self.exact(n)?, Framing::Length));
        }
        if request {
            Ok((Vec::new(), Framing::Length))
        } else {
            Ok((self.read_until_close()?, Framing::UntilClose))
        }
    }
}

/// How a body was framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    Length,
    /// The data sizes of the chunks.
    Chunked(Vec<usize>),
    UntilClose,
}

// ---------------------------------------------------------------------------------
// The raw client

/// A raw client: writes bytes, reads one response at a time.
pub struct Client {
    pub wire: Wire,
}

/// A response as the client read it.
#[derive(Clone, Debug)]
pub struct Response {
    pub head: Head,
    pub status: u16,
    pub body: Vec<u8>,
    pub framing: Framing,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response says `connection: close`.
    pub fn closes(&self) -> bool {
        self.head.has_token("connection", "close")
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to gateway");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            wire: Wire::new(stream),
        }
    }

    pub fn set_read_timeout(&mut self, t: Duration) {
        self.wire.stream.set_read_timeout(Some(t)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.wire.stream.write_all(bytes).expect("write to gateway");
    }

    /// Writes `bytes` cut at the offsets `at` (ascending), sleeping a little between
    /// the pieces so that each arrives in its own read.
    pub fn send_split(&mut self, bytes: &[u8], at: &[usize]) {
        let mut from = 0;
        for &cut in at {
            self.send(&bytes[from..cut]);
            thread::sleep(Duration::from_millis(15));
            from = cut;
        }
        self.send(&bytes[from..]);
    }

    /// The next response (interim ones included), to a non-HEAD request.
    pub fn response(&mut self) -> Response {
        self.try_response(false)
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// The next response to a HEAD request (no body).
    pub fn head_response(&mut self) -> Response {
        self.try_response(true)
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    pub fn try_response(&mut self, to_head: bool) -> Result<Response, String> {
        let head = match self.wire.head() {
            Ok(Some(h)) => h,
            Ok(None) => return Err("connection closed before a response".into()),
            Err(e) => return Err(format!("{e} ({:?})", e.kind())),
        };
        let status: u16 = head
            .start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {:?}", head.start))?;
        let (body, framing) = if to_head || status < 200 || status == 204 || status == 304 {
            (Vec::new(), Framing::Length)
        } else {
            self.wire
                .body(&head, false)
                .map_err(|e| format!("{e} (head {:?})", head.raw))?
        };
        Ok(Response {
            head,
            status,
            body,
            framing,
        })
    }

    /// Sends `GET path` with `Host: it.test` and reads the response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: it.test\r\n\r\n").as_bytes());
        self.response()
    }

    /// Waits (at most 2 s) for the gateway to close the connection: true on EOF or
    /// reset, false if bytes arrive or it stays open. Unread buffered bytes count as
    /// "not closed".
    pub fn is_closed(&mut self) -> bool {
        if !self.wire.buf.is_empty() {
            return false;
        }
        self.set_read_timeout(Duration::from_secs(2));
        let mut b = [0u8; 1];
        let r = match self.wire.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => {
                self.wire.buf.push(b[0]);
                false
            }
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
        };
        self.set_read_timeout(READ_TIMEOUT);
        r
    }

    /// Everything until EOF (bounded by the read timeout).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        self.wire.read_until_close().expect("read to end")
    }
}

// ---------------------------------------------------------------------------------
// The recording backend

/// A request as a backend received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub head: Head,
    pub body: Vec<u8>,
    pub framing: Framing,
    /// Which accepted connection (0-based) it came on.
    pub conn: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.head.header_all(name)
    }
}

/// What a backend answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: ReplyFraming,
    /// Close the connection after this response.
    pub close: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyFraming {
    Length,
    /// Chunks of at most this many bytes.
    Chunked(usize),
    /// `HTTP/1.0` status line, no length: the body ends when the connection closes.
    UntilClose,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.into(),
            framing: ReplyFraming::Length,
            close: false,
        }
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(200, body)
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn chunked(mut self, chunk: usize) -> Self {
        self.framing = ReplyFraming::Chunked(chunk.max(1));
        self
    }

    pub fn until_close(mut self) -> Self {
        self.framing = ReplyFraming::UntilClose;
        self.close = true;
        self
    }

    fn write(&self, out: &mut impl Write, to_head: bool) -> io::Result<()> {
        let mut h = String::new();
        let version = if self.framing == ReplyFraming::UntilClose {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        h += &format!("{version} {} X\r\n", self.status);
        for (k, v) in &self.headers {
            h += &format!("{k}: {v}\r\n");
        }
        match self.framing {
            ReplyFraming::Length => h += &format!("content-length: {}\r\n", self.body.len()),
            ReplyFraming::Chunked(_) => h += "transfer-encoding: chunked\r\n",
            ReplyFraming::UntilClose => {}
        }
        if self.close && self.framing != ReplyFraming::UntilClose {
            h += "connection: close\r\n";
        }
        h += "\r\n";
        let mut bytes = h.into_bytes();
        if !to_head {
            match self.framing {
                ReplyFraming::Chunked(n) => {
                    for c in self.body.chunks(n) {
                        bytes.extend(format!("{:x}\r\n", c.len()).bytes());
                        bytes.extend_from_slice(c);
                        bytes.extend_from_slice(b"\r\n");
                    }
                    bytes.extend_from_slice(b"0\r\n\r\n");
                }
                _ => bytes.extend_from_slice(&self.body),
            }
        }
        out.write_all(&bytes)
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync + 'static;

/// A keep-alive HTTP/1.1 backend that records every request and counts connections.
pub struct Backend {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// Answers every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (requests, connections, stop) = (requests.clone(), connections.clone(), stop.clone());
            thread::spawn(move || {
                for s in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let n = connections.fetch_add(1, Ordering::SeqCst);
                    let (requests, handler) = (requests.clone(), handler.clone());
                    thread::spawn(move || serve_backend_conn(s, n, &requests, &*handler));
                }
            });
        }
        Backend {
            addr,
            requests,
            connections,
            stop,
        }
    }

    /// Answers 200 with the request body, and `x-backend: NAME`, `x-target: TARGET`
    /// and `x-method: METHOD`.
    pub fn echo(name: &str) -> Backend {
        let name = name.to_string();
        Backend::start(move |r| {
            Reply::ok(r.body.clone())
                .header("x-backend", &name)
                .header("x-target", &r.target)
                .header("x-method", &r.method)
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The only request received; panics if there were not exactly one.
    pub fn only_request(&self) -> Request {
        let r = self.requests();
        assert_eq!(r.len(), 1, "expected one request at the backend, got {r:#?}");
        r.into_iter().next().unwrap()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_backend_conn(s: TcpStream, conn: usize, requests: &Mutex<Vec<Request>>, handler: &Handler) {
    let _ = s.set_read_timeout(Some(BACKEND_READ_TIMEOUT));
    let _ = s.set_nodelay(true);
    let mut w = Wire::new(s);
    loop {
        let head = match w.head() {
            Ok(Some(h)) => h,
            _ => return,
        };
        let mut parts = head.start.splitn(3, ' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or_default().to_string();
        let Ok((body, framing)) = w.body(&head, true) else {
            return;
        };
        let req = Request {
            method,
            target,
            version,
            head,
            body,
            framing,
            conn,
        };
        let reply = handler(&req);
        let to_head = req.method == "HEAD";
        requests.lock().unwrap().push(req);
        if reply.write(&mut w.stream, to_head).is_err() || reply.close {
            let _ = w.stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

// ---------------------------------------------------------------------------------
// Raw scripted backends

/// A backend that misbehaves in one way. Holds its sockets until dropped.
pub struct Scripted {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    _listener: Option<TcpListener>,
}

impl Scripted {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Runs `on_conn(stream, index)` on a thread for each accepted connection.
    pub fn custom(on_conn: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (connections.clone(), stop.clone());
        let on_conn = Arc::new(on_conn);
        thread::spawn(move || {
            for s in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let f = on_conn.clone();
                thread::spawn(move || f(s, n));
            }
        });
        Scripted {
            addr,
            connections,
            stop,
            _listener: None,
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if self._listener.is_none() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
    }
}

/// A port nobody listens on: bound, then released.
pub fn refused() -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().unwrap();
    drop(l);
    Scripted {
        addr,
        connections: Arc::new(AtomicUsize::new(0)),
        stop: Arc::new(AtomicBool::new(true)),
        _listener: None,
    }
}

/// Reads up to the end of a request head (bodies are not read), at most 2 s. False
/// at EOF, on error or on timeout.
pub fn read_request(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while find(&got, b"\r\n\r\n").is_none() {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    true
}

/// Reads what it can without blocking for long.
fn read_some(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut b = [0u8; 4096];
    let _ = s.read(&mut b);
}

/// Accepts, reads the request, never answers (holds the socket for 10 s).
pub fn hang() -> Scripted {
    Scripted::custom(|mut s, _| {
        read_some(&mut s);
        thread::sleep(Duration::from_secs(10));
        drop(s);
    })
}

/// Accepts, reads the request, then resets the connection (SO_LINGER 0).
pub fn reset() -> Scripted {
    Scripted::custom(|mut s, _| {
        read_some(&mut s);
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
}

/// Accepts, reads the request, answers `not http\r\n\r\n` and closes.
pub fn garbage() -> Scripted {
    Scripted::custom(|mut s, _| {
        read_some(&mut s);
        let _ = s.write_all(b"not http\r\n\r\n");
        thread::sleep(Duration::from_millis(100));
    })
}

/// Answers the first request of each connection keep-alive (`200`, body `first`,
/// no `Connection: close`), then closes the socket.
pub fn close_after_first() -> Scripted {
    Scripted::custom(|s, n| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut w = Wire::new(s);
        let Ok(Some(head)) = w.head() else { return };
        if w.body(&head, true).is_err() {
            return;
        }
        let body = format!("first on connection {n}");
        let _ = w
            .stream
            .write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes());
        thread::sleep(Duration::from_millis(20));
        let _ = w.stream.shutdown(Shutdown::Both);
    })
}

/// A listener with a backlog of 0 whose accept queue is already full, so that a new
/// connection attempt is never completed (the SYN is dropped).
pub fn full_backlog() -> (Scripted, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .expect("bind");
    l.listen(0).expect("listen");
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        if s.connect_timeout(&addr.into(), Duration::from_millis(100))
            .is_ok()
        {
            fillers.push(s);
        }
    }
    (
        Scripted {
            addr,
            connections: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(true)),
            _listener: Some(l.into()),
        },
        fillers,
    )
}

/// Asserts that `elapsed` is within `[min, max]`.
pub fn assert_within(what: &str, elapsed: Duration, min: Duration, max: Duration) {
    assert!(
        elapsed >= min && elapsed <= max,
        "{what}: took {elapsed:?}, expected between {min:?} and {max:?}"
    );
}
