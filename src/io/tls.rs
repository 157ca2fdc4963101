//! [`TlsStream`]: rustls over a monoio TCP stream, with ringway's owned-buffer reads
//! and deadlines.
//!
//! Our own adapter rather than monoio-rustls: rustls is driven through its
//! buffer API (`read_tls`/`process_new_packets`/`reader`, `writer`/`write_tls`), so
//! ciphertext moves through the same [`read_append`] and [`write_all_timeout`] as
//! plain TCP — the same cancellation on timeout, the same write watch — and
//! plaintext is copied straight into the caller's buffer. A read never zeroes
//! spare capacity: plaintext is taken from rustls' own buffer (`fill_buf`).
//!
//! Like plain upstream connections, an upstream TLS connection keeps a second
//! descriptor of its socket (`control`), so that an idle pooled connection can be
//! looked at without an io_uring round trip: here the records waiting on it are
//! read without blocking and given to rustls, because a TLS 1.3 server sends
//! session tickets after the handshake, and those are not a reason to drop the
//! connection; a close_notify or plaintext nobody asked for is.

use crate::io::{read_append, write_all_timeout, Input, ReadOutcome, Reclaim};
use monoio::net::TcpStream;
use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

/// Ciphertext read at once (a little more than one full record).
const TLS_READ: usize = 18 * 1024;

/// A TLS connection over TCP.
pub struct TlsStream {
    tcp: TcpStream,
    control: Option<socket2::Socket>,
    tls: rustls::Connection,
    /// Ciphertext read and not yet given to rustls (`pos..`).
    incoming: Vec<u8>,
    pos: usize,
    /// Ciphertext to send.
    outgoing: Vec<u8>,
    send_timeout: Duration,
    /// The socket said EOF (rustls has been told).
    eof: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.tls.is_handshaking())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

/// Why a handshake failed, as the metrics count it.
#[derive(Debug)]
pub enum HandshakeError {
    /// Not finished within its deadline.
    TimedOut,
    /// The peer closed (or reset) mid-handshake.
    Closed,
    /// rustls refused it (bad certificate, no common version or cipher, …).
    Tls(rustls::Error),
}

