//! Black-box tests: start the real binary on port 0, speak raw HTTP/1.1 bytes.
// The test drives the backend from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `ringway-backend`, killed on drop.
struct Backend {
    child: Child,
    addr: SocketAddr,
}

impl Backend {
    fn start(args: &[&str]) -> Backend {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringway-backend"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ringway-backend");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"));
        Backend {
            addr: addr.parse().unwrap(),
            child,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One response read off the wire: status, lower-cased headers, body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads exactly one response (Content-Length framed; no body for HEAD).
    fn read(r: &mut BufReader<&TcpStream>, head_request: bool) -> Response {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .unwrap_or_else(|| panic!("status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp.header("content-length").map_or(0, |v| v.parse().unwrap());
        if !head_request {
            resp.body = vec![0; len];
            r.read_exact(&mut resp.body).unwrap();
        }
        resp
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

#[test]
fn first_stdout_line_names_the_bound_port() {
    let b = Backend::start(&[]);
    assert_ne!(b.addr.port(), 0);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let b = Backend::start(&["--size", "64"]);
    let s = b.connect();
    let mut r = BufReader::new(&s);
    let mut serials = Vec::new();
    for _ in 0..3 {
        (&s).write_all(get("/").as_bytes()).unwrap();
        let resp = Response::read(&mut r, false);
        assert_eq!((resp.status, resp.body.len()), (200, 64));
        assert_eq!(
            resp.header("x-backend-port"),
            Some(b.addr.port().to_string().as_str())
        );
        serials.push(resp.header("x-backend-conn").unwrap().to_string());
    }
    assert!(serials.iter().all(|s| *s == serials[0]), "{serials:?}");
}

#[test]
fn new_connections_get_new_serials() {
    let b = Backend::start(&["--threads", "2"]);
    let mut serials = std::collections::HashSet::new();
    for _ in 0..6 {
        let s = b.connect();
        (&s).write_all(get("/").as_bytes()).unwrap();
        let resp = Response::read(&mut BufReader::new(&s), false);
        assert!(serials.insert(resp.header("x-backend-conn").unwrap().to_string()));
    }
}

#[test]
fn pipelined_requests_get_responses_in_order() {
    let b = Backend::start(&[]);
    let s = b.connect();
    (&s).write_all(format!("{}{}", get("/size/3"), get("/size/5")).as_bytes())
        .unwrap();
    let mut r = BufReader::new(&s);
    assert_eq!(Response::read(&mut r, false).body, b"xxx");
    assert_eq!(Response::read(&mut r, false).body, b"xxxxx");
}

#[test]
fn chunked_request_body_is_echoed() {
    let b = Backend::start(&[]);
    let s = b.connect();
    let req = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    // Split the write so the body arrives in pieces, then a pipelined GET.
    let (a, c) = req.split_at(70);
    (&s).write_all(a.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    (&s).write_all(c.as_bytes()).unwrap();
    (&s).write_all(get("/size/1").as_bytes()).unwrap();
    let mut r = BufReader::new(&s);
    assert_eq!(Response::read(&mut r, false).body, b"hello, world");
    assert_eq!(Response::read(&mut r, false).body, b"x");
}

#[test]
fn content_length_body_is_discarded_or_echoed() {
    let b = Backend::start(&["--echo"]);
    let s = b.connect();
    (&s).write_all(b"POST /any HTTP/1.1\r\nContent-Length: 4\r\n\r\nping")
        .unwrap();
    assert_eq!(Response::read(&mut BufReader::new(&s), false).body, b"ping");

    let b = Backend::start(&["--size", "2"]);
    let s = b.connect();
    (&s).write_all(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\npingGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(&s);
    assert_eq!(Response::read(&mut r, false).body, b"xx");
    assert_eq!(Response::read(&mut r, false).body, b"xx");
}

#[test]
fn size_path_sets_body_length() {
    let b = Backend::start(&[]);
    let s = b.connect();
    let mut r = BufReader::new(&s);
    // Small (copied inline), large (written from the filler) and larger than the filler.
    for n in [0usize, 1000, 65_536, 3 << 20] {
        (&s).write_all(get(&format!("/size/{n}")).as_bytes()).unwrap();
        let resp = Response::read(&mut r, false);
        assert_eq!(resp.body.len(), n);
        assert!(resp.body.iter().all(|&c| c == b'x'));
    }
}

#[test]
fn status_path_and_head() {
    let b = Backend::start(&["--size", "10"]);
    let s = b.connect();
    let mut r = BufReader::new(&s);
    (&s).write_all(get("/status/503").as_bytes()).unwrap();
    assert_eq!(Response::read(&mut r, false).status, 503);
    (&s).write_all(b"HEAD / HTTP/1.1\r\n\r\n").unwrap();
    let resp = Response::read(&mut r, true);
    assert_eq!((resp.status, resp.header("content-length")), (200, Some("10")));
    // The HEAD response had no body: the next response parses cleanly.
    (&s).write_all(get("/size/2").as_bytes()).unwrap();
    assert_eq!(Response::read(&mut r, false).body, b"xx");
}

#[test]
fn connection_close_closes_after_the_response() {
    let b = Backend::start(&[]);
    let s = b.connect();
    (&s).write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(&s);
    let resp = Response::read(&mut r, false);
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn delay_ms_delays_responses() {
    let b = Backend::start(&["--delay-ms", "150"]);
    let s = b.connect();
    let t = std::time::Instant::now();
    (&s).write_all(get("/").as_bytes()).unwrap();
    Response::read(&mut BufReader::new(&s), false);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[test]
fn garbage_gets_400_and_close() {
    let b = Backend::start(&[]);
    let s = b.connect();
    (&s).write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    assert_eq!(Response::read(&mut BufReader::new(&s), false).status, 400);
}

#[test]
fn sigterm_exits_cleanly() {
    let mut b = Backend::start(&["--threads", "2"]);
    let pid = b.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = b.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
