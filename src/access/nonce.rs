//! The replay window of signed requests: a nonce seen once is refused again until
//! the request that carried it can no longer be accepted (its date is outside the
//! skew window).
//!
//! A replay may arrive on any shard (SO_REUSEPORT spreads connections), so the set
//! of nonces is a fact about the node, not the shard: it is the one piece of state
//! the request path shares across cores. It is shared without a lock: a fixed table
//! of 64-bit slots, each holding a fingerprint of `(access key, nonce)` and the time
//! the entry expires, claimed with one compare-and-swap. Exactness, in both
//! directions, comes from the order of operations in [`NonceStore::admit`]:
//!
//! 1. scan the probe window for a live entry with the same fingerprint → replay;
//! 2. claim the first empty or expired slot of the window (CAS; on failure re-read);
//! 3. scan the window again for *another* live copy of the fingerprint → replay.
//!
//! Two racing requests with the same nonce each publish their entry (2) before they
//! look for the other's (3). With sequentially consistent atomics, at least one of
//! them sees the other's entry, so at most one is admitted; a replay never is. (If
//! both see each other, both are refused: a replay racing its original within
//! microseconds costs the original too. Copies are left in place until they expire,
//! so a third try is refused as well.)
//!
//! A fingerprint is 38 bits of a keyed SipHash over the key and nonce; the slot index
//! comes from other bits of the same hash. A fresh nonce is falsely refused only if a
//! live entry in its 16-slot window has the same 38 bits: under 2^-33 per request.
//!
//! The table does not grow: `capacity` slots, allocated on first use (8 bytes each).
//! When a window has no free slot the request is refused ([`Admit::Full`]): the store
//! cannot promise to catch a replay of it, and a gateway that let it through would
//! turn a full table into a replay hole. Size it from the rate of signed requests and
//! how long a nonce lives (`docs/access.md`).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::Instant;

/// Slots probed per nonce: two cache lines.
const WINDOW: usize = 16;
const EXP_BITS: u32 = 26;
const EXP_MASK: u64 = (1 << EXP_BITS) - 1;
/// Entries are compared with wrapping arithmetic on `EXP_BITS` seconds, so a
/// lifetime must stay well under half that (2^25 s is about a year).
pub const MAX_LIFETIME_SECS: u64 = 1 << (EXP_BITS - 2);

/// What [`NonceStore::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// First time seen: remembered until its expiry.
    Fresh,
    /// Seen before, and still within its window.
    Replay,
    /// No room in the nonce's window: refused, since a replay of it could not be caught.
    Full,
}

/// The node's set of recently seen nonces, shared by every shard.
#[derive(Debug)]
pub struct NonceStore {
    capacity: usize,
    slots: OnceLock<Box<[AtomicU64]>>,
    hasher: RandomState,
    epoch: Instant,
}

