//! A snapshot: one validated config with its compiled router, immutable and versioned.
//!
//! The control thread builds a [`Snapshot`] off the data path and sends an `Arc` of it
//! to every shard; each shard makes its own [`ShardView`] (its own router clone and
//! balancer state) and switches to it between requests.

use crate::access::jdcloud::KeyCache;
use crate::config::traffic::By;
use crate::config::{Config, EndpointDef, UpstreamAddr};
use crate::observe::metrics::{Counter, Histogram, ShardStats, UpstreamStats};
use crate::traffic::{NodeLimit, Registry, ShardLimit};
use crate::upstream::health::{GroupHealth, HealthRegistry};
use crate::upstream::maglev::Maglev;
use crate::upstream::{Balancer, Endpoint, UpstreamId};
use ringway_router::{CompiledRouter, EndpointId, EnvId, Origin, RouteId};
use std::cell::RefCell;
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
    /// (group, environment, endpoint) → the endpoint that replaces it there
    /// (`publish.ENV.endpoints`). Empty for most configs: then never looked up.
    pub overrides: HashMap<(usize, EnvId, EndpointId), EndpointId>,
    /// The node's buckets of `config.traffic.limits`, in its order (bound by
    /// [`Snapshot::bind_limits`]; empty until then, which limits nothing).
    pub limits: Vec<Arc<NodeLimit>>,
    /// Indexed by `RouteId`: the limits covering the route, in config order.
    pub route_limits: Vec<RouteLimits>,
    /// The bucket key of every caller ([`crate::traffic::Ident::key`]), hashed once
    /// per snapshot: subscription keys, then key pairs, in `[access]` order.
    pub caller_keys: Vec<u64>,
    /// Indexed by `EndpointId`: the process's health of each endpoint group (bound
    /// by [`Snapshot::bind_health`]; empty until then: every member counts as up).
    pub health: Vec<Option<Arc<GroupHealth>>>,
}

/// The Maglev table of a consistent-hash group. A member is named as the config
/// names it ([`UpstreamAddr::identity`]), so the table — and every key's member — is
/// the same on every shard, in every process with the same members, and across
/// reloads and certificate renewals.
fn maglev_table(members: &[(UpstreamAddr, u32)]) -> Option<Arc<Maglev>> {
    let names: Vec<String> = members.iter().map(|(u, _)| u.identity()).collect();
    let entries: Vec<(&[u8], u32)> = names
        .iter()
        .zip(members)
        .map(|(n, (_, w))| (n.as_bytes(), (*w).max(1)))
        .collect();
    Maglev::build(&entries, |_| true).map(Arc::new)
}

/// The limits of one route.
#[derive(Clone, Debug, Default)]
pub struct RouteLimits {
    /// Indices into [`Snapshot::limits`].
    pub limits: Box<[u16]>,
    /// One of them counts per client address (the address is worked out first).
    pub by_client: bool,
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
                    maglev: (*lb == crate::config::Lb::ConsistentHash)
                        .then(|| maglev_table(members))
                        .flatten(),
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
        let mut overrides = HashMap::new();
        for o in &config.endpoint_overrides {
            let env = router
                .env_id(&o.env)
                .ok_or_else(|| format!("unknown environment '{}'", o.env))?;
            overrides.insert(
                (o.group, env, EndpointId(o.endpoint as u32)),
                EndpointId(o.replacement as u32),
            );
        }
        Ok(Snapshot {
            version,
            config,
            upstreams,
            endpoints,
            literal,
            default_env,
            stage_header,
            overrides,
            limits: Vec::new(),
            route_limits: Vec::new(),
            caller_keys: Vec::new(),
            health: Vec::new(),
        })
    }

    /// Binds the config's endpoint groups to the process's health in `registry`
    /// (kept across reloads for groups whose members and policy did not change).
    pub fn bind_health(&mut self, registry: &HealthRegistry) {
        self.health = registry.bind(&self.config.endpoints);
    }

    /// The health of endpoint `id`, if it is a group.
    #[inline]
    pub fn group_health(&self, id: EndpointId) -> Option<&GroupHealth> {
        self.health.get(id.0 as usize)?.as_deref()
    }

    /// Binds the config's limits to the node's buckets in `registry` (kept across
    /// reloads for definitions that did not change) and works out each route's.
    pub fn bind_limits(&mut self, registry: &Registry) {
        let traffic = &self.config.traffic;
        self.limits = registry.bind(traffic);
        if traffic.limits.is_empty() {
            self.route_limits = Vec::new();
            return;
        }
        let access = &self.config.access;
        self.caller_keys = access
            .subscription_keys
            .iter()
            .map(|k| k.id.as_str())
            .chain(access.key_pairs.iter().map(|k| k.access_key.as_str()))
            .map(|id| crate::traffic::Ident::Caller(id).key())
            .collect();
        self.route_limits = self
            .config
            .routes
            .iter()
            .map(|r| {
                let limits: Box<[u16]> = traffic
                    .limits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.covers(r.group_index, &r.group, &r.name))
                    .map(|(i, _)| i as u16)
                    .collect();
                let by_client = limits
                    .iter()
                    .any(|&i| traffic.limits[usize::from(i)].by == By::ClientIp);
                RouteLimits { limits, by_client }
            })
            .collect();
    }

    /// The limits of `route` (none when the snapshot has none).
    #[inline]
    pub fn limits_of(&self, route: RouteId) -> Option<&RouteLimits> {
        self.route_limits
            .get(route.index())
            .filter(|l| !l.limits.is_empty())
    }

    /// The endpoint `route` sends to in `env` for its target's endpoint `e`: `e`,
    /// unless the environment publishing the route's group replaces it.
    #[inline]
    pub fn endpoint_in(&self, route: RouteId, env: EnvId, e: EndpointId) -> EndpointId {
        if self.overrides.is_empty() {
            return e;
        }
        let group = self
            .config
            .routes
            .get(route.index())
            .map_or(usize::MAX, |r| r.group_index);
        self.overrides.get(&(group, env, e)).copied().unwrap_or(e)
    }

    /// The version of `route`'s group that `env` publishes (versioned groups only).
    pub fn version_in(&self, route: RouteId, env: EnvId) -> Option<&str> {
        let group = self
            .config
            .groups
            .get(self.config.routes.get(route.index())?.group_index)?;
        group.versions.as_ref()?.in_env(self.env_name(env)?)
    }

    /// The name of environment `env`.
    pub fn env_name(&self, env: EnvId) -> Option<&str> {
        self.config
            .router
            .environments
            .get(usize::from(env.0))
            .map(String::as_str)
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
    pub auth_stats: AuthStats,
    /// `[group][env]`: the histogram of the version the environment publishes, for
    /// versioned groups (empty inner vectors for the others).
    pub version_stats: Vec<Vec<Option<Arc<Histogram>>>>,
    /// Signing keys of this snapshot's key pairs, derived on first use.
    pub signing_keys: KeyCache,
    /// This shard's leases on the snapshot's limits (same order).
    pub limits: RefCell<Vec<ShardLimit>>,
}

