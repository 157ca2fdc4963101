//! A shard's side of a limit: the tokens it holds per key, taken from the node in
//! leases, spent with a local decrement.
//!
//! A lease starts at one token and doubles while the shard spends each one within
//! the lookahead (10 ms), up to the rate's [`Rate::max_lease`]; one that lasted
//! eight times that halves. A refusal from the node is cached until the time it
//! names, so refused traffic stays on the shard. Tokens unused for [`STALE`] go
//! back to the node on the shard's sweep, and all of them when the view holding
//! this goes (a reload that drops the limit, or the process draining).

use super::gcra::{Nanos, Rate, LOOKAHEAD};
use super::node::{NodeLimit, Source};
use super::{IdHash, Ident};
use crate::observe::metrics::Counter;
use std::collections::HashMap;
use std::sync::Arc;

/// A lease unused this long goes back to the node.
pub const STALE: Nanos = 20_000_000;
/// A key refused and idle this long is forgotten by the shard.
const FORGET: Nanos = 1_000_000_000;
/// Keys a shard holds leases for, per limit; beyond it a key's requests lease one
/// token at a time without a local entry.
const MAX_LOCAL_KEYS: usize = 16_384;

/// What a limit says of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; about this many more could come at once (the `RateLimit` `r`),
    /// and with none, when one could (its `t`).
    Allowed { remaining: u64, next_at: Nanos },
    /// Over the limit: no token before `retry_at`.
    Refused { retry_at: Nanos },
    /// A cluster limit whose Redis is unreachable, with `on_redis_error = "deny"`.
    Unavailable,
}

#[derive(Clone, Copy, Debug, Default)]
struct Lease {
    tokens: u32,
    size: u32,
    taken_at: Nanos,
    last_use: Nanos,
    blocked_until: Nanos,
    /// What the node had left when the lease was taken, and when it has more.
    node_remaining: u64,
    node_next_at: Nanos,
    /// Where the tokens held came from (where they go back).
    from: Source,
}

/// One limit as a shard sees it.
#[derive(Debug)]
pub struct ShardLimit {
    pub node: Arc<NodeLimit>,
    leases: HashMap<u64, Lease, IdHash>,
    pub allowed: Arc<Counter>,
    pub refused: Arc<Counter>,
}

impl ShardLimit {
    pub fn new(node: Arc<NodeLimit>, allowed: Arc<Counter>, refused: Arc<Counter>) -> ShardLimit {
        ShardLimit {
            node,
            leases: HashMap::with_hasher(IdHash),
            allowed,
            refused,
        }
    }

    /// Takes over `old`'s leases (same node limit, an earlier view).
    pub fn adopt(&mut self, old: &mut ShardLimit) {
        if Arc::ptr_eq(&self.node, &old.node) {
            std::mem::swap(&mut self.leases, &mut old.leases);
        }
    }

    /// Admits one request of `ident` (whose key is `key`) at `now`, or says why not.
    #[inline]
    pub fn admit(&mut self, key: u64, ident: &Ident<'_>, now: Nanos) -> Verdict {
        let full = self.leases.len() >= MAX_LOCAL_KEYS;
        let lease = match self.leases.get_mut(&key) {
            Some(l) => l,
            None if full => return self.admit_uncached(key, ident, now),
            None => self.leases.entry(key).or_default(),
        };
        lease.last_use = now;
        if lease.tokens > 0 {
            lease.tokens -= 1;
            return Verdict::Allowed {
                remaining: lease.node_remaining + u64::from(lease.tokens),
                next_at: lease.node_next_at,
            };
        }
        if now < lease.blocked_until {
            return Verdict::Refused {
                retry_at: lease.blocked_until,
            };
        }
        let rate = *self.node.rate_of(key);
        lease.size = next_size(lease, now, &rate);
        match self.node.lease(key, ident, lease.size, now) {
            Err(_) => Verdict::Unavailable,
            Ok((g, _)) if g.granted == 0 => {
                lease.blocked_until = g.retry_at;
                Verdict::Refused { retry_at: g.retry_at }
            }
            Ok((g, from)) => {
                lease.from = from;
                lease.tokens = g.granted - 1;
                lease.taken_at = now;
                lease.node_remaining = g.remaining;
                lease.node_next_at = g.next_at;
                Verdict::Allowed {
                    remaining: g.remaining + u64::from(lease.tokens),
                    next_at: g.next_at,
                }
            }
        }
    }

    /// A key with no room for a local entry: one token straight from the node.
    fn admit_uncached(&self, key: u64, ident: &Ident<'_>, now: Nanos) -> Verdict {
        match self.node.lease(key, ident, 1, now) {
            Err(_) => Verdict::Unavailable,
            Ok((g, _)) if g.granted == 0 => Verdict::Refused { retry_at: g.retry_at },
            Ok((g, _)) => Verdict::Allowed {
                remaining: g.remaining,
                next_at: g.next_at,
            },
        }
    }

    /// Puts back the token [`ShardLimit::admit`] just took for `key` (a later limit
    /// refused the request).
    pub fn undo(&mut self, key: u64) {
        match self.leases.get_mut(&key) {
            Some(l) => l.tokens += 1,
            None => self.node.give_back(self.node.source_now(key), 1),
        }
    }