impl HandshakeError {
    /// A short label: `timeout`, `closed`, `certificate`, `incompatible`, `alert`,
    /// `protocol`.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::TimedOut => "timeout",
            HandshakeError::Closed => "closed",
            HandshakeError::Tls(e) => match e {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    "certificate"
                }
                rustls::Error::PeerIncompatible(_) => "incompatible",
                rustls::Error::AlertReceived(_) => "alert",
                _ => "protocol",
            },
        }
    }

    /// Whether the peer's certificate failed verification.
    pub fn is_verify(&self) -> bool {
        matches!(self, HandshakeError::Tls(rustls::Error::InvalidCertificate(_)))
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::TimedOut => f.write_str("TLS handshake timed out"),
            HandshakeError::Closed => f.write_str("connection closed during the TLS handshake"),
            HandshakeError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl TlsStream {
    /// A server-side stream (handshake not yet done).
    pub fn server(
        tcp: TcpStream,
        config: std::sync::Arc<rustls::ServerConfig>,
        send_timeout: Duration,
    ) -> Result<TlsStream, rustls::Error> {
        let tls = rustls::ServerConnection::new(config)?;
        Ok(TlsStream::new(tcp, None, tls.into(), send_timeout))
    }

    /// A client-side stream to `name` (handshake not yet done).
    pub fn client(
        tcp: TcpStream,
        control: socket2::Socket,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls_pki_types::ServerName<'static>,
        send_timeout: Duration,
    ) -> Result<TlsStream, rustls::Error> {
        let tls = rustls::ClientConnection::new(config, name)?;
        Ok(TlsStream::new(tcp, Some(control), tls.into(), send_timeout))
    }

    fn new(
        tcp: TcpStream,
        control: Option<socket2::Socket>,
        tls: rustls::Connection,
        send_timeout: Duration,
    ) -> TlsStream {
        TlsStream {
            tcp,
            control,
            tls,
            incoming: Vec::new(),
            pos: 0,
            outgoing: Vec::new(),
            send_timeout,
            eof: false,
        }
    }

    /// The rustls connection (ALPN, SNI, resumption, peer certificates).
    pub fn session(&self) -> &rustls::Connection {
        &self.tls
    }

    /// Runs the handshake to completion within `timeout`.
    pub async fn handshake(&mut self, timeout: Duration) -> Result<(), HandshakeError> {
        let deadline = Instant::now() + timeout;
        while self.tls.is_handshaking() {
            self.flush().await.map_err(|_| HandshakeError::Closed)?;
            if !self.tls.is_handshaking() {
                break;
            }
            if self.pos == self.incoming.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(HandshakeError::TimedOut);
                }
                match self.read_tls(left).await {
                    ReadOutcome::Data(_) => {}
                    ReadOutcome::TimedOut => return Err(HandshakeError::TimedOut),
                    ReadOutcome::Eof | ReadOutcome::Failed => return Err(HandshakeError::Closed),
                }
            }
            if let Err(e) = self.feed() {
                // Tell the peer why (the alert rustls queued), best effort.
                let _ = self.flush().await;
                return Err(HandshakeError::Tls(e));
            }
        }
        // The last flight (a server's tickets, a client's Finished).
        self.flush().await.map_err(|_| HandshakeError::Closed)
    }

    /// Reads ciphertext from the socket into `incoming`.
    async fn read_tls(&mut self, timeout: Duration) -> ReadOutcome {
        if self.pos == self.incoming.len() {
            self.incoming.clear();
            self.pos = 0;
        }
        self.incoming.reserve(TLS_READ);
        let (outcome, buf) = read_append(&mut self.tcp, std::mem::take(&mut self.incoming), timeout).await;
        self.incoming = buf;
        if matches!(outcome, ReadOutcome::Eof) {
            self.eof = true;
        }
        outcome
    }

    /// Gives rustls the ciphertext read (one `read_tls` at a time, so its plaintext
    /// buffer never overflows), or the EOF seen, and processes the records.
    fn feed(&mut self) -> Result<(), rustls::Error> {
        if self.pos < self.incoming.len() {
            let mut rd = &self.incoming[self.pos..];
            let before = rd.len();
            match self.tls.read_tls(&mut rd) {
                Ok(_) => self.pos += before - rd.len(),
                // rustls' buffer is full of plaintext nobody took; take it first.
                Err(_) => return Ok(()),
            }
        } else if self.eof {
            let _ = self.tls.read_tls(&mut &[][..]);
        }
        self.tls.process_new_packets().map(|_| ())
    }

    /// Sends whatever rustls has queued.
    async fn flush(&mut self) -> std::io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.outgoing)?;
        }
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let (res, mut out) = write_all_timeout(
            &mut self.tcp,
            std::mem::take(&mut self.outgoing),
            self.send_timeout,
        )
        .await;
        out.clear();
        self.outgoing = out;
        res.map(|_| ())
    }

    /// Appends decrypted bytes to `buf` (at most its spare capacity), waiting at most
    /// `timeout` for the peer; see [`read_append`].
    pub async fn read_append(&mut self, mut buf: Vec<u8>, timeout: Duration) -> (ReadOutcome, Vec<u8>) {
        let spare = buf.capacity() - buf.len();
        loop {
            match self.tls.reader().fill_buf() {
                Ok([]) => return (ReadOutcome::Eof, buf),
                Ok(chunk) => {
                    let n = chunk.len().min(spare);
                    buf.extend_from_slice(&chunk[..n]);
                    self.tls.reader().consume(n);
                    return (ReadOutcome::Data(n), buf);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: the peer went away.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return (ReadOutcome::Eof, buf),
                Err(_) => return (ReadOutcome::Failed, buf),
            }
            // Key updates and the like want an answer.
            if self.tls.wants_write() && self.flush().await.is_err() {
                return (ReadOutcome::Failed, buf);
            }
            if self.pos == self.incoming.len() {
                if self.eof {
                    return (ReadOutcome::Eof, buf);
                }
                match self.read_tls(timeout).await {
                    ReadOutcome::Data(_) | ReadOutcome::Eof => {}
                    other => return (other, buf),
                }
            }
            if self.feed().is_err() {
                let _ = self.flush().await;
                return (ReadOutcome::Failed, buf);
            }
        }
    }

    /// Encrypts and writes all of `buf`; fails when a write makes no progress for
    /// the send timeout.
    pub async fn write_all<T: Reclaim>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        let mut off = 0;
        let len = buf.bytes().len();
        while off < len {
            match self.tls.writer().write(&buf.bytes()[off..]) {
                Ok(n) => off += n,
                Err(e) => return (Err(e), buf),
            }
            // The plaintext was copied into rustls: `buf` is still ours.
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
        }
        (Ok(len), buf)
    }

    /// Sends close_notify (best effort; the connection is being closed anyway).
    pub async fn close(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush().await;
    }

    /// What is waiting on an idle connection, read without blocking: records are
    /// given to rustls, so that session tickets are absorbed and a close_notify or
    /// unasked plaintext is seen.
    pub fn poll_input(&mut self) -> Input {
        let Some(control) = &self.control else {
            return Input::Unknown;
        };
        // The socket is non-blocking (upstream sockets are made so before they
        // connect, and a dup shares the flag): this read never waits.
        let mut chunk = [0u8; 4096];
        loop {
            match (&*control).read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.incoming.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Input::Closed,
            }
        }
        while self.pos < self.incoming.len() || self.eof {
            let at = self.pos;
            if self.feed().is_err() {
                return Input::Closed;
            }
            if self.eof || self.pos == at {
                break;
            }
        }
        let mut probe = [0u8; 1];
        match self.tls.reader().read(&mut probe) {
            Ok(0) => Input::Closed,
            Ok(_) => Input::Waiting,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !self.eof => Input::None,
            Err(_) => Input::Closed,
        }
    }
}
