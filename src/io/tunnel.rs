//! A tunnel: two connections relayed both ways until both sides have closed, for an
//! upgraded connection (WebSocket and other `101 Switching Protocols`).
//!
//! Both directions run in the caller's task (`monoio::join!`), each reading one
//! connection's read half and writing the other's write half ([`Conn::halves`];
//! a TLS stream's halves share its rustls state, borrowed only between awaits). A
//! side that ends its stream (EOF, or a TLS close_notify) is half-closed on the
//! other connection — TCP `shutdown(SHUT_WR)`, or a close_notify — and the other
//! direction goes on until it ends too. A read or write that fails ends both
//! directions at once ([`Stop`]), and so does `idle`: no byte either way for that
//! long. Writes keep the connections' send timeouts.

use crate::io::tls::{TlsRead, TlsWrite};
use crate::io::{read_append_or, write_all_timeout, Conn, ReadOutcome, Stop};
use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRent;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their stream (cleanly, in either order).
    Closed,
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// A read or a write failed (a reset, a peer that stopped reading).
    Failed,
    /// Ended by the shard: a drain's time was up.
    Drained,
}

impl End {
    pub fn as_str(&self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Idle => "idle_timeout",
            End::Failed => "failed",
            End::Drained => "drained",
        }
    }

    /// Every way, in the order metrics list them.
    pub const ALL: [End; 4] = [End::Closed, End::Idle, End::Failed, End::Drained];
}

/// What a tunnel moved, and how it ended.
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    /// Bytes read from `a` and written to `b`.
    pub a_to_b: u64,
    /// Bytes read from `b` and written to `a`.
    pub b_to_a: u64,
    pub end: End,
}

/// The read half of a connection lent to a tunnel.
pub enum ReadHalf<'a> {
    Tcp(&'a mut TcpOwnedReadHalf),
    Tls(TlsRead<'a>),
}

/// The write half of a connection lent to a tunnel.
pub enum WriteHalf<'a> {
    Tcp {
        wr: &'a mut TcpOwnedWriteHalf,
        send_timeout: Duration,
    },
    Tls(TlsWrite<'a>),
}

impl ReadHalf<'_> {
    async fn read(&mut self, buf: Vec<u8>, timeout: Duration, stops: &[&Stop]) -> (ReadOutcome, Vec<u8>) {
        match self {
            ReadHalf::Tcp(rd) => read_append_or(*rd, buf, timeout, stops).await,
            ReadHalf::Tls(t) => t.read_append(buf, timeout, stops).await,
        }
    }
}

impl WriteHalf<'_> {
    /// Writes `buf[..n]`; the buffer comes back (empty after a timed-out write).
    async fn write(&mut self, buf: Vec<u8>, n: usize) -> (std::io::Result<()>, Vec<u8>) {
        match self {
            WriteHalf::Tcp { wr, send_timeout } => {
                let (r, s) = write_all_timeout(*wr, buf.slice(..n), *send_timeout).await;
                (r.map(|_| ()), s.into_inner())
            }
            WriteHalf::Tls(t) => {
                let r = t.write_all(&buf[..n]).await;
                (r, buf)
            }
        }
    }

    /// Half-closes: no more bytes go this way.
    async fn shutdown(&mut self) {
        match self {
            WriteHalf::Tcp { wr, .. } => {
                let _ = wr.shutdown().await;
            }
            WriteHalf::Tls(t) => t.shutdown().await,
        }
    }
}

