//! Byte streams as the rest of ringway sees them: [`Conn`], a client or upstream
//! connection over TCP or TLS ([`TlsStream`], rustls over the same reads and writes),
//! and reads with a deadline that neither lose the buffer nor leave an operation in
//! flight.
//!
//! Imports nothing else of `src/`.
//!
//! Under io_uring a read owns its buffer until the kernel completes it. Dropping a
//! read future on timeout (what `monoio::time::timeout` does) leaves the operation
//! running: the buffer is gone and the socket stays open until the peer sends a
//! byte. So a timed-out read is cancelled explicitly and awaited to completion,
//! which hands the buffer back and releases the socket.

mod conn;
mod park;
pub mod splice;
pub mod tls;
pub mod tunnel;
pub mod watch;

pub use conn::{Conn, Input};
pub use park::ParkingLot;
pub use tls::{HandshakeError, TlsStream};

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncWriteRent, CancelableAsyncReadRent, Canceller};
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// What a read produced.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes were appended.
    Data(usize),
    /// The peer closed its side.
    Eof,
    /// Nothing arrived before the deadline.
    TimedOut,
    /// The read failed (reset and the like).
    Failed,
}

/// Appends at most the spare capacity of `buf` (reserve before calling) with bytes
/// read from `io`, waiting at most `timeout`.
pub async fn read_append<S: CancelableAsyncReadRent>(
    io: &mut S,
    buf: Vec<u8>,
    timeout: Duration,
) -> (ReadOutcome, Vec<u8>) {
    read_append_or(io, buf, timeout, &[]).await
}

/// [`read_append`] that also gives up, as if timed out, when one of `stops` fires (a
/// tunnel's other direction ended; the shard's drain is over).
pub async fn read_append_or<S: CancelableAsyncReadRent>(
    io: &mut S,
    buf: Vec<u8>,
    timeout: Duration,
    stops: &[&Stop],
) -> (ReadOutcome, Vec<u8>) {
    let len = buf.len();
    let canceller = Canceller::new();
    let read = io.cancelable_read(buf.slice_mut(len..), canceller.handle());
    let mut read = pin!(read);
    let mut sleep = pin!(monoio::time::sleep(timeout));
    let first = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if sleep.as_mut().poll(cx).is_ready() || stops.iter().any(|s| s.poll(cx)) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    let (timed_out, (res, slice)) = match first {
        Some(r) => (false, r),
        None => {
            let _ = canceller.cancel();
            (true, read.await)
        }
    };
    (ReadOutcome::of(res, timed_out), SliceMut::into_inner(slice))
}

impl ReadOutcome {
    /// What a read that returned `res` produced; `cancelled` when it was cancelled
    /// for its deadline (then nothing read is a timeout, not an end).
    fn of(res: std::io::Result<usize>, cancelled: bool) -> ReadOutcome {
        match res {
            Ok(0) if cancelled => ReadOutcome::TimedOut,
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => ReadOutcome::Data(n),
            Err(_) if cancelled => ReadOutcome::TimedOut,
            Err(_) => ReadOutcome::Failed,
        }
    }
}

/// A signal that ends the reads waiting on it: one direction of a tunnel tells the
/// other to stop. Single-threaded (a tunnel's two directions run in one task).
#[derive(Debug, Default)]
pub struct Stop {
    fired: std::cell::Cell<bool>,
    waiters: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl Stop {
    /// Ends every read waiting on this, and every later one at once.
    pub fn fire(&self) {
        self.fired.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// True once fired; else registers the task to be woken.
    fn poll(&self, cx: &std::task::Context<'_>) -> bool {
        if self.fired.get() {
            return true;
        }
        let mut w = self.waiters.borrow_mut();
        if !w.iter().any(|w| w.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        false
    }
}

/// A buffer that a timed-out write can stand in for: the real one stays with the
/// cancelled operation (the driver frees it when the kernel lets go), and the
/// caller gets an empty one back.
pub trait Reclaim: IoBuf + 'static {
    fn lost() -> Self;

    /// The bytes to write (a TLS stream encrypts them rather than handing the
    /// buffer to the kernel).
    fn bytes(&self) -> &[u8];
}

impl Reclaim for Vec<u8> {
    fn lost() -> Self {
        Vec::new()
    }

    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Reclaim for &'static [u8] {
    fn lost() -> Self {
        &[]
    }

    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Reclaim for monoio::buf::Slice<Vec<u8>> {
    fn lost() -> Self {
        Vec::new().slice(..)
    }

    fn bytes(&self) -> &[u8] {
        &self.get_ref()[self.begin()..self.end()]
    }
}

/// Writes all of `buf` to `io`, giving up when a single write makes no progress for
/// `timeout` (a peer that stopped reading: its window and our send buffer are full).
/// The deadline is kept by the thread's [`watch`] list, not a timer per write: the
/// shard's ticker marks a write still in flight at its deadline (within
/// [`watch::TICK`]) and wakes it; the write is then dropped, which cancels it in the
/// kernel while the driver keeps its buffer. The error of a timeout has kind
/// `TimedOut`, and the buffer returned with it is an empty stand-in.
pub async fn write_all_timeout<S: AsyncWriteRent, T: Reclaim>(
    io: &mut S,
    buf: T,
    timeout: Duration,
) -> monoio::BufResult<usize, T> {
    let len = buf.bytes_init();
    let mut buf = buf;
    let mut written = 0;
    while written < len {
        let done = {
            let write = pin!(io.write(buf.slice(written..)));
            watch::watched(write, timeout).await
        };
        let Some((res, slice)) = done else {
            return (Err(std::io::ErrorKind::TimedOut.into()), T::lost());
        };
        buf = slice.into_inner();
        match res {
            Ok(n) if n > 0 => written += n,
            Ok(_) => return (Err(std::io::ErrorKind::WriteZero.into()), buf),
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(written), buf)
}
