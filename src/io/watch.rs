//! Write deadlines without a timer per write.
//!
//! A write to a peer that stopped reading never completes, so every write needs a
//! deadline. Most writes complete at once, so a monoio timer and a canceller per
//! write are armed and torn down for nothing (`docs/benchmarks.md`, "The hardening
//! work", has the same-run figures of both designs against unbounded writes).
//! Instead, a write takes a slot in this thread's watch list (a
//! reused slot: no allocation in the steady state) and gives it back when it
//! completes; a ticker task on each shard calls [`expire`] every [`TICK`], which
//! marks the writes whose deadline has passed and wakes their tasks. The writer
//! then drops its write: with monoio's `async-cancel`, the driver keeps the buffer
//! and cancels the operation in the kernel. A write times out between its deadline
//! and one tick after it.
//!
//! Every runtime is one thread, so the list is a thread-local: no locks, no sharing.

use std::cell::RefCell;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// How often [`expire`] should run; the precision of a write deadline.
pub const TICK: Duration = Duration::from_millis(100);

struct Slot {
    /// `None` while free.
    deadline: Option<Instant>,
    /// The task to wake when the deadline passes (set once the write is pending).
    waker: Option<Waker>,
    /// The deadline passed.
    fired: bool,
}

#[derive(Default)]
struct Watches {
    slots: Vec<Slot>,
    free: Vec<usize>,
    armed: usize,
}

thread_local! {
    static WATCHES: RefCell<Watches> = RefCell::new(Watches::default());
}

/// A write being watched; give it back with [`disarm`].
#[derive(Debug)]
pub struct Armed {
    slot: usize,
}

/// Watches a write that must complete within `timeout`.
pub fn arm(timeout: Duration) -> Armed {
    let deadline = Instant::now() + timeout;
    WATCHES.with(|w| {
        let mut w = w.borrow_mut();
        w.armed += 1;
        let slot = match w.free.pop() {
            Some(i) => i,
            None => {
                w.slots.push(Slot {
                    deadline: None,
                    waker: None,
                    fired: false,
                });
                w.slots.len() - 1
            }
        };
        let s = &mut w.slots[slot];
        s.deadline = Some(deadline);
        s.fired = false;
        Armed { slot }
    })
}

/// True once the deadline of `armed` has passed; else remembers `cx`'s waker, to be
/// woken when it does.
pub fn poll_fired(armed: &Armed, cx: &Context<'_>) -> bool {
    WATCHES.with(|w| {
        let mut w = w.borrow_mut();
        let s = &mut w.slots[armed.slot];
        if s.fired {
            return true;
        }
        match &s.waker {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        false
    })
}

/// Runs `op` (a write) under a watch of `timeout`: its output, or `None` once the
/// deadline has passed (the caller then drops `op`, which cancels it).
pub async fn watched<F: std::future::Future>(
    op: std::pin::Pin<&mut F>,
    timeout: Duration,
) -> Option<F::Output> {
    let mut op = op;
    let armed = arm(timeout);
    let done = std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(r) = op.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(r));
        }
        if poll_fired(&armed, cx) {
            return std::task::Poll::Ready(None);
        }
        std::task::Poll::Pending
    })
    .await;
    disarm(armed);
    done
}

/// Stops watching; true when the deadline had passed.
pub fn disarm(armed: Armed) -> bool {
    WATCHES.with(|w| {
        let mut w = w.borrow_mut();
        w.armed -= 1;
        w.free.push(armed.slot);
        let s = &mut w.slots[armed.slot];
        s.deadline = None;
        s.waker = None;
        s.fired
    })
}

/// Marks every watched write whose deadline is before `now` and wakes its task.
pub fn expire(now: Instant) {
    let mut wake = Vec::new();
    WATCHES.with(|w| {
        let mut w = w.borrow_mut();
        if w.armed == 0 {
            return;
        }
        for s in &mut w.slots {
            if s.deadline.is_some_and(|d| d <= now) && !s.fired {
                s.fired = true;
                wake.extend(s.waker.take());
            }
        }
    });
    // Woken outside the borrow: a task may run (and arm) at once.
    for w in wake {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_only_passed_deadlines_fire() {
        let a = arm(Duration::from_secs(60));
        let b = arm(Duration::ZERO);
        expire(Instant::now() + Duration::from_millis(1));
        assert!(disarm(b), "a passed deadline fires");
        assert!(!disarm(a), "a future one does not");
        let c = arm(Duration::from_secs(60));
        assert!(c.slot < 2, "a freed slot is reused");
        assert!(!disarm(c));
        WATCHES.with(|w| assert_eq!(w.borrow().armed, 0));
    }
}
