//! Per-shard keep-alive pools of upstream connections.
//!
//! The pool key is everything that makes two connections interchangeable (as
//! pingora's `Peer::reuse_hash`): the upstream socket address and, for HTTPS
//! upstreams, the TLS identity ([`crate::config::tls::UpstreamTls::id`]: SNI, CA
//! file and contents, verification on/off, client certificate), so a connection
//! verified for one name is never handed out for another. Idle connections are kept
//! newest-last and taken from the end (the most recently used is the least likely to
//! have been closed by the upstream); each has an idle deadline, and a periodic sweep
//! closes the expired ones so they do not linger on the upstream.
//!
//! Backends close idle keep-alive connections all the time (gunicorn after 2 s, Node
//! after 5 s). A connection the upstream has closed must never be handed out: a
//! request with a body sent on it is lost (it cannot be retried: the body is gone).
//! So a connection idle for [`CHECK_AFTER_IDLE`] or more is looked at before it is
//! handed out ([`Conn::poll_input`]: one non-blocking `recv(MSG_PEEK)`; a connection
//! reused within that time costs nothing), and the once-a-second sweep drops every
//! idle connection whose upstream has closed it or sent it unsolicited bytes. The
//! race that is left — the upstream closing between the look and the write — is
//! covered by the retry of requests nothing of which reached it.
//!
//! Each key's [`UpstreamStats::idle`] gauge is kept equal to the number of idle
//! connections pooled for it: the pool is its only writer, on the shard's thread.

use crate::io::{Conn, Input};
use crate::observe::metrics::UpstreamStats;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A pooled connection idle at least this long is checked for a close by the
/// upstream before it is handed out. Under load connections come back within
/// microseconds and are not checked; backends' idle timeouts are seconds.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_millis(50);

/// Whether an idle connection can still carry a request: the upstream has neither
/// closed it nor sent anything unasked.
fn still_open(conn: &mut Conn) -> bool {
    matches!(conn.poll_input(), Input::None | Input::Unknown)
}

/// What makes two upstream connections interchangeable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    /// The TLS identity; `None` for plain HTTP.
    pub tls: Option<Arc<str>>,
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
    /// An idle connection for `key` that has not outlived `idle_timeout` and that
    /// the upstream has not closed.
    pub fn take(&mut self, key: PoolKey, idle_timeout: Duration) -> Option<Conn> {
        let pool = self.pools.get_mut(&key)?;
        let now = Instant::now();
        while let Some(idle) = pool.idle.pop() {
            pool.stats.idle.dec();
            let age = now.duration_since(idle.since);
            if age >= idle_timeout {
                continue;
            }
            let mut idle = idle;
            if age >= CHECK_AFTER_IDLE && !still_open(&mut idle.conn) {
                pool.stats.closed_idle.inc();
                continue;
            }
            return Some(idle.conn);
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

    /// Closes connections idle for longer than `idle_timeout` or closed by their
    /// upstream, and pools whose key is not `alive`.
    pub fn sweep(&mut self, idle_timeout: Duration, alive: impl Fn(&PoolKey) -> bool) {
        let now = Instant::now();
        self.pools.retain(|k, pool| {
            let before = pool.idle.len();
            if alive(k) {
                let stats = &pool.stats;
                pool.idle.retain_mut(|i| {
                    let open = still_open(&mut i.conn);
                    if !open {
                        stats.closed_idle.inc();
                    }
                    open && now.duration_since(i.since) < idle_timeout
                });
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
