//! The node's pools: one bucket per limit and key, shared by the shards, touched
//! only when a shard takes or returns a lease.
//!
//! A node-scope bucket is a GCRA TAT ([`super::gcra`]). A cluster-scope one holds
//! the tokens this instance leased from Redis (its stock), refilled by the Redis
//! agent before it runs out; while Redis cannot be reached it falls back to what
//! `on_redis_error` says — `allow`: a node-local bucket at the cluster's rate (no
//! instance alone ever exceeds the cluster limit), `deny`: refuse.
//!
//! Keys come from [`super::Ident::key`]; per-client tables are bounded by
//! `max_clients` per limit. A full bucket carries no information (a new one is the
//! same), so the table first forgets those; only when every tracked client is
//! still limited does a new one go to the limit's overflow bucket, shared by every
//! client that could not be tracked (counted in `ringway_limit_untracked_total`):
//! a flood of new addresses gets one budget, never an unlimited one.
//!
//! The locks here are taken per lease, not per request (`lease.rs` batches), and
//! never held across I/O: the agent copies what it needs out before it talks to
//! Redis.
#![allow(clippy::disallowed_types)] // Mutex: per lease, never per request (see above).

use super::gcra::{self, Grant, Nanos, Rate};
use super::redis::Agent;
use super::{IdHash, Ident};
use crate::config::traffic::{By, LimitDef, OnRedisError, Scope, TrafficConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Stripes of a keyed limit's table (one for `by = "all"`).
const STRIPES: usize = 16;
/// How long a cluster key counts as at its limit after a refill said so, at least.
const STALE_LIMIT: Nanos = 100_000_000;
/// A full stripe looks for forgettable buckets at most this often: a flood of new
/// addresses goes to the overflow bucket instead of scanning the table each.
const RESCAN: Nanos = 100_000_000;

/// Where a lease's tokens came from, so that unused ones go back there: the bucket
/// they were taken under (a client's, or the overflow bucket) and, for a cluster
/// limit, the agent's epoch (Redis's stock, or the fallback while it was down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub key: u64,
    pub epoch: u64,
}

/// A cluster limit with Redis unreachable under `on_redis_error = "deny"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

/// One bucket: 16 bytes for a node-scope limit (its TAT and an empty box).
#[derive(Debug, Default)]
pub(super) struct Cell {
    /// Node scope: the bucket. Cluster scope: the local floor while Redis is down.
    pub tat: Nanos,
    /// Cluster scope: what this instance holds of Redis's bucket.
    pub shared: Option<Box<Shared>>,
}

/// A cluster bucket's node side.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Tokens leased from Redis and not yet handed to a shard; negative: handed out
    /// ahead of a refill (at most one lease).
    pub stock: i64,
    /// A refill is queued or in flight.
    pub pending: bool,
    /// Redis said no token before this.
    pub blocked_until: Nanos,
    /// The size of the next refill.
    pub lease: u32,
    pub last_take: Nanos,
    pub refilled_at: Nanos,
    /// Redis's bucket had less than a lease left after the last refill: the key is
    /// at its limit. Then no token is handed out ahead of Redis, and refills ask
    /// for one token, so that instances over a limit share it by asking alike (not
    /// by who runs ahead or asks for more).
    pub constrained: bool,
    /// The key's name in Redis (`Ident::redis_suffix`).
    pub suffix: Box<str>,
}

impl Cell {
    /// Whether forgetting the cell loses nothing: a full bucket, no stock, nothing
    /// pending.
    fn idle(&self, now: Nanos) -> bool {
        self.tat <= now
            && self
                .shared
                .as_ref()
                .is_none_or(|c| c.stock == 0 && !c.pending && c.blocked_until <= now)
    }
}

#[derive(Debug, Default)]
struct Stripe {
    cells: HashMap<u64, Cell, IdHash>,
    /// When the stripe last looked for buckets to forget (`RESCAN`).
    scanned_at: Option<Nanos>,
}

