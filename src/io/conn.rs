//! [`Conn`]: one connection, client or upstream, whatever carries it.
//!
//! Every read and write of the request path goes through these methods: plain TCP
//! and TLS ([`TlsStream`]) are two arms here and nowhere else.
//!
//! An upstream connection also keeps a second descriptor of its socket (`control`,
//! a `dup` made when it was connected). monoio's stream exposes no borrowed
//! descriptor, and the project forbids `unsafe`; the extra descriptor is what lets
//! [`Conn::poll_input`] look at the socket without reading it — has the upstream
//! closed this idle pooled connection, or answered before the body was sent? — with
//! one non-blocking `recv(MSG_PEEK)`, and never an io_uring round trip.

use crate::io::tunnel::{ReadHalf, WriteHalf};
use crate::io::{read_append, write_all_timeout, ParkingLot, ReadOutcome, Reclaim, TlsStream};
use monoio::io::Splitable;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;
use monoio::BufResult;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

/// A connection to a client or an upstream.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP; `control` is a second descriptor of the same socket, for
    /// upstream connections. The stream is kept as its two halves, so that a tunnel
    /// can read one while it writes the other (`io/tunnel.rs`); dropping the write
    /// half shuts the socket's sending side.
    Tcp {
        rd: TcpOwnedReadHalf,
        wr: TcpOwnedWriteHalf,
        control: Option<socket2::Socket>,
        /// How long a write may make no progress before the connection is given up.
        send_timeout: Duration,
    },
    /// TLS over TCP (boxed: the rustls state is large and most connections are
    /// moved around as `Conn`).
    Tls(Box<TlsStream>),
}

/// What [`Conn::poll_input`] saw, without consuming anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Nothing to read: the peer is quiet and has not closed.
    None,
    /// Bytes are waiting.
    Waiting,
    /// The peer closed (or reset) its side.
    Closed,
    /// This connection cannot be looked at without reading it (a client connection).
    Unknown,
}

impl Conn {
    /// A client connection; a write that makes no progress for `send_timeout`
    /// fails (nginx's `send_timeout`).
    pub fn client(stream: TcpStream, send_timeout: Duration) -> Conn {
        let (rd, wr) = stream.into_split();
        Conn::Tcp {
            rd,
            wr,
            control: None,
            send_timeout,
        }
    }

    /// An upstream connection, with a second descriptor of its socket.
    pub fn upstream(stream: TcpStream, control: socket2::Socket, send_timeout: Duration) -> Conn {
        let (rd, wr) = stream.into_split();
        Conn::Tcp {
            rd,
            wr,
            control: Some(control),
            send_timeout,
        }
    }

    /// Appends what arrives to `buf` (reserve spare capacity first), waiting at most
    /// `timeout`; see [`read_append`].
    #[inline]
    pub async fn read_append(&mut self, buf: Vec<u8>, timeout: Duration) -> (ReadOutcome, Vec<u8>) {
        match self {
            Conn::Tcp { rd, .. } => read_append(rd, buf, timeout).await,
            Conn::Tls(t) => t.read_append(buf, timeout).await,
        }
    }

    /// [`Self::read_append`] for a long wait, until `until`: a TCP read parked in
    /// `lot` (no timer of its own; `buf` small), a TLS one as usual.
    pub async fn read_parked(
        &mut self,
        lot: &ParkingLot,
        buf: Vec<u8>,
        until: Instant,
    ) -> (ReadOutcome, Vec<u8>) {
        match self {
            Conn::Tcp { rd, .. } => lot.read(rd, buf, until).await,
            Conn::Tls(t) => {
                let wait = until.saturating_duration_since(Instant::now());
                Box::pin(t.read_append(buf, wait)).await
            }
        }
    }

    /// Writes all of `buf`; fails when a write makes no progress for the
    /// connection's send timeout.
    #[inline]
    pub async fn write_all<T: Reclaim>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Conn::Tcp { wr, send_timeout, .. } => write_all_timeout(wr, buf, *send_timeout).await,
            Conn::Tls(t) => t.write_all(buf).await,
        }
    }

    /// The connection as a read half and a write half that can wait at the same
    /// time (in one task): what a tunnel relays through.
    pub fn halves(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Conn::Tcp {
                rd, wr, send_timeout, ..
            } => (
                ReadHalf::Tcp(rd),
                WriteHalf::Tcp {
                    wr,
                    send_timeout: *send_timeout,
                },
            ),
            Conn::Tls(t) => {
                let (r, w) = t.halves();
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }

    /// A plain TCP connection's halves and send timeout, for `splice` (a TLS one has
    /// to pass its bytes through rustls: `None`).
    pub fn tcp_halves(&mut self) -> Option<(&mut TcpOwnedReadHalf, &mut TcpOwnedWriteHalf, Duration)> {
        match self {
            Conn::Tcp {
                rd, wr, send_timeout, ..
            } => Some((rd, wr, *send_timeout)),
            Conn::Tls(_) => None,
        }
    }

    /// Whether this connection is encrypted (for `X-Forwarded-Proto`).
    #[inline]
    pub fn is_tls(&self) -> bool {
        match self {
            Conn::Tcp { .. } => false,
            Conn::Tls(_) => true,
        }
    }

    /// Sends a TLS close_notify before the connection is dropped (nothing for TCP).
    pub async fn close(&mut self) {
        if let Conn::Tls(t) = self {
            t.close().await;
        }
    }

    /// Looks at the socket without waiting (TCP: one non-blocking `recv(MSG_PEEK)`;
    /// TLS: the records waiting are read and processed, see [`TlsStream::poll_input`]):
    /// is anything waiting, or has the peer closed?
    pub fn poll_input(&mut self) -> Input {
        if let Conn::Tls(t) = self {
            return t.poll_input();
        }
        let Conn::Tcp {
            control: Some(control),
            ..
        } = self
        else {
            return Input::Unknown;
        };
        let mut byte = [MaybeUninit::<u8>::uninit()];
        match control.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => Input::Closed,
            Ok(_) => Input::Waiting,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Input::None,
            Err(_) => Input::Closed,
        }
    }
}
