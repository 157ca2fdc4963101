//! The slice of RESP2 the agent speaks: commands out as arrays of bulk strings,
//! replies in as simple strings, errors, integers, bulk strings and arrays.
//!
//! [`parse`] is pure and bounded (nesting, lengths), and fuzzed
//! (`fuzz/fuzz_targets/resp.rs`); [`Conn`] is a blocking connection with a timeout
//! on every read and write, run on the agent's own thread.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Nesting a reply may have (the agent's replies are arrays of integers).
const MAX_DEPTH: usize = 4;
/// The longest bulk string or array accepted.
const MAX_LEN: usize = 1 << 20;

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// A reply that cannot be RESP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Parses one reply from the front of `buf`: the reply and the bytes it took, or
/// `None` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed("reply nested too deep"));
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    // Known before the line is looked for: a reply starting with CR is no reply.
    if !b"+-:$*".contains(&kind) {
        return Err(Malformed("unknown reply type"));
    }
    let Some(end) = memchr::memmem::find(buf, b"\r\n") else {
        return if buf.len() > 64 * 1024 {
            Err(Malformed("line too long"))
        } else {
            Ok(None)
        };
    };
    let line = &buf[1..end];
    let after = end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), after))),
        b'-' => Ok(Some((Reply::Error(text()), after))),
        b':' => Ok(Some((Reply::Int(int(line)?), after))),
        b'$' => {
            let n = int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| Malformed("bulk length"))?;
            if n > MAX_LEN {
                return Err(Malformed("bulk string too long"));
            }
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            if &buf[after + n..after + n + 2] != b"\r\n" {
                return Err(Malformed("bulk string not ended by CRLF"));
            }
            Ok(Some((
                Reply::Bulk(Some(buf[after..after + n].to_vec())),
                after + n + 2,
            )))
        }
        b'*' => {
            let n = int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| Malformed("array length"))?;
            if n > MAX_LEN {
                return Err(Malformed("array too long"));
            }
            let mut items = Vec::with_capacity(n.min(64));
            let mut at = after;
            for _ in 0..n {
                match parse_at(&buf[at..], depth + 1)? {
                    Some((r, used)) => {
                        items.push(r);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(Malformed("unknown reply type")),
    }
}

fn int(line: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Malformed("not an integer"))
}

/// The fuzz property (`fuzz/fuzz_targets/resp.rs`, replayed by
/// `tests/fuzz_corpus.rs`): parsing never panics; a reply that parses is exactly as
/// long as it says, parses the same alone, and every shorter prefix of it asks for
/// more bytes (never a different reply, never an error).
pub fn fuzz_check(data: &[u8]) {
    let data = &data[..data.len().min(4096)];
    let Ok(Some((reply, used))) = parse(data) else {
        return;
    };
    assert!(used <= data.len());
    assert_eq!(parse(&data[..used]), Ok(Some((reply, used))));
    for cut in 0..used {
        assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes");
    }
}

/// Appends `args` as one command.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut num = [0u8; 20];
    out.push(b'*');
    out.extend_from_slice(crate::http::itoa(args.len() as u64, &mut num));
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(crate::http::itoa(a.len() as u64, &mut num));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A blocking connection to Redis.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The whole of one pipeline's replies must come within this.
    timeout: Duration,
}

impl Conn {
    /// Connects to `address` (`host:port`, each resolved address tried in turn),
    /// every read and write then bounded by `timeout`.
    pub fn connect(address: &str, connect_timeout: Duration, timeout: Duration) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{address} resolves to nothing"));
        for addr in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    return Ok(Conn {
                        stream,
                        buf: Vec::with_capacity(4096),
                        timeout,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends the encoded commands in `out` and reads `n` replies (a pipeline), all
    /// within the timeout: a Redis that answers in trickles times out too.
    pub fn pipeline(&mut self, out: &[u8], n: usize) -> io::Result<Vec<Reply>> {
        let deadline = std::time::Instant::now() + self.timeout;
        self.stream.set_write_timeout(Some(self.timeout))?;
        self.stream.write_all(out)?;
        let mut replies = Vec::with_capacity(n);
        let mut chunk = [0u8; 4096];
        while replies.len() < n {
            match parse(&self.buf).map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m.0))? {
                Some((r, used)) => {
                    self.buf.drain(..used);
                    replies.push(r);
                }
                None => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.stream.set_read_timeout(Some(left))?;
                    let got = self.stream.read(&mut chunk)?;
                    if got == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..got]);
                }
            }
        }
        Ok(replies)
    }

    /// One command, one reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = Vec::new();
        encode(&mut out, args);
        Ok(self.pipeline(&out, 1)?.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_kind_and_waits_for_more() {
        let all = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n:-7\r\n*-1\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, used)) = parse(&all[at..]).unwrap() {
            got.push(r);
            at += used;
        }
        assert_eq!(at, all.len());
        assert_eq!(
            got,
            vec![
                Reply::Simple("OK".into()),
                Reply::Error("ERR no".into()),
                Reply::Int(42),
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Int(1), Reply::Int(-7)])),
                Reply::Array(None),
            ]
        );
        for cut in 1..all.len() {
            // Every prefix parses to fewer replies or asks for more; none errs.
            let mut at = 0;
            while let Some((_, used)) = parse(&all[at..cut]).unwrap() {
                at += used;
            }
        }
    }

    #[test]
    fn refuses_what_is_not_resp() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":12a\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").is_err());
    }

    #[test]
    fn encodes_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"EVALSHA", b"ab", b""]);
        assert_eq!(out, b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$0\r\n\r\n");
    }
}