    /// Returns leases unused for [`STALE`] to the node; forgets keys idle and not
    /// refused for long.
    pub fn sweep(&mut self, now: Nanos) {
        let node = &self.node;
        self.leases.retain(|_, l| {
            if l.tokens > 0 && now.saturating_sub(l.last_use) >= STALE {
                node.give_back(l.from, l.tokens);
                l.tokens = 0;
            }
            l.tokens > 0 || l.blocked_until > now || now.saturating_sub(l.last_use) < FORGET
        });
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.leases.len()
    }
}

impl Drop for ShardLimit {
    fn drop(&mut self) {
        for l in self.leases.values() {
            self.node.give_back(l.from, l.tokens);
        }
    }
}

/// The size of the next lease: doubled when the last one was spent within the
/// lookahead, halved when it lasted eight times that.
fn next_size(l: &Lease, now: Nanos, rate: &Rate) -> u32 {
    let max = rate.max_lease();
    let held = now.saturating_sub(l.taken_at);
    let size = if l.size == 0 {
        1
    } else if held < LOOKAHEAD {
        l.size.saturating_mul(2)
    } else if held > 8 * LOOKAHEAD {
        l.size / 2
    } else {
        l.size
    };
    size.clamp(1, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::traffic::{By, LimitDef, TrafficConfig, Unit};
    use crate::traffic::Registry;

    const SEC: u64 = 1_000_000_000;

    fn limit(rate: u64, burst: u64) -> Arc<NodeLimit> {
        let mut t = TrafficConfig::default();
        t.limits
            .push(LimitDef::new("t", By::All, rate, Unit::Second, burst));
        Registry::default().bind(&t).remove(0)
    }

    fn shard(node: &Arc<NodeLimit>) -> ShardLimit {
        ShardLimit::new(node.clone(), Arc::default(), Arc::default())
    }

    /// Two shards offered `per_shard_step` apart each for `span`: admitted.
    fn run(rate: u64, burst: u64, step: Nanos, span: Nanos) -> (u64, Arc<NodeLimit>) {
        let node = limit(rate, burst);
        let mut shards = [shard(&node), shard(&node)];
        let mut admitted = 0;
        let mut now = 1;
        while now <= span {
            for s in &mut shards {
                if let Verdict::Allowed { .. } = s.admit(0, &Ident::All, now) {
                    admitted += 1;
                }
                if now % STALE < step {
                    s.sweep(now);
                }
            }
            now += step;
        }
        (admitted, node)
    }

    #[test]
    fn two_shards_admit_the_node_rate_within_two_percent() {
        // 1,000/s with burst 20, offered 4,000/s for 10 s.
        let (n, _) = run(1_000, 20, SEC / 2_000, 10 * SEC);
        let want = 10 * 1_000 + 20;
        assert!(n.abs_diff(want) * 100 <= want * 2, "{n} vs {want}");
        // 100,000/s offered 200,000/s: leases grow, the total holds.
        let (n, _) = run(100_000, 0, SEC / 100_000, 2 * SEC);
        let want = 2 * 100_000;
        assert!(n.abs_diff(want) * 100 <= want * 2, "{n} vs {want}");
    }

    #[test]
    fn small_limits_are_exact_across_shards() {
        let (n, _) = run(1, 0, SEC / 100, 10 * SEC - 2);
        assert_eq!(n, 10);
    }

    #[test]
    fn leases_grow_under_load_and_refusals_stay_local() {
        let node = limit(1_000_000, 0);
        let mut s = shard(&node);
        for i in 0..10_000u64 {
            assert!(matches!(
                s.admit(0, &Ident::All, 1 + i * 1_000),
                Verdict::Allowed { .. }
            ));
        }
        let l = s.leases[&0];
        assert!(l.size >= 512, "lease grew to {}", l.size);
        // A refusal is cached until the node's next token.
        let node = limit(1, 0);
        let mut s = shard(&node);
        assert!(matches!(s.admit(0, &Ident::All, 1), Verdict::Allowed { .. }));
        let Verdict::Refused { retry_at } = s.admit(0, &Ident::All, 2) else {
            panic!("refused")
        };
        // The schedule of a new bucket starts at the clock's zero: slot 0 was taken.
        assert_eq!(retry_at, SEC);
        assert_eq!(s.leases[&0].blocked_until, retry_at);
    }

    #[test]
    fn stale_and_dropped_leases_go_back() {
        // 10,000/s (T = 100 µs) with burst 5,000 (τ = 0.5 s). 300 requests 1 ns apart
        // take leases of 1 + 2 + … + 64, then 100 (the cap) twice: 327, 27 held,
        // the TAT at 32.7 ms.
        let busy = || {
            let node = limit(10_000, 5_000);
            let mut s = shard(&node);
            for i in 0..300 {
                assert!(matches!(s.admit(0, &Ident::All, 1 + i), Verdict::Allowed { .. }));
            }
            assert_eq!(s.leases[&0].tokens, 27);
            (node, s)
        };
        // At 20 ms (a's lease stale) the node has room for
        // (20 + 500 + 0.1 + 10 − 30) / 0.1 = 5,001 when the 27 came back (TAT at
        // 30 ms), 4,974 when not.
        let at = 20_000_300;
        let (node, mut a) = busy();
        a.sweep(at);
        assert_eq!(a.leases[&0].tokens, 0);
        assert_eq!(node.lease(0, &Ident::All, 10_000, at).unwrap().0.granted, 5_001);
        let (node, b) = busy();
        drop(b);
        assert_eq!(node.lease(0, &Ident::All, 10_000, at).unwrap().0.granted, 5_001);
        let (node, _kept) = busy();
        assert_eq!(node.lease(0, &Ident::All, 10_000, at).unwrap().0.granted, 4_974);
    }
}
