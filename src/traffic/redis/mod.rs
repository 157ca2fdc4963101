//! Cluster limits through Redis: one agent thread per process leases blocks of
//! tokens for the node's cluster buckets, with one `EVALSHA` per block.
//!
//! The bucket in Redis is the same GCRA as the node's ([`LEASE_SCRIPT`]), on
//! Redis's clock (`TIME`), so instances whose clocks disagree still share one
//! pace. A node bucket asks for a refill when its stock falls below half a lease;
//! the agent batches what is asked into one pipeline, sizes each lease from how
//! fast the last one went (doubling within 100 ms, halving after a second, at most
//! 10 ms of the rate), and returns stock unused for a second.
//!
//! Failure: a command that errs or times out (`timeout`, 100 ms by default) marks
//! Redis down; the node buckets then do what `on_redis_error` says (see
//! `node.rs`) and the agent reconnects once a second, loading the script again.
//! An instance that dies holding a lease takes at most that lease with it: the
//! tokens are time, and the key expires on its own.
#![allow(clippy::disallowed_types)] // Mutex/Condvar: the agent's own thread and per-lease queueing.

pub mod resp;

use super::gcra::{Nanos, Rate};
use super::node::NodeLimit;
use crate::config::traffic::RedisSettings;
use resp::{encode, Conn, Reply};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// The lease: `KEYS[1]` holds the TAT in microseconds of Redis's clock.
/// `ARGV`: interval, tolerance and lookahead (µs, fractional), tokens wanted,
/// tokens given back. Returns `{granted, µs until one more could be, tokens left}`.
pub const LEASE_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local ahead = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local back = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
tat = tat - back * T
-- As gcra.rs: a request less than one interval late keeps its slot.
if now - tat >= T then tat = now end
local k = math.floor((now + tau + T + ahead - tat) / T)
if k > want then k = want end
if k < 0 then k = 0 end
tat = tat + k * T
local wait = 0
if k < want then
  wait = tat - tau - ahead - now
  if wait < 0 then wait = 0 end
end
local left = math.floor((now + tau + T + ahead - tat) / T)
if left < 0 then left = 0 end
-- Kept while it says anything: until the TAT is a burst behind now, then a second.
local ttl = math.ceil((tat - now + tau + T) / 1000)
if ttl < 0 then ttl = 0 end
redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', ttl + 1000)
return {k, math.ceil(wait), left}
"#;

/// The longest wait a reply may set: a day (a day-unit limit with no burst).
const MAX_WAIT_US: i64 = 86_400_000_000;
/// How often the agent looks for stale stock.
const SWEEP: Duration = Duration::from_millis(100);
/// Stock unused this long goes back to Redis.
const STALE_STOCK: Nanos = 1_000_000_000;
/// Between two connection attempts while Redis is down.
const RECONNECT: Duration = Duration::from_secs(1);

/// One lease (or return) to ask Redis for.
struct Item {
    limit: Arc<NodeLimit>,
    key: u64,
    redis_key: Vec<u8>,
    want: u32,
    back: u32,
}

/// The agent thread's connection state.
struct Link {
    conn: Option<(Conn, String)>,
    next_connect: Instant,
    last_sweep: Instant,
}

/// The process's Redis agent.
#[derive(Debug)]
pub struct Agent {
    pub settings: RedisSettings,
    up: AtomicBool,
    /// Up/down transitions so far: tokens leased in one epoch are not returned in
    /// another (Redis's stock and the fallback bucket are different buckets).
    epoch: AtomicU64,
    queue: Mutex<Vec<(Weak<NodeLimit>, u64)>>,
    wake: Condvar,
    limits: Mutex<Vec<Weak<NodeLimit>>>,
    /// Commands sent (leases and returns), for `/metrics`.
    pub commands: AtomicU64,
    /// Commands or connections that failed.
    pub errors: AtomicU64,
    /// Tokens Redis granted.
    pub granted: AtomicU64,
}

impl Agent {
    /// Connects (once, bounded by `connect_timeout`: before the first request, at
    /// startup or on the reload that configures it) and starts the agent's thread.
    /// Redis is up from the start exactly when that connection worked.
    pub fn start(settings: RedisSettings) -> Arc<Agent> {
        let agent = Arc::new(Agent {
            settings,
            up: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            queue: Mutex::default(),
            wake: Condvar::new(),
            limits: Mutex::default(),
            commands: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            granted: AtomicU64::new(0),
        });
        // The thread holds the agent weakly: it ends once no snapshot's limit (nor
        // the registry) uses these settings any more.
        let first = match agent.connect() {
            Ok(c) => {
                agent.up.store(true, Ordering::Relaxed);
                Some(c)
            }
            Err(e) => {
                agent.errors.fetch_add(1, Ordering::Relaxed);
                crate::observe::log(format_args!(
                    "Redis {} unavailable (cannot connect: {e}): cluster limits {} until it is back",
                    agent.settings.address,
                    agent.settings.on_error.while_down()
                ));
                None
            }
        };
        let a = Arc::downgrade(&agent);
        let spawned = std::thread::Builder::new()
            .name("ringway-redis".into())
            .spawn(move || {
                let mut link = Link {
                    next_connect: Instant::now()
                        + if first.is_some() {
                            Duration::ZERO
                        } else {
                            RECONNECT
                        },
                    conn: first,
                    last_sweep: Instant::now(),
                };
                while let Some(agent) = a.upgrade() {
                    agent.step(&mut link);
                }
            });
        if spawned.is_err() {
            crate::observe::log(format_args!(
                "cannot start the Redis agent thread: cluster limits act as if Redis were down"
            ));
            agent.up.store(false, Ordering::Relaxed);
        }
        agent
    }

