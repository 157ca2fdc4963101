//! Traffic control: rate limits exact across the shards of a node, and across the
//! instances of a cluster through Redis, with no lock and no shared cache line on a
//! request's path.
//!
//! ```text
//!   request ──▶ shard lease (lease.rs)   tokens this shard holds: a local decrement
//!                 │ empty
//!                 ▼
//!               node pool (node.rs)      one GCRA bucket per limit and key, behind a
//!                 │ cluster scope         striped lock taken once per lease
//!                 ▼
//!               Redis (redis/)           the same bucket in a Lua script, leased in
//!                                        blocks by one agent thread per process
//! ```
//!
//! A lease is a batch of tokens taken from the level above: up to 10 ms of the
//! limit's rate (`gcra::LOOKAHEAD`), grown while a shard uses its leases up quickly
//! and shrunk when it does not. A shard refused by the node caches the time of the
//! next token and refuses locally until then, so a flood of refused requests costs
//! no cross-core traffic either. Unused tokens go back when a lease goes stale
//! (20 ms unused) or its view is replaced. `docs/traffic.md` says what this
//! guarantees and what it costs.
//!
//! This layer imports `config/` and `observe/` only; the policy that calls it is
//! `proxy/policy/limits.rs`.

pub mod fields;
pub mod gcra;
pub mod lease;
pub mod node;
pub mod redis;

pub use gcra::Nanos;
pub use lease::{ShardLimit, Verdict};
pub use node::{NodeLimit, Registry};

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// The limits' clock: nanoseconds since the first call in this process (monotonic).
pub fn clock(at: Instant) -> Nanos {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_nanos() as Nanos
}

/// Now, on [`clock`].
pub fn now() -> Nanos {
    clock(Instant::now())
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// Over limit `limit` (an index into the snapshot's limits): no token before
    /// `retry_at`.
    Over {
        limit: usize,
        retry_at: Nanos,
        now: Nanos,
    },
    /// Limit `limit` is cluster-wide, Redis is unreachable, and
    /// `on_redis_error = "deny"`.
    Unavailable { limit: usize },
}

impl Limited {
    pub fn limit(&self) -> usize {
        match *self {
            Limited::Over { limit, .. } | Limited::Unavailable { limit } => limit,
        }
    }
}

/// Who a request counts as, for one limit: the bucket's key in this process and,
/// for cluster limits, its name in Redis.
#[derive(Clone, Copy, Debug)]
pub enum Ident<'a> {
    /// `by = "all"`.
    All,
    /// `by = "key"`: the caller's id.
    Caller(&'a str),
    /// `by = "client_ip"`.
    Ip(IpAddr),
}

impl Ident<'_> {
    /// The bucket key: a keyed hash (per-process random key, so clients cannot
    /// aim at one slot of the tables), 0 for [`Ident::All`].
    pub fn key(&self) -> u64 {
        static SEED: OnceLock<std::hash::RandomState> = OnceLock::new();
        let mut h = SEED.get_or_init(std::hash::RandomState::new).build_hasher();
        match self {
            Ident::All => return 0,
            Ident::Caller(id) => {
                h.write_u8(1);
                h.write(id.as_bytes());
            }
            Ident::Ip(ip) => {
                h.write_u8(2);
                match bucket_ip(*ip) {
                    IpAddr::V4(v4) => h.write(&v4.octets()),
                    IpAddr::V6(v6) => h.write(&v6.octets()),
                }
            }
        }
        h.finish() | 1
    }

    /// The key's suffix in Redis (`…:LIMIT:SUFFIX`): the same on every instance.
    pub fn redis_suffix(&self) -> String {
        match self {
            Ident::All => "all".to_string(),
            Ident::Caller(id) => format!("key:{id}"),
            Ident::Ip(ip) => match bucket_ip(*ip) {
                IpAddr::V6(v6) => format!("ip:{v6}/64"),
                v4 => format!("ip:{v4}"),
            },
        }
    }
}

/// The address a client's bucket is kept under: an IPv4 address (mapped ones as
/// IPv4), or an IPv6 address's /64 — one host's usual share, which it can fill
/// with fresh addresses at will.
pub fn bucket_ip(ip: IpAddr) -> IpAddr {
    match crate::config::traffic::canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::from(u64::MAX))).into()),
        v4 => v4,
    }
}

/// A `HashMap` hasher for keys that are hashes already.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
