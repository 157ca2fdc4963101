//! The rate arithmetic: GCRA (the generic cell rate algorithm, the one nginx's
//! `limit_req` and most token buckets reduce to), over one theoretical arrival time
//! (TAT) per bucket, in nanoseconds of [`super::clock`].
//!
//! A limit of `rate` per `unit` with `burst` paces requests one emission interval
//! `T = unit / rate` apart and tolerates `burst` of them early: a request at `now`
//! is admitted when `max(TAT, now) ≤ now + burst·T`, and moves the TAT on by `T`.
//! Over any window of length `w` starting with a full bucket that admits at most
//! `w / T + burst + 2` requests, and under a steady overload exactly
//! `w / T + burst + 1`: a request that comes less than one interval late takes the
//! slot it missed (see `schedule`), so random arrivals do not lose slots the way
//! plain GCRA (and nginx's `limit_req` without a burst) does.
//!
//! Leases take `n` tokens at once: as many as the bucket holds, plus tokens up to
//! [`Rate::lookahead`] ahead of time — so that a shard serving a fast limit can take
//! a batch even when the bucket holds less than a batch (burst 0). The lookahead is
//! the only slack the lease scheme adds: at most `lookahead / T` tokens per holder,
//! returned when unused ([`give_back`]).

/// Nanoseconds.
pub type Nanos = u64;

/// How far ahead of time a lease may take tokens, and so how large a lease can be:
/// 10 ms of the rate. 2 shards holding a lease each admit at most 20 ms of the rate
/// more than the bucket alone would — 2% of a second, 0.2% of a 10 s run.
pub const LOOKAHEAD: Nanos = 10_000_000;

/// A limit's pace: the emission interval and the burst tolerance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// `T`: nanoseconds between two requests at the sustained rate.
    pub interval: Nanos,
    /// `τ = burst·T`: how far ahead of the pace a request may come.
    pub tolerance: Nanos,
    /// How far ahead of time a lease may take tokens (at most [`LOOKAHEAD`]; 0 for
    /// rates slower than one per lookahead, which lease one token at a time).
    pub lookahead: Nanos,
}

impl Rate {
    /// `rate` requests per `unit_ns` nanoseconds, with `burst` more at once.
    /// `rate` is at least 1 (validated config).
    pub fn new(rate: u64, unit_ns: u64, burst: u64) -> Rate {
        let interval = (unit_ns / rate.max(1)).max(1);
        let tolerance = interval.saturating_mul(burst);
        Rate {
            interval,
            tolerance,
            lookahead: if interval < LOOKAHEAD { LOOKAHEAD } else { 0 },
        }
    }

    /// The largest lease worth taking: the lookahead's tokens (at least one).
    pub fn max_lease(&self) -> u32 {
        (self.lookahead / self.interval).clamp(1, u64::from(u32::MAX)) as u32
    }

    /// Tokens the bucket holds at `now` when its TAT is `tat` (what a client could
    /// send at once): the `r` of a `RateLimit` field.
    pub fn remaining(&self, tat: Nanos, now: Nanos) -> u64 {
        let base = tat.max(now);
        let room = now
            .saturating_add(self.tolerance)
            .saturating_add(self.interval)
            .saturating_sub(base);
        room / self.interval
    }
}

/// What taking from a bucket gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Tokens taken (0..=want).
    pub granted: u32,
    /// With none granted: when one could be (the `Retry-After`).
    pub retry_at: Nanos,
    /// Tokens left in the bucket after this (without the lookahead).
    pub remaining: u64,
    /// When the bucket can give a token again (`now` while it has some).
    pub next_at: Nanos,
}

/// Where the schedule continues from at `now`: the TAT, or `now` once the bucket
/// has been idle a whole interval past it. A request that comes a little late
/// (less than one interval) takes the slot it missed instead of losing it, so the
/// long-run count is the rate whatever the arrivals' phase; the cost is that such a
/// late request and the next slot's may come close together (at most `burst + 2`
/// in an instant instead of `burst + 1`).
fn schedule(tat: Nanos, now: Nanos, rate: &Rate) -> Nanos {
    if now > tat && now - tat < rate.interval {
        tat
    } else {
        tat.max(now)
    }
}

/// Takes up to `want` tokens at `now` from the bucket whose TAT is `*tat`.
pub fn take(tat: &mut Nanos, now: Nanos, want: u32, rate: &Rate) -> Grant {
    let base = schedule(*tat, now, rate);
    let limit = now
        .saturating_add(rate.tolerance)
        .saturating_add(rate.interval)
        .saturating_add(rate.lookahead);
    let room = limit.saturating_sub(base) / rate.interval;
    let granted = room.min(u64::from(want)) as u32;
    if granted == 0 {
        // One token fits once `TAT + T ≤ t + τ + T + lookahead` (here TAT > now).
        let retry_at = base.saturating_sub(rate.tolerance + rate.lookahead).max(now + 1);
        return Grant {
            granted: 0,
            retry_at,
            remaining: 0,
            next_at: retry_at,
        };
    }
    *tat = base.saturating_add(u64::from(granted) * rate.interval);
    Grant {
        granted,
        retry_at: now,
        remaining: rate.remaining(*tat, now),
        next_at: tat.saturating_sub(rate.tolerance + rate.lookahead).max(now),
    }
}

