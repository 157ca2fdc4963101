//! Per-shard keep-alive pools of upstream connections.
//!
//! The pool key is everything that makes two connections interchangeable (as
//! pingora's `Peer::reuse_hash`): today the upstream socket address, as every upstream
//! is plain TCP; HTTPS upstreams add TLS on/off, SNI, the verification settings and
//! the client certificate to [`PoolKey`], so a connection verified for one name is
//! never handed out for another. Idle connections are kept
//! newest-last and taken from the end (the most recently used is the least likely to
//! have been closed by the upstream); each has an idle deadline, and a periodic sweep
//! closes the expired ones so they do not linger on the upstream.
//!
//! Each key's [`UpstreamStats::idle`] gauge is kept equal to the number of idle
//! connections pooled for it: the pool is its only writer, on the shard's thread.

use crate::io::Conn;
use crate::observe::metrics::UpstreamStats;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What makes two upstream connections interchangeable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// The idle connections of one key, and the counters that report them.
#[derive(Debug)]
struct KeyPool {
    idle: Vec<Idle>,
    stats: Arc<UpstreamStats>,
}

/// One shard's pools.
#[derive(Debug, Default)]
pub struct ConnPool {
    pools: HashMap<PoolKey, KeyPool>,
}

impl ConnPool {
    /// An idle connection for `key` that has not outlived `idle_timeout`.
    pub fn take(&mut self, key: PoolKey, idle_timeout: Duration) -> Option<Conn> {
        let pool = self.pools.get_mut(&key)?;
        let now = Instant::now();
        while let Some(idle) = pool.idle.pop() {
            pool.stats.idle.dec();
            if now.duration_since(idle.since) < idle_timeout {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Returns a reusable connection; dropped (closed) when the pool is full. `stats`
    /// are the counters of `key`'s upstream.
    pub fn put(&mut self, key: PoolKey, conn: Conn, max_idle: usize, stats: &Arc<UpstreamStats>) {
        let pool = self.pools.entry(key).or_insert_with(|| KeyPool {
            idle: Vec::new(),
            stats: stats.clone(),
        });
        if pool.idle.len() < max_idle {
            pool.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
            pool.stats.idle.inc();
        }
    }

    /// Closes connections idle for longer than `idle_timeout` and pools whose key is
    /// not `alive`.
    pub fn sweep(&mut self, idle_timeout: Duration, alive: impl Fn(&PoolKey) -> bool) {
        let now = Instant::now();
        self.pools.retain(|k, pool| {
            let before = pool.idle.len();
            if alive(k) {
                pool.idle.retain(|i| now.duration_since(i.since) < idle_timeout);
            } else {
                pool.idle.clear();
            }
            pool.stats.idle.sub((before - pool.idle.len()) as u64);
            !pool.idle.is_empty()
        });
    }

    /// Idle connections per key, for metrics.
    pub fn sizes(&self) -> impl Iterator<Item = (&PoolKey, usize)> {
        self.pools.iter().map(|(k, p)| (k, p.idle.len()))
    }
}