/// Admission counters per caller and group, resolved once per snapshot:
/// `keys[i][j]` counts subscription key `i` calling its `j`-th group (the order of
/// its sorted `groups`), `pairs` the same for key pairs.
#[derive(Debug, Default)]
pub struct AuthStats {
    pub keys: Vec<Vec<Arc<Counter>>>,
    pub pairs: Vec<Vec<Arc<Counter>>>,
}

impl AuthStats {
    fn new(config: &crate::config::Config, stats: &ShardStats) -> AuthStats {
        let group = |g: &usize| config.groups.get(*g).map_or("", |g| g.name.as_str());
        let a = &config.access;
        AuthStats {
            keys: a
                .subscription_keys
                .iter()
                .map(|k| {
                    k.groups
                        .iter()
                        .map(|g| stats.auth(group(g), &k.id, true))
                        .collect()
                })
                .collect(),
            pairs: a
                .key_pairs
                .iter()
                .map(|k| {
                    k.groups
                        .iter()
                        .map(|g| stats.auth(group(g), &k.access_key, true))
                        .collect()
                })
                .collect(),
        }
    }
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
    pub auth_stats: AuthStats,
    pub version_stats: Vec<Vec<Option<Arc<Histogram>>>>,
    pub limits: Vec<ShardLimit>,
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
        let auth_stats = AuthStats::new(&snap.config, stats);
        let envs = &snap.config.router.environments;
        let version_stats = snap
            .config
            .groups
            .iter()
            .map(|g| match &g.versions {
                None => Vec::new(),
                Some(vs) => envs
                    .iter()
                    .map(|e| vs.in_env(e).map(|v| stats.version(&g.name, v, e)))
                    .collect(),
            })
            .collect();
        let limits = snap
            .limits
            .iter()
            .map(|l| {
                let name = &l.def.name;
                ShardLimit::new(
                    l.clone(),
                    stats.limit(name, "allowed"),
                    stats.limit(name, "refused"),
                )
            })
            .collect();
        PreparedView {
            snap,
            router,
            route_stats,
            upstream_stats,
            auth_stats,
            version_stats,
            limits,
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
            auth_stats: p.auth_stats,
            version_stats: p.version_stats,
            signing_keys: KeyCache::default(),
            limits: RefCell::new(p.limits),
        }
    }

    /// Takes over `old`'s leases on the limits both views share (a reload that kept
    /// their definitions).
    pub fn adopt_leases(&self, old: &ShardView) {
        let mut old = old.limits.borrow_mut();
        for l in self.limits.borrow_mut().iter_mut() {
            if let Some(o) = old.iter_mut().find(|o| Arc::ptr_eq(&o.node, &l.node)) {
                l.adopt(o);
            }
        }
    }

    /// The counters of upstream `id`.
    #[inline]
    pub fn upstream_stats(&self, id: UpstreamId) -> &UpstreamStats {
        &self.upstream_stats[id.index()]
    }
}