/// Returns `n` unused tokens of a lease to the bucket. A TAT pushed below `now` is
/// the same as `now` to [`take`]: a bucket never holds more than it can.
pub fn give_back(tat: &mut Nanos, n: u32, rate: &Rate) {
    *tat = tat.saturating_sub(u64::from(n) * rate.interval);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Admits one at a time at `step` intervals for `span`: how many got through.
    fn run(rate: &Rate, step: Nanos, span: Nanos) -> u64 {
        let (mut tat, mut now, mut n) = (0, 0, 0);
        while now <= span {
            n += u64::from(take(&mut tat, now, 1, rate).granted);
            now += step;
        }
        n
    }

    #[test]
    fn paces_at_the_rate_with_the_burst_on_top() {
        // 100/s, burst 20, offered 1,000/s for 10 s: 10 s · 100 + 20 + 1.
        let r = Rate::new(100, SEC, 20);
        assert_eq!(r.lookahead, 0, "100/s paces one per 10 ms: leases of one");
        assert_eq!(run(&r, SEC / 1000, 10 * SEC), 1_000 + 20 + 1);
        // Under the rate, everything passes.
        assert_eq!(run(&r, SEC / 50, 10 * SEC), 501);
    }

    #[test]
    fn small_limits_are_exact() {
        let per_second = Rate::new(1, SEC, 0);
        assert_eq!(run(&per_second, SEC / 100, 10 * SEC - 1), 10);
        let five_a_minute = Rate::new(5, 60 * SEC, 0);
        assert_eq!(run(&five_a_minute, SEC / 10, 60 * SEC - 1), 5);
        let day = Rate::new(1000, 86_400 * SEC, 999);
        assert_eq!(run(&day, SEC, 3_600 * SEC), 1000 + 3600 / 86);
    }

    #[test]
    fn a_late_request_keeps_its_slot() {
        // 100/s (T = 10 ms), burst 0, requests every 15 ms: plain GCRA admits every
        // other one from the schedule's restart (one per 30 ms); here one slot per
        // interval is never lost while requests come more often than every T.
        let r = Rate::new(100, SEC, 0);
        let mut tat = 0;
        let mut admitted = 0;
        let mut now = 0;
        while now < SEC {
            admitted += take(&mut tat, now, 1, &r).granted;
            now += 7_000_000;
        }
        assert_eq!(admitted, 100, "7 ms apart, T = 10 ms: one a slot, 1 s of slots");
        // Idle past a whole interval: the schedule restarts, no slot is owed.
        let mut tat = 0;
        assert_eq!(take(&mut tat, 0, 1, &r).granted, 1);
        assert_eq!(take(&mut tat, 5 * SEC, 1, &r).granted, 1);
        assert_eq!(take(&mut tat, 5 * SEC + 1, 1, &r).granted, 0);
    }

    #[test]
    fn a_refusal_says_when_the_next_token_comes() {
        let r = Rate::new(1, SEC, 0);
        let mut tat = 0;
        assert_eq!(take(&mut tat, 0, 1, &r).granted, 1);
        let g = take(&mut tat, SEC / 4, 1, &r);
        assert_eq!((g.granted, g.retry_at), (0, SEC));
        assert_eq!(take(&mut tat, SEC - 1, 1, &r).granted, 0);
        assert_eq!(take(&mut tat, SEC, 1, &r).granted, 1);
    }

    #[test]
    fn leases_take_ahead_by_the_lookahead_only() {
        // 10,000/s: T = 100 µs, lookahead 10 ms = 100 tokens.
        let r = Rate::new(10_000, SEC, 0);
        assert_eq!(r.max_lease(), 100);
        let mut tat = 0;
        let g = take(&mut tat, 0, 1_000, &r);
        assert_eq!(g.granted, 101, "the bucket's one token and 10 ms ahead");
        assert_eq!(take(&mut tat, 0, 1, &r).granted, 0);
        // Unused tokens go back; the bucket never holds more than it can.
        give_back(&mut tat, 101, &r);
        assert_eq!(take(&mut tat, 0, 1_000, &r).granted, 101);
        give_back(&mut tat, 1_000_000, &r);
        assert_eq!(r.remaining(tat, 0), 1);
    }

    #[test]
    fn leases_hold_the_long_run_rate() {
        // 2 holders leasing 10 at a time from 10,000/s for 10 s, offered 4x: the
        // total stays within the lookahead of the rate.
        let r = Rate::new(10_000, SEC, 0);
        let mut tat = 0;
        let mut held = [0u32; 2];
        let mut admitted = 0u64;
        let mut now = 0;
        while now < 10 * SEC {
            for h in &mut held {
                if *h == 0 {
                    *h = take(&mut tat, now, 10, &r).granted;
                }
                if *h > 0 {
                    *h -= 1;
                    admitted += 1;
                }
            }
            now += 50_000; // 2 × 20,000/s
        }
        assert!((100_000..=100_000 + 2 * 101).contains(&admitted), "{admitted}");
    }

    #[test]
    fn huge_units_and_bursts_saturate_instead_of_overflowing() {
        let r = Rate::new(1, 86_400 * SEC, u64::MAX);
        let mut tat = 0;
        assert_eq!(take(&mut tat, 5, 3, &r).granted, 3);
        let r = Rate::new(u64::MAX, SEC, 0);
        assert_eq!(r.interval, 1);
        assert_eq!(r.max_lease(), 10_000_000);
    }
}
