//! Per-shard keep-alive pools of upstream connections.
//!
//! The pool key is everything that makes two connections interchangeable: today the
//! upstream socket address (plain TCP; no TLS upstream yet). Idle connections are kept
//! newest-last and taken from the end (the most recently used is the least likely to
//! have been closed by the upstream); each has an idle deadline, and a periodic sweep
//! closes the expired ones so they do not linger on the upstream.

use monoio::net::TcpStream;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What makes two upstream connections interchangeable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
}

#[derive(Debug)]
struct Idle {
    conn: TcpStream,
    since: Instant,
}

/// One shard's pools.
#[derive(Debug, Default)]
pub struct ConnPool {
    idle: HashMap<PoolKey, Vec<Idle>>,
}

impl ConnPool {
    /// An idle connection for `key` that has not outlived `idle_timeout`.
    pub fn take(&mut self, key: PoolKey, idle_timeout: Duration) -> Option<TcpStream> {
        let list = self.idle.get_mut(&key)?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            if now.duration_since(idle.since) < idle_timeout {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Returns a reusable connection; dropped (closed) when the pool is full.
    pub fn put(&mut self, key: PoolKey, conn: TcpStream, max_idle: usize) {
        let list = self.idle.entry(key).or_default();
        if list.len() < max_idle {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle for longer than `idle_timeout` and pools whose key is
    /// not `alive`.
    pub fn sweep(&mut self, idle_timeout: Duration, alive: impl Fn(&PoolKey) -> bool) {
        let now = Instant::now();
        self.idle.retain(|k, list| {
            list.retain(|i| now.duration_since(i.since) < idle_timeout);
            alive(k) && !list.is_empty()
        });
    }

    /// Idle connections per key, for metrics.
    pub fn sizes(&self) -> impl Iterator<Item = (&PoolKey, usize)> {
        self.idle.iter().map(|(k, v)| (k, v.len()))
    }
}