    /// The current up/down epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Whether the last command to Redis succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Asks for a refill of `key`'s bucket of `limit`.
    pub fn want(&self, limit: Weak<NodeLimit>, key: u64) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((limit, key));
        self.wake.notify_one();
    }

    /// The cluster limits whose stale stock the agent returns.
    pub fn track(&self, limits: Vec<Arc<NodeLimit>>) {
        let mut l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|w| w.strong_count() > 0);
        for n in limits {
            if !l.iter().any(|w| w.as_ptr() == Arc::as_ptr(&n)) {
                l.push(Arc::downgrade(&n));
            }
        }
    }

    /// One round: wait for refills (or the sweep's time), connect if need be, send
    /// one pipeline.
    fn step(&self, link: &mut Link) {
        let batch = {
            let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let (mut q, _) = self
                .wake
                .wait_timeout_while(q, SWEEP, |q| q.is_empty())
                .unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *q)
        };
        if link.conn.is_none() && Instant::now() >= link.next_connect {
            match self.connect() {
                Ok(c) => {
                    if !self.is_up() {
                        crate::observe::log(format_args!(
                            "Redis {} is back: cluster limits shared again",
                            self.settings.address
                        ));
                        self.epoch.fetch_add(1, Ordering::Relaxed);
                    }
                    self.up.store(true, Ordering::Relaxed);
                    link.conn = Some(c);
                }
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    self.down(&format!("cannot connect: {e}"));
                    link.next_connect = Instant::now() + RECONNECT;
                }
            }
        }
        let now = super::now();
        let mut items: Vec<Item> = batch
            .into_iter()
            .filter_map(|(w, key)| self.refill_item(&w.upgrade()?, key, now))
            .collect();
        if link.last_sweep.elapsed() >= SWEEP {
            link.last_sweep = Instant::now();
            self.stale_items(now, &mut items);
        }
        if items.is_empty() {
            return;
        }
        let result = match &mut link.conn {
            Some((c, sha)) => self.lease(c, sha, &items),
            None => Err(std::io::Error::other("Redis is down")),
        };
        if let Err(e) = result {
            for it in &items {
                it.limit.cell(it.key, |c| c.pending = false);
            }
            if link.conn.take().is_some() {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.down(&e.to_string());
                // Once straight away (a restarted Redis), then once a second.
                link.next_connect = Instant::now();
            }
        }
    }

    fn down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            self.epoch.fetch_add(1, Ordering::Relaxed);
            crate::observe::log(format_args!(
                "Redis {} unavailable ({why}): cluster limits {} until it is back",
                self.settings.address,
                self.settings.on_error.while_down()
            ));
        }
    }

    fn connect(&self) -> std::io::Result<(Conn, String)> {
        let s = &self.settings;
        let mut c = Conn::connect(&s.address, s.connect_timeout, s.timeout)?;
        let check = |r: Reply, what: &str| match r {
            Reply::Error(e) => Err(std::io::Error::other(format!("{what}: {e}"))),
            r => Ok(r),
        };
        if let Some(p) = &s.password {
            let r = match &s.username {
                Some(u) => c.call(&[b"AUTH", u.as_bytes(), p.0.as_bytes()])?,
                None => c.call(&[b"AUTH", p.0.as_bytes()])?,
            };
            check(r, "AUTH")?;
        }
        if s.database != 0 {
            check(c.call(&[b"SELECT", s.database.to_string().as_bytes()])?, "SELECT")?;
        }
        match check(
            c.call(&[b"SCRIPT", b"LOAD", LEASE_SCRIPT.as_bytes()])?,
            "SCRIPT LOAD",
        )? {
            Reply::Bulk(Some(sha)) => Ok((c, String::from_utf8_lossy(&sha).into_owned())),
            other => Err(std::io::Error::other(format!("SCRIPT LOAD answered {other:?}"))),
        }
    }

    fn redis_key(&self, limit: &NodeLimit, suffix: &str) -> Vec<u8> {
        format!("{}{}:{suffix}", self.settings.key_prefix, limit.def.name).into_bytes()
    }

    /// A refill of `key`: the next lease's size, and the debt to pay.
    fn refill_item(&self, limit: &Arc<NodeLimit>, key: u64, now: Nanos) -> Option<Item> {
        let max = limit.rate_of(key).max_lease();
        let (suffix, want) = limit.cell(key, |c| {
            let since = now.saturating_sub(c.refilled_at);
            c.lease = if c.constrained {
                1
            } else if since < 100_000_000 {
                c.lease.saturating_mul(2)
            } else if since > 1_000_000_000 {
                c.lease / 2
            } else {
                c.lease
            }
            .clamp(1, max);
            let debt = (-c.stock).max(0) as u32;
            (c.suffix.clone(), c.lease.saturating_add(debt))
        })?;
        Some(Item {
            limit: limit.clone(),
            key,
            redis_key: self.redis_key(limit, &suffix),
            want,
            back: 0,
        })
    }

    /// Returns for stock nobody took for [`STALE_STOCK`].
    fn stale_items(&self, now: Nanos, items: &mut Vec<Item>) {
        let limits: Vec<Arc<NodeLimit>> = self
            .limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for l in limits {
            let mut stale = Vec::new();
            l.each_cell(|key, c| {
                if c.stock > 0 && !c.pending && now.saturating_sub(c.last_take) >= STALE_STOCK {
                    stale.push((key, c.stock as u32, c.suffix.clone()));
                    c.stock = 0;
                    c.pending = true;
                }
            });
            for (key, back, suffix) in stale {
                items.push(Item {
                    redis_key: self.redis_key(&l, &suffix),
                    limit: l.clone(),
                    key,
                    want: 0,
                    back,
                });
            }
        }
    }

    /// One pipeline of leases; applies what Redis granted.
    fn lease(&self, c: &mut Conn, sha: &mut String, items: &[Item]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(items.len() * 128);
        for it in items {
            let rate: &Rate = it.limit.rate_of(it.key);
            let us = |ns: Nanos| format!("{:.3}", ns as f64 / 1_000.0);
            let (t, tau, ahead) = (us(rate.interval), us(rate.tolerance), us(rate.lookahead));
            let (want, back) = (it.want.to_string(), it.back.to_string());
            encode(
                &mut out,
                &[
                    b"EVALSHA",
                    sha.as_bytes(),
                    b"1",
                    &it.redis_key,
                    t.as_bytes(),
                    tau.as_bytes(),
                    ahead.as_bytes(),
                    want.as_bytes(),
                    back.as_bytes(),
                ],
            );
        }
        self.commands.fetch_add(items.len() as u64, Ordering::Relaxed);
        let replies = c.pipeline(&out, items.len())?;
        let now = super::now();
        let mut noscript = false;
        for (it, r) in items.iter().zip(replies) {
            // Bounded whatever Redis says: never more than asked, waits of a day at most.
            let (granted, wait_us, left) = match r {
                Reply::Array(Some(v)) => match v.as_slice() {
                    [Reply::Int(k), Reply::Int(w), Reply::Int(l)] => (
                        (*k).clamp(0, i64::from(it.want)) as u64,
                        (*w).clamp(0, MAX_WAIT_US) as u64,
                        (*l).clamp(0, i64::from(u32::MAX)) as u64,
                    ),
                    _ => (0, 0, 0),
                },
                Reply::Error(e) => {
                    // This item failed (OOM, BUSY, a flushed script cache): it is
                    // asked again by the next request that needs it.
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    if e.starts_with("NOSCRIPT") {
                        noscript = true;
                    }
                    it.limit.cell(it.key, |c| c.pending = false);
                    continue;
                }
                _ => (0, 0, 0),
            };
            self.granted.fetch_add(granted, Ordering::Relaxed);
            it.limit.cell(it.key, |c| {
                c.pending = false;
                if it.want == 0 {
                    return;
                }
                c.stock = c.stock.saturating_add(granted as i64);
                c.refilled_at = now;
                // Near the limit (less than a lease left in Redis's bucket) no
                // token goes out ahead of Redis, and asks shrink to one.
                c.constrained = left < u64::from(c.lease);
                if granted < u64::from(it.want) && c.stock <= 0 {
                    c.blocked_until = now.saturating_add(wait_us.max(1) * 1_000);
                }
            });
        }
        if noscript {
            // The script cache was flushed (SCRIPT FLUSH, a failover): load it again
            // on this connection; Redis stays up.
            match c.call(&[b"SCRIPT", b"LOAD", LEASE_SCRIPT.as_bytes()])? {
                Reply::Bulk(Some(new)) => *sha = String::from_utf8_lossy(&new).into_owned(),
                other => return Err(std::io::Error::other(format!("SCRIPT LOAD answered {other:?}"))),
            }
        }
        Ok(())
    }
}
