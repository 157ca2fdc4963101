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

use crate::io::{read_append, read_append_or, write_all_timeout, Input, ReadOutcome, Reclaim, Stop};
use monoio::io::Splitable;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::io::{BufRead, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Ciphertext read at once (a little more than one full record).
const TLS_READ: usize = 18 * 1024;

/// How long the close_notify at the end of a connection may wait for the peer's
/// window: the connection is being closed anyway.
const CLOSE_NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// A TLS connection over TCP.
pub struct TlsStream {
    /// The socket as two halves: ciphertext is read from one while the other
    /// writes (tunnels, `TlsStream::halves`).
    rd: TcpOwnedReadHalf,
    wr: TcpOwnedWriteHalf,
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
    /// A write failed: nothing more is sent (not even a close_notify).
    broken: bool,
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
        let (rd, wr) = tcp.into_split();
        TlsStream {
            rd,
            wr,
            control,
            tls,
            incoming: Vec::new(),
            pos: 0,
            outgoing: Vec::new(),
            send_timeout,
            eof: false,
            broken: false,
        }
    }

    /// The rustls connection (ALPN, SNI, resumption, peer certificates).
    pub fn session(&self) -> &rustls::Connection {
        &self.tls
    }

    /// Runs the handshake to completion within `timeout` (its writes included: a
    /// peer that does not read is given no more than what is left of it).
    pub async fn handshake(&mut self, timeout: Duration) -> Result<(), HandshakeError> {
        let deadline = Instant::now() + timeout;
        while self.tls.is_handshaking() {
            self.flush_by(deadline).await?;
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
                let _ = self.flush_by(deadline).await;
                return Err(HandshakeError::Tls(e));
            }
        }
        // The last flight (a server's tickets, a client's Finished).
        self.flush_by(deadline).await
    }

    /// [`TlsStream::flush`], each write bounded by what is left until `deadline`.
    async fn flush_by(&mut self, deadline: Instant) -> Result<(), HandshakeError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::TimedOut);
        }
        match self.flush_within(left.min(self.send_timeout)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(HandshakeError::TimedOut),
            Err(_) => Err(HandshakeError::Closed),
        }
    }

    /// Reads ciphertext from the socket into `incoming`.
    async fn read_tls(&mut self, timeout: Duration) -> ReadOutcome {
        if self.pos == self.incoming.len() {
            self.incoming.clear();
            self.pos = 0;
        }
        self.incoming.reserve(TLS_READ);
        let (outcome, buf) = read_append(&mut self.rd, std::mem::take(&mut self.incoming), timeout).await;
        self.incoming = buf;
        if matches!(outcome, ReadOutcome::Eof) {
            self.eof = true;
        }
        outcome
    }

    /// Gives rustls the ciphertext read (one `read_tls` at a time), or the EOF
    /// seen, and processes the records.
    ///
    /// rustls refuses more ciphertext only when a buffer of its own is full: of
    /// plaintext nobody took (callers take it before feeding more), or of one
    /// handshake message larger than it allows (a ClientHello declaring 64 KB,
    /// fragmented). Neither can make progress, so both fail the connection: a
    /// refusal taken for "try later" would spin without ever awaiting.
    fn feed(&mut self) -> Result<(), rustls::Error> {
        feed(&mut self.tls, &self.incoming, &mut self.pos, self.eof)
    }

    /// Sends whatever rustls has queued; a write may make no progress for the send
    /// timeout.
    async fn flush(&mut self) -> std::io::Result<()> {
        self.flush_within(self.send_timeout).await
    }

    async fn flush_within(&mut self, timeout: Duration) -> std::io::Result<()> {
        if self.broken {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.outgoing)?;
        }
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let (res, mut out) =
            write_all_timeout(&mut self.wr, std::mem::take(&mut self.outgoing), timeout).await;
        out.clear();
        self.outgoing = out;
        if res.is_err() {
            self.broken = true;
        }
        res.map(|_| ())
    }

    /// Appends decrypted bytes to `buf` (at most its spare capacity), waiting at most
    /// `timeout` in all for the peer — however it spreads a record over reads — as
    /// [`read_append`] does for TCP.
    ///
    /// A peer that closes without a close_notify: EOF for a client connection
    /// (clients often just close), a failure for an upstream one, so that a body
    /// that ends at close is not taken as whole when it was cut (RFC 9112 §9.8).
    pub async fn read_append(&mut self, mut buf: Vec<u8>, timeout: Duration) -> (ReadOutcome, Vec<u8>) {
        // Set at the first socket read: plaintext already decrypted needs no clock.
        let mut deadline = None;
        loop {
            // Clients often just close; an upstream's cut may be a cut body.
            let cut_is_eof = matches!(self.tls, rustls::Connection::Server(_));
            if let Some(outcome) = take_plaintext(&mut self.tls, &mut buf, cut_is_eof) {
                return (outcome, buf);
            }
            // Key updates and the like want an answer.
            if self.tls.wants_write() && self.flush().await.is_err() {
                return (ReadOutcome::Failed, buf);
            }
            if self.pos == self.incoming.len() {
                if self.eof {
                    return (ReadOutcome::Eof, buf);
                }
                let left = match deadline {
                    None => {
                        deadline = Some(Instant::now() + timeout);
                        timeout
                    }
                    Some(d) => d.saturating_duration_since(Instant::now()),
                };
                if left.is_zero() {
                    return (ReadOutcome::TimedOut, buf);
                }
                match self.read_tls(left).await {
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

    /// Sends close_notify (best effort, briefly, and not after a failed write: the
    /// connection is being closed anyway).
    pub async fn close(&mut self) {
        if self.broken {
            return;
        }
        self.tls.send_close_notify();
        let _ = self
            .flush_within(CLOSE_NOTIFY_TIMEOUT.min(self.send_timeout))
            .await;
    }

    /// What is waiting on an idle connection, read without blocking: records are
    /// given to rustls, so that session tickets are absorbed and a close_notify or
    /// unasked plaintext is seen.
    pub fn poll_input(&mut self) -> Input {
        let Some(control) = &self.control else {
            return Input::Unknown;
        };
        if self.pos == self.incoming.len() {
            self.incoming.clear();
            self.pos = 0;
        }
        // The socket is non-blocking (upstream sockets are made so before they
        // connect, and a dup shares the flag): this read never waits.
        let mut chunk = [0u8; 4096];
        // At most about a record's worth per look; the rest waits for the next.
        let mut taken = 0;
        while taken < TLS_READ {
            match (&*control).read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.incoming.extend_from_slice(&chunk[..n]);
                    taken += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Input::Closed,
            }
        }
        // `feed` consumes ciphertext or fails, so this ends; then the EOF, if seen.
        while self.pos < self.incoming.len() {
            if self.feed().is_err() {
                return Input::Closed;
            }
        }
        if self.eof && self.feed().is_err() {
            return Input::Closed;
        }
        // Looked at, not consumed: an early response is read by whoever relays it.
        match self.tls.reader().fill_buf() {
            Ok([]) => Input::Closed,
            Ok(_) => Input::Waiting,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !self.eof => Input::None,
            Err(_) => Input::Closed,
        }
    }
}

/// Moves decrypted bytes from rustls into `buf` (at most its spare capacity):
/// `None` when rustls has none and more ciphertext is needed.
///
/// A peer that closes without a close_notify: EOF when `cut_is_eof`, else a failure.
fn take_plaintext(tls: &mut rustls::Connection, buf: &mut Vec<u8>, cut_is_eof: bool) -> Option<ReadOutcome> {
    let spare = buf.capacity() - buf.len();
    match tls.reader().fill_buf() {
        Ok([]) => Some(ReadOutcome::Eof),
        Ok(chunk) => {
            let n = chunk.len().min(spare);
            buf.extend_from_slice(&chunk[..n]);
            tls.reader().consume(n);
            Some(ReadOutcome::Data(n))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Some(if cut_is_eof {
            ReadOutcome::Eof
        } else {
            ReadOutcome::Failed
        }),
        Err(_) => Some(ReadOutcome::Failed),
    }
}

/// Gives rustls the ciphertext read (`incoming[pos..]`, one `read_tls` at a time),
/// or the EOF seen, and processes the records.
///
/// rustls refuses more ciphertext only when a buffer of its own is full: of
/// plaintext nobody took (callers take it before feeding more), or of one
/// handshake message larger than it allows (a ClientHello declaring 64 KB,
/// fragmented). Neither can make progress, so both fail the connection: a
/// refusal taken for "try later" would spin without ever awaiting.
fn feed(
    tls: &mut rustls::Connection,
    incoming: &[u8],
    pos: &mut usize,
    eof: bool,
) -> Result<(), rustls::Error> {
    if *pos < incoming.len() {
        let mut rd = &incoming[*pos..];
        let before = rd.len();
        match tls.read_tls(&mut rd) {
            Ok(_) if rd.len() < before => *pos += before - rd.len(),
            Ok(_) | Err(_) => {
                return Err(rustls::Error::General("TLS receive buffer full".into()));
            }
        }
    } else if eof {
        let _ = tls.read_tls(&mut &[][..]);
    }
    tls.process_new_packets().map(|_| ())
}

/// The reading half of a [`TlsStream`] lent to a tunnel ([`TlsStream::halves`]).
pub struct TlsRead<'a> {
    rd: &'a mut TcpOwnedReadHalf,
    incoming: &'a mut Vec<u8>,
    pos: &'a mut usize,
    eof: &'a mut bool,
    tls: Rc<RefCell<&'a mut rustls::Connection>>,
}

/// The writing half of a [`TlsStream`] lent to a tunnel.
pub struct TlsWrite<'a> {
    wr: &'a mut TcpOwnedWriteHalf,
    outgoing: &'a mut Vec<u8>,
    broken: &'a mut bool,
    send_timeout: Duration,
    tls: Rc<RefCell<&'a mut rustls::Connection>>,
}

impl TlsStream {
    /// The stream as a reading and a writing half that can wait at the same time
    /// (one task, two futures): they share the rustls state, borrowed only between
    /// awaits, and each has its own half of the socket.
    ///
    /// Records the reading half makes rustls queue (an alert, a key update's
    /// answer) go out with the writing half's next write or its shutdown.
    pub fn halves(&mut self) -> (TlsRead<'_>, TlsWrite<'_>) {
        let tls = Rc::new(RefCell::new(&mut self.tls));
        (
            TlsRead {
                rd: &mut self.rd,
                incoming: &mut self.incoming,
                pos: &mut self.pos,
                eof: &mut self.eof,
                tls: tls.clone(),
            },
            TlsWrite {
                wr: &mut self.wr,
                outgoing: &mut self.outgoing,
                broken: &mut self.broken,
                send_timeout: self.send_timeout,
                tls,
            },
        )
    }
}

impl TlsRead<'_> {
    /// [`TlsStream::read_append`], also ended by `stops` (reported as a timeout).
    /// A peer that closes without a close_notify ends its stream here on either
    /// side: a tunnel has no message framing a cut could corrupt, and TLS servers
    /// often just close.
    pub async fn read_append(
        &mut self,
        mut buf: Vec<u8>,
        timeout: Duration,
        stops: &[&Stop],
    ) -> (ReadOutcome, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(outcome) = take_plaintext(&mut self.tls.borrow_mut(), &mut buf, true) {
                return (outcome, buf);
            }
            if *self.pos == self.incoming.len() {
                if *self.eof {
                    return (ReadOutcome::Eof, buf);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (ReadOutcome::TimedOut, buf);
                }
                self.incoming.clear();
                *self.pos = 0;
                self.incoming.reserve(TLS_READ);
                let (outcome, b) = read_append_or(self.rd, std::mem::take(self.incoming), left, stops).await;
                *self.incoming = b;
                match outcome {
                    ReadOutcome::Data(_) => {}
                    ReadOutcome::Eof => *self.eof = true,
                    other => return (other, buf),
                }
            }
            if feed(&mut self.tls.borrow_mut(), self.incoming, self.pos, *self.eof).is_err() {
                return (ReadOutcome::Failed, buf);
            }
        }
    }
}

