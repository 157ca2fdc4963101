//! Test backends: the recording keep-alive backend and raw scripted ones.

#![allow(dead_code)]

#[allow(unused_imports)]
use super::*;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
        Backend::start_idle(BACKEND_READ_TIMEOUT, handler)
    }

    /// As [`Backend::start`], closing a keep-alive connection after `idle` without
    /// a request (gunicorn's `--keep-alive`, Node's `keepAliveTimeout`).
    pub fn start_idle(
        idle: Duration,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Backend {
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
                    thread::spawn(move || serve_backend_conn(s, n, idle, &requests, &*handler));
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
        Backend::echo_idle(name, BACKEND_READ_TIMEOUT)
    }

    /// [`Backend::echo`] that closes connections idle for `idle`.
    pub fn echo_idle(name: &str, idle: Duration) -> Backend {
        let name = name.to_string();
        Backend::start_idle(idle, move |r| {
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

fn serve_backend_conn(
    s: TcpStream,
    conn: usize,
    idle: Duration,
    requests: &Mutex<Vec<Request>>,
    handler: &Handler,
) {
    let _ = s.set_read_timeout(Some(idle));
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
    /// A bound socket that never listens: holds the port (so no other test's
    /// bind to port 0 can take it) while connects to it are refused.
    _reserved: Option<socket2::Socket>,
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
            _reserved: None,
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
    // Bound, never listening: Linux answers a SYN to it with a reset. Dropping a
    // listener instead would free the port for a parallel test to take.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).expect("bind");
    let addr = s.local_addr().unwrap().as_socket().expect("an inet address");
    Scripted {
        addr,
        connections: Arc::new(AtomicUsize::new(0)),
        stop: Arc::new(AtomicBool::new(true)),
        _listener: None,
        _reserved: Some(s),
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
        let Some(w) = answer_first(s, n) else { return };
        thread::sleep(Duration::from_millis(20));
        let _ = w.stream.shutdown(Shutdown::Both);
    })
}

/// Reads the first request on `s` and answers it keep-alive (`200`, body `first on
/// connection N`); the connection, unless it failed.
fn answer_first(s: TcpStream, n: usize) -> Option<Wire> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut w = Wire::new(s);
    let head = w.head().ok()??;
    w.body(&head, true).ok()?;
    let body = format!("first on connection {n}");
    w.stream
        .write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .ok()?;
    Some(w)
}

/// Answers the first request of each connection, then reads the next request
/// (head and body) and closes without answering: a pooled connection that looks
/// open until a request is sent on it.
pub fn drop_second() -> Scripted {
    Scripted::custom(|s, n| {
        let Some(mut w) = answer_first(s, n) else { return };
        let Ok(Some(head)) = w.head() else { return };
        let _ = w.body(&head, true);
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
            _reserved: None,
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
