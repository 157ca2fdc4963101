//! Shared by `benches/limits.rs` and the `limit_ops` / `limit_memory` examples: a
//! node limit of each kind, bound the way a snapshot binds it, and a shard's view.

use ringway::config::traffic::{By, LimitDef, TrafficConfig, Unit};
use ringway::traffic::{NodeLimit, Registry, ShardLimit};
use std::sync::Arc;

/// A node-scope limit counting `by`, of `rate` a second: high enough never to refuse
/// in a benchmark (10,000,000/s, as the compare.sh limit-key scenario).
pub fn limit(by: By, rate: u64, max_clients: usize) -> Arc<NodeLimit> {
    let traffic = TrafficConfig {
        limits: vec![LimitDef::new("bench", by, rate, Unit::Second, 0)],
        max_clients,
        ..TrafficConfig::default()
    };
    Registry::default().bind(&traffic).remove(0)
}

/// A shard's side of `node`.
pub fn shard(node: &Arc<NodeLimit>) -> ShardLimit {
    ShardLimit::new(node.clone(), Arc::default(), Arc::default())
}