impl NonceStore {
    /// A store of `capacity` slots (at least one window), allocated on first use.
    pub fn new(capacity: usize) -> NonceStore {
        NonceStore {
            capacity: capacity.max(WINDOW),
            slots: OnceLock::new(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Admits `nonce` of `key` if it was not seen within its lifetime; a fresh one
    /// is remembered for `lifetime_secs` (at least 1, at most [`MAX_LIFETIME_SECS`]).
    pub fn admit(&self, key: &[u8], nonce: &[u8], lifetime_secs: u64) -> Admit {
        let slots = self
            .slots
            .get_or_init(|| (0..self.capacity).map(|_| AtomicU64::new(0)).collect());
        let mut h = self.hasher.build_hasher();
        h.write(key);
        h.write_u8(0xff);
        h.write(nonce);
        let hash = h.finish();
        // The low bits pick the window; the high 38 are the fingerprint (low bit set,
        // so no entry is 0).
        let fp = (hash >> EXP_BITS) | 1;
        let start = (hash as usize) % slots.len();
        let now = self.now();
        let exp = (now + lifetime_secs.clamp(1, MAX_LIFETIME_SECS)) & EXP_MASK;
        let entry = fp << EXP_BITS | exp;
        let at = |i: usize| &slots[(start + i) % slots.len()];
        let live = |v: u64| v != 0 && !expired(v, now);

        if (0..WINDOW).any(|i| {
            let v = at(i).load(SeqCst);
            live(v) && v >> EXP_BITS == fp
        }) {
            return Admit::Replay;
        }
        let mut mine = None;
        'claim: for i in 0..WINDOW {
            let slot = at(i);
            let mut cur = slot.load(SeqCst);
            while !live(cur) {
                match slot.compare_exchange(cur, entry, SeqCst, SeqCst) {
                    Ok(_) => {
                        mine = Some(i);
                        break 'claim;
                    }
                    Err(v) => cur = v,
                }
            }
        }
        let Some(mine) = mine else {
            return Admit::Full;
        };
        let copy = (0..WINDOW).filter(|&i| i != mine).any(|i| {
            let v = at(i).load(SeqCst);
            live(v) && v >> EXP_BITS == fp
        });
        if copy {
            Admit::Replay
        } else {
            Admit::Fresh
        }
    }

    /// Seconds since the store was made, in the entries' wrapping clock.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs() & EXP_MASK
    }
}

/// Whether the entry `v` has expired at `now` (wrapping seconds).
fn expired(v: u64, now: u64) -> bool {
    let exp = v & EXP_MASK;
    // `now - exp` in the wrapping clock: small (under half the range) means past.
    (now.wrapping_sub(exp) & EXP_MASK) < (1 << (EXP_BITS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn a_nonce_is_admitted_once() {
        let s = NonceStore::new(1024);
        assert_eq!(s.admit(b"AK1", b"n-1", 300), Admit::Fresh);
        assert_eq!(s.admit(b"AK1", b"n-1", 300), Admit::Replay);
        assert_eq!(s.admit(b"AK1", b"n-2", 300), Admit::Fresh);
        // Nonces are per access key.
        assert_eq!(s.admit(b"AK2", b"n-1", 300), Admit::Fresh);
        // The separator keeps (key, nonce) pairs apart.
        assert_eq!(s.admit(b"AK", b"1n-1", 300), Admit::Fresh);
    }

    #[test]
    fn expiry_arithmetic_wraps() {
        let e = |exp: u64| exp & EXP_MASK;
        assert!(expired(e(10), 10), "an entry expires at its second");
        assert!(expired(e(10), 11));
        assert!(!expired(e(11), 10));
        // Across the wrap of the clock.
        assert!(!expired(e(EXP_MASK + 5), EXP_MASK - 3));
        assert!(expired(e(EXP_MASK - 3), 5));
    }

    #[test]
    fn a_full_window_refuses_rather_than_forgets() {
        // One window's worth of slots: the 17th live nonce has nowhere to go.
        let s = NonceStore::new(WINDOW);
        for i in 0..WINDOW {
            assert_eq!(s.admit(b"AK", format!("n{i}").as_bytes(), 300), Admit::Fresh);
        }
        assert_eq!(s.admit(b"AK", b"one-more", 300), Admit::Full);
        for i in 0..WINDOW {
            assert_eq!(s.admit(b"AK", format!("n{i}").as_bytes(), 300), Admit::Replay);
        }
    }

    #[test]
    fn racing_replays_admit_at_most_one() {
        // Eight threads present the same 2,000 nonces at once; each nonce must be
        // admitted exactly once or, if its original raced a replay so closely that
        // both saw each other, not at all — never twice.
        let s = Arc::new(NonceStore::new(1 << 16));
        let admitted: Arc<Vec<AtomicUsize>> = Arc::new((0..2000).map(|_| AtomicUsize::new(0)).collect());
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, admitted, barrier) = (s.clone(), admitted.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for n in 0..2000 {
                        if s.admit(b"AK", format!("nonce-{n}").as_bytes(), 300) == Admit::Fresh {
                            admitted[n].fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counts: Vec<usize> = admitted.iter().map(|a| a.load(SeqCst)).collect();
        assert!(
            counts.iter().all(|&c| c <= 1),
            "a nonce admitted twice: {counts:?}"
        );
        // And almost all were admitted once (a both-refused race is rare).
        assert!(counts.iter().filter(|&&c| c == 1).count() > 1900);
    }
}
