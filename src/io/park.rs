//! Parked reads: long waits for a first byte that hold neither a timer nor a
//! buffer of their own.
//!
//! An idle keep-alive client waits on a read. Under io_uring the read owns its buffer
//! while it waits, and a deadline per connection is a timer entry (monoio's is
//! hundreds of bytes). Ten thousand idle clients would hold ten thousand of each. A
//! parked read instead gets a small buffer from its caller and registers its
//! [`Canceller`] and deadline here, in the shard's lot; a once-a-second sweep
//! ([`ParkingLot::sweep`]) cancels the reads whose deadline has passed. The price is
//! precision: a parked read times out up to one sweep late.

use crate::io::ReadOutcome;
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{CancelableAsyncReadRent, Canceller};
use std::cell::RefCell;
use std::time::Instant;

/// The parked reads of one shard.
#[derive(Debug, Default)]
pub struct ParkingLot {
    slots: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Entry>,
    free: Vec<usize>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("entries", &self.entries.len())
            .field("free", &self.free.len())
            .finish()
    }
}

enum Entry {
    Free,
    Waiting(Instant, Canceller),
    /// The sweep cancelled it; its reader has not looked yet.
    Expired,
}

impl ParkingLot {
    /// Reads what arrives into the spare capacity of `buf` (which the caller keeps
    /// small), waiting until `until` (give or take a sweep).
    pub async fn read<S: CancelableAsyncReadRent>(
        &self,
        io: &mut S,
        buf: Vec<u8>,
        until: Instant,
    ) -> (ReadOutcome, Vec<u8>) {
        if Instant::now() >= until {
            return (ReadOutcome::TimedOut, buf);
        }
        let canceller = Canceller::new();
        let handle = canceller.handle();
        // Unparked in the poll that completes the read. (Were this future dropped
        // while waiting — only when the shard's runtime ends — the slot would stay
        // taken.)
        let slot = self.park(until, canceller);
        let len = buf.len();
        let (res, slice) = io.cancelable_read(buf.slice_mut(len..), handle).await;
        let expired = self.unpark(slot);
        (ReadOutcome::of(res, expired), SliceMut::into_inner(slice))
    }

    fn park(&self, until: Instant, canceller: Canceller) -> usize {
        let mut s = self.slots.borrow_mut();
        let entry = Entry::Waiting(until, canceller);
        match s.free.pop() {
            Some(i) => {
                s.entries[i] = entry;
                i
            }
            None => {
                s.entries.push(entry);
                s.entries.len() - 1
            }
        }
    }

    /// Frees `slot`; true when the sweep had cancelled its read.
    fn unpark(&self, slot: usize) -> bool {
        let mut s = self.slots.borrow_mut();
        let Some(e) = s.entries.get_mut(slot) else {
            return false;
        };
        let expired = matches!(e, Entry::Expired);
        *e = Entry::Free;
        s.free.push(slot);
        expired
    }

    /// Cancels the parked reads whose deadline is at or before `now`.
    pub fn sweep(&self, now: Instant) {
        let due: Vec<Canceller> = {
            let mut s = self.slots.borrow_mut();
            let mut due = Vec::new();
            for e in s.entries.iter_mut() {
                if matches!(e, Entry::Waiting(until, _) if *until <= now) {
                    if let Entry::Waiting(_, c) = std::mem::replace(e, Entry::Expired) {
                        due.push(c);
                    }
                }
            }
            due
        };
        // Outside the borrow: a cancel may complete a read whose task then unparks.
        for c in due {
            let _ = c.cancel();
        }
    }
}
