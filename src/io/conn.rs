//! [`Conn`]: one connection, client or upstream, whatever carries it.
//!
//! Every read and write of the request path goes through these methods, so a TLS
//! variant (issue 10) is a new arm here and nowhere else. A method is a `match`
//! over one variant today, which the compiler removes.

use crate::io::{read_append, ReadOutcome};
use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use monoio::BufResult;
use std::time::Duration;

/// A connection to a client or an upstream.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Tcp(TcpStream),
}

impl Conn {
    /// Appends what arrives to `buf` (reserve spare capacity first), waiting at most
    /// `timeout`; see [`read_append`].
    #[inline]
    pub async fn read_append(&mut self, buf: Vec<u8>, timeout: Duration) -> (ReadOutcome, Vec<u8>) {
        match self {
            Conn::Tcp(s) => read_append(s, buf, timeout).await,
        }
    }

    /// Writes all of `buf`.
    #[inline]
    pub async fn write_all<T: IoBuf + 'static>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Conn::Tcp(s) => s.write_all(buf).await,
        }
    }

    /// Whether this connection is encrypted (for `X-Forwarded-Proto`).
    #[inline]
    pub fn is_tls(&self) -> bool {
        match self {
            Conn::Tcp(_) => false,
        }
    }
}