/// Relays `a` and `b` both ways until both have closed, one fails, nothing moves
/// for `idle`, or `outer` fires (the shard's drain is over). `bufs` are the two
/// directions' read buffers (their capacity is the most read at once); they are
/// handed back. `count[0]` is told of every write to `b`, `count[1]` of every write
/// to `a` (live metrics of a long tunnel).
pub async fn relay(
    a: &mut Conn,
    b: &mut Conn,
    bufs: [Vec<u8>; 2],
    timeouts: Timeouts,
    outer: &Stop,
    count: [&dyn Fn(u64); 2],
) -> (Ended, [Vec<u8>; 2]) {
    let [buf_ab, buf_ba] = bufs;
    let (mut a_rd, mut a_wr) = a.halves();
    let (mut b_rd, mut b_wr) = b.halves();
    let last = Cell::new(Instant::now());
    let stop = Stop::default();
    let shared = Shared {
        timeouts,
        last: &last,
        stop: &stop,
        half: &Stop::default(),
        outer,
    };
    let ((ab, end_ab, buf_ab), (ba, end_ba, buf_ba)) = monoio::join!(
        pump(&mut a_rd, &mut b_wr, buf_ab, &shared, count[0]),
        pump(&mut b_rd, &mut a_wr, buf_ba, &shared, count[1]),
    );
    let end = match (end_ab, end_ba) {
        (End::Failed, _) | (_, End::Failed) => End::Failed,
        (End::Idle, _) | (_, End::Idle) => End::Idle,
        (End::Drained, _) | (_, End::Drained) => End::Drained,
        _ => End::Closed,
    };
    let ended = Ended {
        a_to_b: ab,
        b_to_a: ba,
        end,
    };
    (ended, [buf_ab, buf_ba])
}

/// A tunnel's waits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// No byte either way this long ends the tunnel.
    pub idle: Duration,
    /// Once one side has ended its stream, the other has this long (at most `idle`)
    /// of silence before the tunnel ends: a half-closed tunnel whose other side
    /// never closes is not kept for the whole idle time (HAProxy's
    /// `timeout client-fin` / `server-fin`).
    pub half_closed: Duration,
}

/// What the two directions share.
struct Shared<'s> {
    timeouts: Timeouts,
    /// When a byte last moved either way (or a side half-closed).
    last: &'s Cell<Instant>,
    /// One direction ended the tunnel (a failure, idle): the other stops.
    stop: &'s Stop,
    /// One side ended its stream: the other's wait shortens to `half_closed`.
    half: &'s Stop,
    /// The shard's drain is over.
    outer: &'s Stop,
}

/// One direction: read `rd`, write `wr`, until `rd` ends (then `wr` is half-closed),
/// something fails, the tunnel is idle, or a stop fires: the other direction's or
/// the shard's.
async fn pump(
    rd: &mut ReadHalf<'_>,
    wr: &mut WriteHalf<'_>,
    mut buf: Vec<u8>,
    sh: &Shared<'_>,
    count: &dyn Fn(u64),
) -> (u64, End, Vec<u8>) {
    let (stop, outer, last) = (sh.stop, sh.outer, sh.last);
    let mut moved = 0u64;
    loop {
        if outer.is_fired() {
            stop.fire();
            return (moved, End::Drained, buf);
        }
        if stop.is_fired() {
            // The other direction failed or went idle; it reports why.
            return (moved, End::Closed, buf);
        }
        let half_closed = sh.half.is_fired();
        let idle = if half_closed {
            sh.timeouts.idle.min(sh.timeouts.half_closed)
        } else {
            sh.timeouts.idle
        };
        let left = (last.get() + idle).saturating_duration_since(Instant::now());
        if left.is_zero() {
            stop.fire();
            return (moved, End::Idle, buf);
        }
        buf.clear();
        // Until a side half-closes, that too wakes the read (its wait shortens).
        let all = [stop, outer, sh.half];
        let stops = if half_closed { &all[..2] } else { &all[..] };
        let (outcome, b) = rd.read(buf, left, stops).await;
        buf = b;
        match outcome {
            ReadOutcome::Data(n) => {
                last.set(Instant::now());
                let (r, b) = wr.write(buf, n).await;
                buf = b;
                if r.is_err() {
                    stop.fire();
                    return (moved, End::Failed, buf);
                }
                moved += n as u64;
                count(n as u64);
            }
            ReadOutcome::Eof => {
                wr.shutdown().await;
                last.set(Instant::now());
                sh.half.fire();
                return (moved, End::Closed, buf);
            }
            // Idle on this side: the deadline is looked at again (the other side
            // may have been busy), or the stop seen.
            ReadOutcome::TimedOut => {}
            ReadOutcome::Failed => {
                stop.fire();
                return (moved, End::Failed, buf);
            }
        }
    }
}
