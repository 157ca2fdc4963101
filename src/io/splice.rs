//! Moving bytes from one TCP socket to another through a pipe, with `splice(2)`:
//! they never enter the process's memory.
//!
//! monoio's own `zero_copy` copies until EOF in 4 KiB steps, so it cannot frame a
//! `Content-Length` body and pays a round trip per 4 KiB. [`exact`] moves exactly
//! `n` bytes in steps of up to the pipe's size, with the deadlines every other read
//! and write has: a step that waits for the source longer than `read_timeout` is
//! cancelled (dropping an io_uring operation with `async-cancel` cancels it in the
//! kernel; the pipe is then thrown away, as it may hold bytes), and a write to the
//! destination that makes no progress for its send timeout fails through the same
//! write watch as [`crate::io::write_all_timeout`].
//!
//! A pipe is lent per transfer and goes back to its shard's pool only empty
//! ([`Pipes`]): two transfers never share one.

use crate::io::watch;
use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::unix::Pipe;
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Most bytes asked of one splice into the pipe: a Linux pipe holds 64 KiB
/// (16 pages) unless resized, and a larger ask only returns that much.
const STEP: u32 = 64 * 1024;

/// Idle pipes kept per shard.
const POOL: usize = 16;

/// Pipes lent out at once per shard (two descriptors each): past this, bodies are
/// copied, so that a burst of large responses cannot spend the descriptors that
/// accepts and connects need.
const MAX_LENT: usize = 256;

/// A pipe's two ends.
pub struct PipePair {
    read: Pipe,
    write: Pipe,
}

impl std::fmt::Debug for PipePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PipePair")
    }
}

/// A shard's idle pipes.
#[derive(Debug, Default)]
pub struct Pipes {
    idle: RefCell<Vec<PipePair>>,
    lent: std::cell::Cell<usize>,
}

impl Pipes {
    /// An empty pipe: an idle one, or a new one (`None` if the process is out of
    /// descriptors: the caller copies instead).
    pub fn take(&self) -> Option<PipePair> {
        if self.lent.get() >= MAX_LENT {
            return None;
        }
        let p = match self.idle.borrow_mut().pop() {
            Some(p) => p,
            None => {
                let (read, write) = monoio::net::unix::new_pipe().ok()?;
                PipePair { read, write }
            }
        };
        self.lent.set(self.lent.get() + 1);
        Some(p)
    }

    /// Gives back a pipe a transfer left empty.
    pub fn give(&self, p: PipePair) {
        self.lost();
        let mut idle = self.idle.borrow_mut();
        if idle.len() < POOL {
            idle.push(p);
        }
    }

    /// A lent pipe was dropped (its transfer failed: it may hold bytes).
    pub fn lost(&self) {
        self.lent.set(self.lent.get().saturating_sub(1));
    }
}

/// Why a splice transfer stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// The source closed, failed, or sent nothing for `read_timeout`.
    Source,
    /// The destination failed or took nothing for its send timeout.
    Destination,
}

/// Moves exactly `n` bytes from `from` to `to` through `pipe`. On success the pipe
/// is empty (give it back); on an error it may not be (drop it).
pub async fn exact(
    from: &mut TcpOwnedReadHalf,
    to: &mut TcpOwnedWriteHalf,
    pipe: &mut PipePair,
    n: u64,
    read_timeout: Duration,
    send_timeout: Duration,
    mut moved: impl FnMut(u64),
) -> Result<(), SpliceError> {
    let mut left = n;
    while left > 0 {
        let ask = left.min(u64::from(STEP)) as u32;
        let got = {
            let into = pin!(from.splice_to_pipe(&mut pipe.write, ask));
            within(into, read_timeout).await
        };
        let mut in_pipe = match got {
            Some(Ok(k)) if k > 0 => k,
            _ => return Err(SpliceError::Source),
        };
        left -= u64::from(in_pipe);
        while in_pipe > 0 {
            let out = {
                let out = pin!(to.splice_from_pipe(&mut pipe.read, in_pipe));
                watch::watched(out, send_timeout).await
            };
            match out {
                Some(Ok(k)) if k > 0 => {
                    in_pipe -= k;
                    moved(u64::from(k));
                }
                _ => return Err(SpliceError::Destination),
            }
        }
    }
    Ok(())
}

/// `op`'s result, or `None` once `timeout` has passed (the operation is then
/// dropped, which cancels it).
async fn within<F: Future>(mut op: std::pin::Pin<&mut F>, timeout: Duration) -> Option<F::Output> {
    let mut sleep = pin!(monoio::time::sleep(timeout));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = op.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}