impl TlsWrite<'_> {
    /// Encrypts and writes all of `buf` (and whatever rustls had queued).
    pub async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut off = 0;
        loop {
            {
                let mut tls = self.tls.borrow_mut();
                if off < buf.len() {
                    off += tls.writer().write(&buf[off..])?;
                }
                while tls.wants_write() {
                    tls.write_tls(self.outgoing)?;
                }
            }
            self.flush(self.send_timeout).await?;
            if off == buf.len() {
                return Ok(());
            }
        }
    }

    /// Ends this direction: a close_notify (briefly: the tunnel is ending).
    pub async fn shutdown(&mut self) {
        if *self.broken {
            return;
        }
        {
            let mut tls = self.tls.borrow_mut();
            tls.send_close_notify();
            while tls.wants_write() {
                if tls.write_tls(self.outgoing).is_err() {
                    break;
                }
            }
        }
        let _ = self.flush(CLOSE_NOTIFY_TIMEOUT.min(self.send_timeout)).await;
    }

    async fn flush(&mut self, timeout: Duration) -> std::io::Result<()> {
        if *self.broken {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let (res, mut out) = write_all_timeout(self.wr, std::mem::take(self.outgoing), timeout).await;
        out.clear();
        *self.outgoing = out;
        if res.is_err() {
            *self.broken = true;
        }
        res.map(|_| ())
    }
}