/// The key the agent knows the bucket of untracked clients by (client keys are
/// odd, see [`Ident::key`]; only `by = "client_ip"` limits have one).
const OVERFLOW: u64 = 0;

/// A limit's node-wide state.
#[derive(Debug)]
pub struct NodeLimit {
    pub def: LimitDef,
    /// The limit's pace (a key's override has its own: [`NodeLimit::rate_of`]).
    pub rate: Rate,
    overrides: HashMap<u64, Rate, IdHash>,
    stripes: Box<[Mutex<Stripe>]>,
    per_stripe: usize,
    /// The bucket shared by clients that found their stripe full.
    overflow: Mutex<Cell>,
    /// Cluster scope: the agent that leases from Redis.
    agent: Option<Arc<Agent>>,
    me: Weak<NodeLimit>,
    /// Clients refused a table slot (`by = "client_ip"` at `max_clients`).
    pub untracked: AtomicU64,
}

/// Locks a stripe; a panic elsewhere while holding it leaves plain numbers behind,
/// which are still a bucket.
fn lock(m: &Mutex<Stripe>) -> MutexGuard<'_, Stripe> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_cell(m: &Mutex<Cell>) -> MutexGuard<'_, Cell> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NodeLimit {
    fn new(def: LimitDef, max_clients: usize, agent: Option<Arc<Agent>>) -> Arc<NodeLimit> {
        let unit_ns = def.unit.seconds() * 1_000_000_000;
        let rate = Rate::new(def.rate, unit_ns, def.burst);
        let overrides = def
            .overrides
            .iter()
            .map(|o| (Ident::Caller(&o.key).key(), Rate::new(o.rate, unit_ns, o.burst)))
            .collect();
        let stripes = if def.by == By::All { 1 } else { STRIPES };
        // An eighth over the even share, so that `max_clients` clients hashed
        // unevenly over the stripes still fit.
        let per_stripe = match def.by {
            By::ClientIp => {
                let even = max_clients.div_ceil(stripes);
                (even + even.div_ceil(8)).max(1)
            }
            _ => usize::MAX,
        };
        Arc::new_cyclic(|me| NodeLimit {
            def,
            rate,
            overrides,
            stripes: (0..stripes).map(|_| Mutex::default()).collect(),
            per_stripe,
            overflow: Mutex::new(Cell {
                tat: 0,
                shared: agent.is_some().then(|| {
                    Box::new(Shared {
                        lease: 1,
                        suffix: "untracked".into(),
                        ..Shared::default()
                    })
                }),
            }),
            agent,
            me: me.clone(),
            untracked: AtomicU64::new(0),
        })
    }

    /// The pace of `key`: its override's, else the limit's.
    pub fn rate_of(&self, key: u64) -> &Rate {
        self.overrides.get(&key).unwrap_or(&self.rate)
    }

    /// The configured rate of `key` (an override's, else the limit's) and its burst.
    pub fn quota_of(&self, caller: Option<&str>) -> (u64, u64) {
        caller
            .and_then(|c| self.def.overrides.iter().find(|o| o.key == c))
            .map_or((self.def.rate, self.def.burst), |o| (o.rate, o.burst))
    }

    fn stripe(&self, key: u64) -> &Mutex<Stripe> {
        &self.stripes[(key >> 58) as usize % self.stripes.len()]
    }

    /// Runs `f` on `key`'s cell (made if new) and the key it is under: `key`, or
    /// [`OVERFLOW`] when `key`'s stripe is full of clients still limited.
    fn with_cell<R>(
        &self,
        key: u64,
        ident: &Ident<'_>,
        now: Nanos,
        f: impl FnOnce(&mut Cell, u64) -> R,
    ) -> R {
        let new_cell = |suffix: &dyn Fn() -> String| Cell {
            tat: 0,
            shared: self.agent.is_some().then(|| {
                Box::new(Shared {
                    lease: (self.rate.max_lease() / 16).max(1),
                    suffix: suffix().into(),
                    ..Shared::default()
                })
            }),
        };
        {
            let mut s = lock(self.stripe(key));
            let room = s.cells.contains_key(&key) || s.cells.len() < self.per_stripe || {
                let due = s.scanned_at.is_none_or(|t| now.saturating_sub(t) >= RESCAN);
                if due {
                    s.scanned_at = Some(now);
                    s.cells.retain(|_, c| !c.idle(now));
                }
                s.cells.len() < self.per_stripe
            };
            if room {
                let cell = s
                    .cells
                    .entry(key)
                    .or_insert_with(|| new_cell(&|| ident.redis_suffix()));
                return f(cell, key);
            }
        }
        self.untracked.fetch_add(1, Ordering::Relaxed);
        f(&mut lock_cell(&self.overflow), OVERFLOW)
    }

    /// Takes up to `want` tokens of `key` for a shard's lease, and says where they
    /// came from (for [`NodeLimit::give_back`]).
    pub fn lease(
        &self,
        key: u64,
        ident: &Ident<'_>,
        want: u32,
        now: Nanos,
    ) -> Result<(Grant, Source), Unavailable> {
        let rate = *self.rate_of(key);
        let local = |epoch: u64| {
            self.with_cell(key, ident, now, |c, under| {
                (
                    gcra::take(&mut c.tat, now, want, &rate),
                    Source { key: under, epoch },
                )
            })
        };
        let Some(agent) = &self.agent else {
            return Ok(local(0));
        };
        // Read before the state it names: a transition after this only makes the
        // lease's tokens look stale (dropped on return), never misplaced.
        let epoch = agent.epoch();
        if !agent.is_up() {
            return match agent.settings.on_error {
                OnRedisError::Allow => Ok(local(epoch)),
                OnRedisError::Deny => Err(Unavailable),
            };
        }
        let (grant, under, refill) = self.with_cell(key, ident, now, |c, under| {
            let c = c.shared.get_or_insert_with(Box::default);
            c.last_take = now;
            // "At the limit" is news for one interval (and 100 ms at least): after
            // that, tokens have come back and a returning client is not refused
            // waiting for a refill.
            if c.constrained && now.saturating_sub(c.refilled_at) >= rate.interval.max(STALE_LIMIT) {
                c.constrained = false;
            }
            let grant = if c.stock > 0 {
                let k = c.stock.min(i64::from(want)) as u32;
                c.stock -= i64::from(k);
                Grant {
                    granted: k,
                    retry_at: now,
                    remaining: c.stock as u64,
                    next_at: now,
                }
            } else if c.blocked_until > now {
                Grant {
                    granted: 0,
                    retry_at: c.blocked_until,
                    remaining: 0,
                    next_at: c.blocked_until,
                }
            } else if !c.constrained && c.stock > -i64::from(c.lease) {
                // Under the limit, ahead of the refill by at most one lease, paid
                // back from it: a refill's round trip refuses nobody.
                let k = (c.stock + i64::from(c.lease)).min(i64::from(want)) as u32;
                c.stock -= i64::from(k);
                Grant {
                    granted: k,
                    retry_at: now,
                    remaining: 0,
                    next_at: now,
                }
            } else {
                // A lease ahead already: the refill is on its way.
                Grant {
                    granted: 0,
                    retry_at: now + 1_000_000,
                    remaining: 0,
                    next_at: now + 1_000_000,
                }
            };
            // Under the limit, refill before the stock runs out. At it, only when a
            // request found nothing: an instance that just spent a token asking
            // again at once would win every next one from instances that ask when
            // their requests come.
            let wanted = if c.constrained {
                grant.granted == 0
            } else {
                c.stock < i64::from(c.lease.div_ceil(2))
            };
            let refill = wanted && !c.pending && c.blocked_until <= now;
            if refill {
                c.pending = true;
            }
            (grant, under, refill)
        });
        if refill {
            agent.want(self.me.clone(), under);
        }
        Ok((grant, Source { key: under, epoch }))
    }

    /// Returns `n` tokens a shard leased from `from` and did not use, to the bucket
    /// they came from. Tokens of another epoch (Redis went down or came back since)
    /// or of a bucket forgotten since are dropped: they belong to no bucket now.
    pub fn give_back(&self, from: Source, n: u32) {
        if n == 0 {
            return;
        }
        let up = match &self.agent {
            Some(a) if a.epoch() != from.epoch => return,
            Some(a) => a.is_up(),
            None => false,
        };
        let rate = *self.rate_of(from.key);
        let give = |cell: &mut Cell| match up {
            true => {
                let c = cell.shared.get_or_insert_with(Box::default);
                c.stock = c.stock.saturating_add(i64::from(n));
            }
            false => gcra::give_back(&mut cell.tat, n, &rate),
        };
        if from.key == OVERFLOW && self.def.by == By::ClientIp {
            give(&mut lock_cell(&self.overflow));
        } else if let Some(c) = lock(self.stripe(from.key)).cells.get_mut(&from.key) {
            give(c);
        }
    }

    /// Where tokens taken now would come from, for a give-back without a lease.
    pub fn source_now(&self, key: u64) -> Source {
        Source {
            key,
            epoch: self.agent.as_ref().map_or(0, |a| a.epoch()),
        }
    }

    /// The Redis agent of a cluster limit.
    pub fn agent(&self) -> Option<&Arc<Agent>> {
        self.agent.as_ref()
    }

    /// Cells tracked now (for `/metrics` and the memory measurement).
    pub fn tracked(&self) -> usize {
        self.stripes.iter().map(|s| lock(s).cells.len()).sum()
    }

    /// The agent's view: runs `f` on `key`'s cluster cell if it exists.
    pub(super) fn cell<R>(&self, key: u64, f: impl FnOnce(&mut Shared) -> R) -> Option<R> {
        if key == OVERFLOW && self.def.by == By::ClientIp {
            return lock_cell(&self.overflow).shared.as_deref_mut().map(f);
        }
        lock(self.stripe(key))
            .cells
            .get_mut(&key)?
            .shared
            .as_deref_mut()
            .map(f)
    }

    /// The agent's sweep: runs `f` on every cell (stripe by stripe).
    pub(super) fn each_cell(&self, mut f: impl FnMut(u64, &mut Shared)) {
        for s in self.stripes.iter() {
            let mut s = lock(s);
            for (k, c) in s.cells.iter_mut() {
                if let Some(c) = c.shared.as_deref_mut() {
                    f(*k, c);
                }
            }
        }
        if self.def.by == By::ClientIp {
            if let Some(c) = lock_cell(&self.overflow).shared.as_deref_mut() {
                f(OVERFLOW, c);
            }
        }
    }
}

