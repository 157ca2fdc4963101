//! The upstream side: where a proxied request can go and how a connection to it is
//! had.
//!
//! - [`UpstreamId`] and [`Endpoint`]: the resolved addresses of a snapshot and the
//!   endpoints (single or groups) that name them.
//! - `balance.rs`: [`Balancer`], per-shard picks over endpoint groups.
//! - `pool.rs`: [`ConnPool`], per-shard idle connections keyed by [`PoolKey`].
//! - `connect.rs`: [`connect_to`], a TCP connect with a deadline that never leaks
//!   the socket, then the TLS handshake of an HTTPS upstream, and its
//!   [`ConnectError`].
//!
//! - `health.rs`: [`health::GroupHealth`], the process's view of which members are
//!   up (outlier ejection, health checks); `check.rs`: the one checker thread.
//! - `maglev.rs`: the consistent-hash table of `lb = "consistent_hash"`.
//!
//! This layer knows nothing of client connections or of the proxy phases that use
//! it: it imports `io`, `config` and `observe` only.

mod balance;
pub mod check;
mod connect;
pub mod health;
pub mod maglev;
mod pool;

pub use balance::{Balancer, Pick};
pub use connect::{connect_to, ConnectError, VerifyFailure};
pub use pool::{ConnPool, PoolKey};

use crate::config::Lb;

/// One resolved upstream address of a snapshot (an index into
/// `Snapshot::upstreams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub u32);

impl UpstreamId {
    /// The index into the snapshot's upstream list.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An endpoint as the data path sees it.
#[derive(Debug)]
pub enum Endpoint {
    /// One address.
    Single(UpstreamId),
    /// Members with their weights (≥ 1), picked by `lb`; `maglev`: the table of
    /// `lb = "consistent_hash"`, built with the snapshot (off the shards).
    Group {
        lb: Lb,
        members: Vec<(UpstreamId, u32)>,
        maglev: Option<std::sync::Arc<maglev::Maglev>>,
    },
}
