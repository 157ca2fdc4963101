//! One client connection: read, parse every complete request in the buffer,
//! queue their responses, write them in one go (so pipelined requests get
//! pipelined answers), repeat.

use std::io::Write as _;
use std::rc::Rc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::framing::BodyDecoder;
use crate::request::{BodySource, Defaults, Rejection, RequestHead};

/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;
/// Largest request head; past this the request gets 431 and the connection closes.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Free space guaranteed in the read buffer before every read.
const READ_CHUNK: usize = 16 * 1024;
/// Bodies up to this size are copied behind their head in the output buffer;
/// larger ones are written straight from the filler to save the copy.
const INLINE_BODY_MAX: usize = 16 * 1024;

/// Everything a connection needs from its shard; shared by `Rc`, never across threads.
pub struct ShardInfo {
    pub defaults: Defaults,
    pub delay: std::time::Duration,
    /// `x-backend-port: P\r\n`, preformatted.
    pub port_header: Vec<u8>,
    /// `'x'` bytes, at least as many as the default body size.
    pub filler: &'static [u8],
}

/// Where the connection is in the current request.
enum Phase {
    Head,
    Body {
        head: RequestHead,
        decoder: BodyDecoder,
        echo: Vec<u8>,
    },
}

struct Conn {
    stream: TcpStream,
    shard: Rc<ShardInfo>,
    /// `x-backend-conn: N\r\n`, preformatted.
    conn_header: Vec<u8>,
    out: Vec<u8>,
}

pub async fn serve(stream: TcpStream, serial: u64, shard: Rc<ShardInfo>) {
    let conn_header = format!("x-backend-conn: {serial}\r\n").into_bytes();
    let mut conn = Conn {
        stream,
        shard,
        conn_header,
        out: Vec::with_capacity(READ_CHUNK),
    };
    // Errors here are the client going away; there is nobody to tell.
    let _ = conn.run().await;
}

impl Conn {
    async fn run(&mut self) -> std::io::Result<()> {
        let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut start = 0;
        let mut phase = Phase::Head;
        loop {
            // Answer every request that is complete in the buffer.
            loop {
                match &mut phase {
                    Phase::Head => {
                        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                        let mut req = httparse::Request::new(&mut headers);
                        match req.parse(&inbuf[start..]) {
                            Ok(httparse::Status::Complete(n)) => {
                                match RequestHead::from_parsed(&req, self.shard.defaults) {
                                    Ok(head) => {
                                        start += n;
                                        phase = Phase::Body {
                                            head,
                                            decoder: BodyDecoder::new(head.body),
                                            echo: Vec::new(),
                                        };
                                    }
                                    Err(rejection) => return self.reject(rejection.status()).await,
                                }
                            }
                            Ok(httparse::Status::Partial) if inbuf.len() - start > MAX_HEAD_BYTES => {
                                return self.reject(431).await
                            }
                            Ok(httparse::Status::Partial) => break,
                            Err(_) => return self.reject(Rejection::BadRequest.status()).await,
                        }
                    }
                    Phase::Body { head, decoder, echo } => {
                        let sink = (head.source == BodySource::Echo).then_some(&mut *echo);
                        match decoder.feed(&inbuf[start..], sink) {
                            Ok(used) => start += used,
                            Err(_) => return self.reject(400).await,
                        }
                        if !decoder.is_done() {
                            break;
                        }
                        let head = *head;
                        let echo = std::mem::take(echo);
                        phase = Phase::Head;
                        self.respond(&head, echo).await?;
                        if !head.keep_alive {
                            self.flush().await?;
                            let _ = self.stream.shutdown().await;
                            return Ok(());
                        }
                    }
                }
            }
            // Keep only the unparsed tail, then send what is queued.
            if start == inbuf.len() {
                inbuf.clear();
            } else if start > 0 {
                inbuf.drain(..start);
            }
            start = 0;
            self.flush().await?;

            inbuf.reserve(READ_CHUNK);
            let len = inbuf.len();
            let cap = inbuf.capacity();
            let (res, slice) = self.stream.read(inbuf.slice_mut(len..cap)).await;
            inbuf = slice.into_inner();
            if res? == 0 {
                return Ok(());
            }
        }
    }

    /// Queues (or, for big bodies, writes) the response to `head`.
    async fn respond(&mut self, head: &RequestHead, echo: Vec<u8>) -> std::io::Result<()> {
        if !self.shard.delay.is_zero() {
            self.flush().await?;
            monoio::time::sleep(self.shard.delay).await;
        }
        let (body_len, echo) = match head.source {
            BodySource::Filler(n) => (n, None),
            BodySource::Echo => (echo.len(), Some(echo)),
        };
        let no_body = matches!(head.status, 204 | 304);
        self.push_head(head.status, (!no_body).then_some(body_len), head.keep_alive);
        if head.head_only || no_body {
            return Ok(());
        }
        match echo {
            Some(echo) => self.out.extend_from_slice(&echo),
            None if body_len <= INLINE_BODY_MAX.min(self.shard.filler.len()) => {
                self.out.extend_from_slice(&self.shard.filler[..body_len])
            }
            None => {
                self.flush().await?;
                let filler = self.shard.filler;
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(filler.len());
                    let (res, _) = self.stream.write_all(&filler[..n]).await;
                    res?;
                    left -= n;
                }
            }
        }
        Ok(())
    }

    fn push_head(&mut self, status: u16, content_length: Option<usize>, keep_alive: bool) {
        let out = &mut self.out;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
        if let Some(n) = content_length {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        out.extend_from_slice(b"content-type: application/octet-stream\r\n");
        out.extend_from_slice(&self.shard.port_header);
        out.extend_from_slice(&self.conn_header);
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Answers a request we cannot serve, then closes: after a bad head the
    /// framing of anything that follows is unknown.
    async fn reject(&mut self, status: u16) -> std::io::Result<()> {
        self.push_head(status, Some(0), false);
        self.flush().await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let (res, mut out) = self.stream.write_all(out).await;
        out.clear();
        self.out = out;
        res.map(|_| ())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