/// The node's limits across reloads: a reload that keeps a limit's definition keeps
/// its buckets (and the shards' leases on them).
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    limits: Vec<(usize, Weak<NodeLimit>)>,
    /// Every agent a live snapshot (or one being built) may still use. A reload
    /// refused after binding leaves the running one here, to be found again.
    agents: Vec<Weak<Agent>>,
}

impl Registry {
    /// The node limits of `traffic`, in its order: the live one of every definition
    /// seen before, a new one for the others.
    pub fn bind(&self, traffic: &TrafficConfig) -> Vec<Arc<NodeLimit>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.limits.retain(|(_, w)| w.strong_count() > 0);
        let wants_cluster = traffic.limits.iter().any(|l| l.scope == Scope::Cluster);
        inner.agents.retain(|w| w.strong_count() > 0);
        let agent = match (&traffic.redis, wants_cluster) {
            // An agent's thread ends with the last snapshot using it.
            (Some(settings), true) => Some(
                match inner
                    .agents
                    .iter()
                    .filter_map(Weak::upgrade)
                    .find(|a| a.settings == *settings)
                {
                    Some(a) => a,
                    None => {
                        let a = Agent::start(settings.clone());
                        inner.agents.push(Arc::downgrade(&a));
                        a
                    }
                },
            ),
            _ => None,
        };
        let mut out = Vec::with_capacity(traffic.limits.len());
        for def in &traffic.limits {
            let cluster = def.scope == Scope::Cluster;
            let found = inner.limits.iter().find_map(|(max, w)| {
                let l = w.upgrade()?;
                let same_agent = match (&l.agent, &agent) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, _) => !cluster,
                    _ => false,
                };
                (l.def == *def && *max == traffic.max_clients && same_agent).then_some(l)
            });
            let limit = found.unwrap_or_else(|| {
                let l = NodeLimit::new(
                    def.clone(),
                    traffic.max_clients,
                    agent.clone().filter(|_| cluster),
                );
                inner.limits.push((traffic.max_clients, Arc::downgrade(&l)));
                l
            });
            out.push(limit);
        }
        if let Some(a) = &agent {
            a.track(out.iter().filter(|l| l.agent.is_some()).cloned().collect());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::traffic::Unit;

    fn def(by: By, rate: u64) -> LimitDef {
        LimitDef::new("t", by, rate, Unit::Second, 0)
    }

    #[test]
    fn a_full_table_forgets_full_buckets_first_then_overflows() {
        let l = NodeLimit::new(def(By::ClientIp, 1), STRIPES, None);
        let ip = |i: u32| Ident::Ip(std::net::IpAddr::V4(i.into()));
        // Fill every stripe with limited clients at t=0.
        let mut i = 0;
        let full = STRIPES * l.per_stripe;
        assert_eq!(full, 32, "16 clients over 16 stripes, an eighth over: 2 a stripe");
        while l.tracked() < full && i < 10_000 {
            let id = ip(i);
            l.lease(id.key(), &id, 1, 0).unwrap();
            i += 1;
        }
        let before = l.untracked.load(Ordering::Relaxed);
        // More new clients at t=0: some land in a full stripe, and share the overflow.
        let mut overflowed = 0;
        for j in 0..200 {
            let id = ip(100_000 + j);
            l.lease(id.key(), &id, 1, 0).unwrap();
            overflowed = l.untracked.load(Ordering::Relaxed) - before;
        }
        assert!(overflowed > 0, "some clients overflowed");
        // An overflowed client's lease says so: its unused tokens go back to the
        // overflow bucket, not to a bucket the client may get later.
        let sources: Vec<Source> = (0..200)
            .map(|j| {
                let id = ip(200_000 + j);
                l.lease(id.key(), &id, 1, 0).unwrap().1
            })
            .collect();
        assert!(sources.iter().any(|s| s.key == OVERFLOW));
        assert!(sources.iter().all(|s| s.epoch == 0), "node scope: one epoch");
        assert_eq!(l.tracked(), full, "the rest share the overflow bucket");
        // A second later every bucket is full again: forgotten, room for new ones.
        let id = ip(999_999);
        let t = 2_000_000_000;
        let before = l.untracked.load(Ordering::Relaxed);
        assert_eq!(l.lease(id.key(), &id, 1, t).unwrap().0.granted, 1);
        assert_eq!(l.untracked.load(Ordering::Relaxed), before);
    }

    #[test]
    fn reload_keeps_a_limit_whose_definition_did_not_change() {
        let r = Registry::default();
        let mut t = TrafficConfig::default();
        t.limits.push(def(By::All, 10));
        let a = r.bind(&t);
        let b = r.bind(&t);
        assert!(Arc::ptr_eq(&a[0], &b[0]));
        t.limits[0].rate = 11;
        let c = r.bind(&t);
        assert!(!Arc::ptr_eq(&a[0], &c[0]));
    }

    #[test]
    fn returned_tokens_are_leased_again() {
        let l = NodeLimit::new(def(By::All, 10_000), 1, None);
        let (g, _) = l.lease(0, &Ident::All, 1_000, 0).unwrap();
        assert_eq!(g.granted, 101);
        assert_eq!(l.lease(0, &Ident::All, 1, 0).unwrap().0.granted, 0);
        l.give_back(l.source_now(0), 50);
        assert_eq!(l.lease(0, &Ident::All, 1_000, 0).unwrap().0.granted, 50);
    }
}
