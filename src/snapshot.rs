//! A snapshot: one validated config with its compiled router, immutable and versioned.
//!
//! The control thread builds a [`Snapshot`] off the data path and sends an `Arc` of it
//! to every shard; each shard makes its own [`ShardView`] (its own router clone and
//! balancer state) and switches to it between requests.

use crate::config::{Config, EndpointDef, UpstreamAddr};
use crate::observe::metrics::{Histogram, ShardStats, UpstreamStats};
use crate::upstream::{Balancer, Endpoint, UpstreamId};
use ringway_router::{CompiledRouter, EnvId, Origin};
use std::collections::HashMap;
use std::sync::Arc;

/// One config version, compiled.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub config: Config,
    /// Every upstream address a target can resolve to.
    pub upstreams: Vec<UpstreamAddr>,
    /// Indexed by `EndpointId`.
    pub endpoints: Vec<Endpoint>,
    /// Literal target origins (`http://host:port`) by (https?, authority).
    pub literal: HashMap<(bool, String), UpstreamId>,
    pub default_env: EnvId,
    /// Lowercased stage header name.
    pub stage_header: Option<Vec<u8>>,
}

impl Snapshot {
    /// Compiles `config` into a snapshot. The config was validated (and its router
    /// compiled once) when it was loaded, so failure here is unexpected but reported.
    pub fn build(config: Config, version: u64) -> Result<Snapshot, String> {
        let router = &config.compiled;
        let mut upstreams: Vec<UpstreamAddr> = Vec::new();
        // Interchangeable upstreams share an id: same address, authority and TLS.
        type Identity = (std::net::SocketAddr, String, Option<Arc<str>>);
        let mut by_addr: HashMap<Identity, UpstreamId> = HashMap::new();
        let mut intern = |u: &UpstreamAddr| -> UpstreamId {
            let identity = (u.addr, u.authority.clone(), u.tls.as_ref().map(|t| t.id.clone()));
            *by_addr.entry(identity).or_insert_with(|| {
                upstreams.push(u.clone());
                UpstreamId(upstreams.len() as u32 - 1)
            })
        };
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| match e {
                EndpointDef::Single { upstream, .. } => Endpoint::Single(intern(upstream)),
                EndpointDef::Group { lb, members, .. } => Endpoint::Group {
                    lb: *lb,
                    members: members.iter().map(|(u, w)| (intern(u), (*w).max(1))).collect(),
                },
            })
            .collect();
        let literal = config
            .literal_origins
            .iter()
            .map(|u| ((u.tls.is_some(), u.authority.clone()), intern(u)))
            .collect();
        let default_env = router
            .env_id(&config.server.environment)
            .ok_or_else(|| format!("unknown environment '{}'", config.server.environment))?;
        let stage_header = config
            .server
            .stage_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase().into_bytes());
        Ok(Snapshot {
            version,
            config,
            upstreams,
            endpoints,
            literal,
            default_env,
            stage_header,
        })
    }

    /// The upstream of a literal origin.
    pub fn literal_upstream(&self, origin: &Origin) -> Option<UpstreamId> {
        match origin {
            Origin::Url { tls, authority } => self.literal.get(&(*tls, authority.clone())).copied(),
            Origin::Endpoint(_) => None,
        }
    }

    /// The compiled router (each shard serves from its own clone).
    pub fn router(&self) -> &CompiledRouter {
        &self.config.compiled
    }

    /// The resolved address `id` names.
    #[inline]
    pub fn upstream(&self, id: UpstreamId) -> &UpstreamAddr {
        &self.upstreams[id.index()]
    }

    /// A stable hash of what the snapshot was built from.
    pub fn hash(&self) -> u64 {
        self.config.source.hash()
    }
}

/// A shard's own view of a snapshot: its router clone and balancer state.
#[derive(Debug)]
pub struct ShardView {
    pub snap: Arc<Snapshot>,
    pub router: CompiledRouter,
    pub balancer: Balancer,
    /// Indexed by `RouteId`.
    pub route_stats: Vec<Arc<Histogram>>,
    /// Indexed by `UpstreamId`.
    pub upstream_stats: Vec<Arc<UpstreamStats>>,
}

/// What a shard needs to switch to a snapshot, prepared off the shard (by the control
/// thread on reload): the shard's own router clone and its per-route and per-upstream
/// counters. Installing it is then a few pointer moves between two requests, however
/// many rules the snapshot has.
#[derive(Debug)]
pub struct PreparedView {
    pub snap: Arc<Snapshot>,
    pub router: CompiledRouter,
    pub route_stats: Vec<Arc<Histogram>>,
    pub upstream_stats: Vec<Arc<UpstreamStats>>,
}

impl PreparedView {
    pub fn new(snap: Arc<Snapshot>, stats: &ShardStats) -> PreparedView {
        let router = snap.router().clone();
        let route_stats = stats.routes(
            snap.config
                .routes
                .iter()
                .map(|r| (r.group.as_str(), r.name.as_str())),
        );
        let upstream_stats = snap
            .upstreams
            .iter()
            .map(|u| stats.upstream(&u.addr.to_string()))
            .collect();
        PreparedView {
            snap,
            router,
            route_stats,
            upstream_stats,
        }
    }
}

impl ShardView {
    pub fn new(p: PreparedView, seed: u64) -> ShardView {
        let balancer = Balancer::new(&p.snap.endpoints, p.snap.upstreams.len(), seed);
        ShardView {
            snap: p.snap,
            router: p.router,
            balancer,
            route_stats: p.route_stats,
            upstream_stats: p.upstream_stats,
        }
    }

    /// The counters of upstream `id`.
    #[inline]
    pub fn upstream_stats(&self, id: UpstreamId) -> &UpstreamStats {
        &self.upstream_stats[id.index()]
    }
}
