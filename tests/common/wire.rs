//! Reading HTTP/1.1 off a std socket, and the raw test client.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

#[allow(unused_imports)]
use super::*;
use std::thread;
use std::time::Duration;

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

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
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
    pub(crate) fn body(&mut self, h: &Head, request: bool) -> io::Result<(Vec<u8>, Framing)> {
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
