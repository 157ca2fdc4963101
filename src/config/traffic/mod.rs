//! `[traffic]`: rate limits per group, route, key and client address; the Redis
//! that `scope = "cluster"` limits share; the proxies whose forwarding headers say
//! who the client is. `docs/traffic.md` is the reference.
//!
//! Checked here, each at its line: names, units and scopes; the groups, routes and
//! keys a limit names; a key's limit above its group's (JD's rule: a caller may not
//! be allowed more than the group it calls); a cluster limit without a Redis.

mod net;
mod redis;

pub use net::{canonical, parse_cidr, Cidr};
pub use redis::{
    OnRedisError, RedisSettings, SecretText, DEFAULT_KEY_PREFIX, DEFAULT_REDIS_CONNECT_TIMEOUT,
    DEFAULT_REDIS_TIMEOUT,
};

use super::access::{AccessConfig, Auth, GroupConfig};
use super::error::{did_you_mean_suffix, Diagnostics};
use super::file::{FileConfig, LimitFile, OverrideFile};
use super::Notice;
use std::ops::Range;
use toml::Spanned;

/// Clients a `by = "client_ip"` limit tracks by default: about 5.5 MiB per limit
/// once all are tracked, at the 58 bytes each that `docs/traffic.md` measures.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;
/// The largest `rate` and `burst` accepted.
pub const MAX_RATE: u64 = 1_000_000_000;
/// The fastest cluster limit, per second and key.
pub const MAX_CLUSTER_RATE: u64 = 1_000_000;
/// Limits in one config (each request's route keeps their indices in 16 bits).
pub const MAX_LIMITS: usize = 4_096;

/// The time a `rate` is counted over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }
}

/// What a limit counts separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum By {
    /// One budget for every request the limit matches.
    All,
    /// One budget per authenticated caller (subscription key id or access key).
    Key,
    /// One budget per client address.
    ClientIp,
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::All => "all",
            By::Key => "key",
            By::ClientIp => "client_ip",
        }
    }
}

/// Where a limit's budget lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This process: exact across its shards.
    Node,
    /// Every instance sharing `[traffic.redis]`.
    Cluster,
}

/// When responses carry `RateLimit-Policy` / `RateLimit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMode {
    /// On refusals only (the default).
    Refused,
    /// On every response of a limited route.
    Always,
    /// Never (`Retry-After` is still sent with a 429).
    Never,
}

/// A per-key rate for one caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Override {
    /// Subscription key id or access key.
    pub key: String,
    pub rate: u64,
    pub burst: u64,
}

/// `[[traffic.limits]]` (or a group's `caller_limit`), resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimitDef {
    pub name: String,
    /// Group indices; `None`: every group.
    pub groups: Option<Vec<usize>>,
    /// (group, route) names; `None`: every route of the groups.
    pub routes: Option<Vec<(String, String)>>,
    pub by: By,
    pub rate: u64,
    pub unit: Unit,
    pub burst: u64,
    pub scope: Scope,
    pub overrides: Vec<Override>,
}

impl LimitDef {
    /// A node-scope limit over every route, counting `by`, without overrides.
    pub fn new(name: &str, by: By, rate: u64, unit: Unit, burst: u64) -> LimitDef {
        LimitDef {
            name: name.to_string(),
            groups: None,
            routes: None,
            by,
            rate,
            unit,
            burst,
            scope: Scope::Node,
            overrides: Vec::new(),
        }
    }

    /// Whether the limit covers route `route` of group `group` (index `gi`).
    pub fn covers(&self, gi: usize, group: &str, route: &str) -> bool {
        self.groups.as_ref().is_none_or(|g| g.contains(&gi))
            && self
                .routes
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|(g, r)| g == group && r == route))
    }
}

/// `[traffic]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficConfig {
    pub limits: Vec<LimitDef>,
    pub redis: Option<RedisSettings>,
    pub trusted_proxies: Vec<Cidr>,
    pub headers: HeaderMode,
    pub max_clients: usize,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            limits: Vec::new(),
            redis: None,
            trusted_proxies: Vec::new(),
            headers: HeaderMode::Refused,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// Resolves `[traffic]` and the groups' `caller_limit`s; problems go to `d`, likely
/// mistakes (a key limit on a group without auth) to `notices`.
pub(super) fn traffic(
    f: &FileConfig,
    d: &mut Diagnostics<'_>,
    access: &AccessConfig,
    groups: &[GroupConfig],
    notices: &mut Vec<Notice>,
) -> TrafficConfig {
    let t = &f.traffic;
    let mut out = TrafficConfig::default();
    if let Some(r) = &t.redis {
        out.redis = redis::redis(r, d);
    }
    for p in t.trusted_proxies.iter().flatten() {
        match parse_cidr(p.get_ref()) {
            Ok(c) => out.trusted_proxies.push(c),
            Err(m) => d.at(p.span(), format!("traffic.trusted_proxies: {m}"), None, None),
        }
    }
    if let Some(h) = &t.headers {
        out.headers = match h.get_ref().as_str() {
            "refused" => HeaderMode::Refused,
            "always" => HeaderMode::Always,
            "never" => HeaderMode::Never,
            other => {
                d.at(
                    h.span(),
                    format!("traffic.headers: '{other}' is not \"refused\", \"always\" or \"never\""),
                    None,
                    None,
                );
                HeaderMode::Refused
            }
        };
    }
    if let Some(m) = &t.max_clients {
        if *m.get_ref() == 0 {
            d.at(m.span(), "traffic.max_clients: must be at least 1", None, None);
        }
        out.max_clients = (*m.get_ref()).max(1);
    }
    let names = Names::of(f, access);
    let mut spans: Vec<LimitSpans> = Vec::new();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for l in &t.limits {
        let name = l.get_ref().name.get_ref().as_str();
        if let Some(&(_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let (line, _) = d.line_col(first);
            d.at(
                l.get_ref().name.span(),
                format!("limit '{name}' is defined twice (first at line {line})"),
                None,
                None,
            );
            continue;
        }
        seen.push((name, l.span().start));
        if let Some(def) = limit(l.get_ref(), d, &names, out.redis.is_some()) {
            let o = l
                .get_ref()
                .overrides
                .iter()
                .map(|o| o.get_ref().rate.span())
                .collect();
            spans.push((l.span(), l.get_ref().rate.span(), o));
            out.limits.push(def);
        }
    }
    for (gi, g) in f.groups.iter().enumerate() {
        let Some(c) = &g.get_ref().caller_limit else {
            continue;
        };
        let group = g.get_ref().name.get_ref();
        let c = c.get_ref();
        let (unit, burst) = (unit(c.unit.as_ref(), d), burst(c.burst.as_ref(), d));
        let scope = scope(c.scope.as_ref(), d, out.redis.is_some());
        rate_value(&c.rate, d);
        let name = format!("{group}/caller");
        let at = g.get_ref().caller_limit.as_ref().map_or(0..0, |c| c.span());
        if !is_limit_name(&name) {
            d.at(
                at.clone(),
                format!("caller_limit: group '{group}' names the limit '{name}', which may use only letters, digits and -_./:"),
                Some(group),
                None,
            );
        } else if let Some(&(_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let (line, _) = d.line_col(first);
            d.at(
                at.clone(),
                format!("caller_limit: the limit '{name}' is already defined (line {line})"),
                Some(group),
                None,
            );
        }
        let def = LimitDef {
            name,
            groups: Some(vec![gi]),
            routes: None,
            by: By::Key,
            rate: *c.rate.get_ref(),
            unit,
            burst,
            scope,
            overrides: Vec::new(),
        };
        spans.push((c.rate.span(), c.rate.span(), Vec::new()));
        out.limits.push(def);
    }
    if out.limits.len() > MAX_LIMITS {
        d.at(
            0..0,
            format!("traffic: {} limits; at most {MAX_LIMITS}", out.limits.len()),
            None,
            None,
        );
    }
    key_limits_within_groups(&out.limits, &spans, groups, d);
    for (l, (at, _, _)) in out.limits.iter().zip(&spans) {
        if l.by != By::Key {
            continue;
        }
        let unauthenticated: Vec<&str> = groups
            .iter()
            .enumerate()
            .filter(|(gi, g)| g.auth == Auth::None && l.groups.as_ref().is_some_and(|gs| gs.contains(gi)))
            .map(|(_, g)| g.name.as_str())
            .collect();
        if !unauthenticated.is_empty() {
            let (line, column) = d.line_col(at.start);
            notices.push(Notice {
                kind: "limit",
                line,
                column,
                message: format!(
                    "limit '{}' counts per key, but group(s) {} take no credentials: it never applies to them",
                    l.name,
                    unauthenticated.join(", ")
                ),
            });
        }
    }
    out
}

/// Letters, digits and `-_./:`: a name that labels headers (an sf-string), metrics,
/// logs and Redis keys unescaped.
fn is_limit_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
}

/// Where a limit was written: its table, its rate, each override's rate.
type LimitSpans = (Range<usize>, Range<usize>, Vec<Range<usize>>);

/// The names a limit may refer to.
struct Names<'f> {
    groups: Vec<&'f str>,
    /// (group, route) names.
    routes: Vec<(&'f str, &'f str)>,
    callers: Vec<&'f str>,
}

impl<'f> Names<'f> {
    fn of(f: &'f FileConfig, access: &'f AccessConfig) -> Names<'f> {
        let groups = f
            .groups
            .iter()
            .map(|g| g.get_ref().name.get_ref().as_str())
            .collect();
        let routes = f
            .groups
            .iter()
            .flat_map(|g| {
                let name = g.get_ref().name.get_ref().as_str();
                g.get_ref()
                    .routes
                    .iter()
                    .map(move |r| (name, r.get_ref().name.get_ref().as_str()))
            })
            .collect();
        let callers = access
            .subscription_keys
            .iter()
            .map(|k| k.id.as_str())
            .chain(access.key_pairs.iter().map(|k| k.access_key.as_str()))
            .collect();
        Names {
            groups,
            routes,
            callers,
        }
    }
}

fn limit(l: &LimitFile, d: &mut Diagnostics<'_>, names: &Names<'_>, has_redis: bool) -> Option<LimitDef> {
    let name = l.name.get_ref();
    if !is_limit_name(name) {
        d.at(
            l.name.span(),
            format!(
                "limit name '{name}': use letters, digits and -_./: (it labels headers, metrics and logs)"
            ),
            None,
            None,
        );
    }
    let mut ok = true;
    let groups = l.groups.as_ref().map(|gs| {
        gs.iter()
            .filter_map(|g| match names.groups.iter().position(|n| n == g.get_ref()) {
                Some(i) => Some(i),
                None => {
                    ok = false;
                    d.at(
                        g.span(),
                        format!(
                            "limit '{name}': no group '{}'{}",
                            g.get_ref(),
                            did_you_mean_suffix(g.get_ref(), names.groups.iter().copied())
                        ),
                        None,
                        None,
                    );
                    None
                }
            })
            .collect::<Vec<usize>>()
    });
    let routes = l.routes.as_ref().map(|rs| {
        rs.iter()
            .filter_map(|r| {
                let text = r.get_ref();
                let Some((g, n)) = text.split_once('/') else {
                    ok = false;
                    d.at(
                        r.span(),
                        format!("limit '{name}': route '{text}' must be written \"group/route\""),
                        None,
                        None,
                    );
                    return None;
                };
                if !names.routes.contains(&(g, n)) {
                    ok = false;
                    let known = names
                        .routes
                        .iter()
                        .map(|(g, r)| format!("{g}/{r}"))
                        .collect::<Vec<_>>();
                    d.at(
                        r.span(),
                        format!(
                            "limit '{name}': no route '{text}'{}",
                            did_you_mean_suffix(text, known.iter().map(String::as_str))
                        ),
                        None,
                        None,
                    );
                    return None;
                }
                if let Some(gs) = &groups {
                    if !gs.iter().any(|&i| names.groups.get(i) == Some(&g)) {
                        ok = false;
                        d.at(
                            r.span(),
                            format!("limit '{name}': route '{text}' is not in the limit's groups"),
                            None,
                            None,
                        );
                    }
                }
                Some((g.to_string(), n.to_string()))
            })
            .collect::<Vec<_>>()
    });
    let by = match l.by.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
        None | Some(("all", _)) => By::All,
        Some(("key", _)) => By::Key,
        Some(("client_ip", _)) => By::ClientIp,
        Some((other, span)) => {
            ok = false;
            d.at(
                span,
                format!("limit '{name}': by '{other}' is not \"all\", \"key\" or \"client_ip\""),
                None,
                None,
            );
            By::All
        }
    };
    ok &= rate_value(&l.rate, d);
    let unit = unit(l.unit.as_ref(), d);
    let burst = burst(l.burst.as_ref(), d);
    let scope = scope(l.scope.as_ref(), d, has_redis);
    if !l.overrides.is_empty() && by != By::Key {
        ok = false;
        d.at(
            l.overrides[0].span(),
            format!("limit '{name}': overrides name keys, so the limit must be by = \"key\""),
            None,
            None,
        );
    }
    let overrides = l
        .overrides
        .iter()
        .filter_map(|o| override_(o.get_ref(), name, burst, d, names))
        .collect::<Vec<_>>();
    for (i, o) in l.overrides.iter().enumerate() {
        let key = o.get_ref().key.get_ref();
        if l.overrides[..i].iter().any(|p| p.get_ref().key.get_ref() == key) {
            ok = false;
            d.at(
                o.get_ref().key.span(),
                format!("limit '{name}': key '{key}' is overridden twice"),
                None,
                None,
            );
        }
    }
    if scope == Scope::Cluster {
        // The Redis script keeps time in microseconds (a double): a token every
        // microsecond at the most, per key.
        let fastest = std::iter::once(*l.rate.get_ref())
            .chain(l.overrides.iter().map(|o| *o.get_ref().rate.get_ref()))
            .max()
            .unwrap_or(0);
        if u128::from(fastest) > u128::from(MAX_CLUSTER_RATE) * u128::from(unit.seconds()) {
            ok = false;
            d.at(
                l.rate.span(),
                format!(
                    "limit '{name}': a cluster limit holds at most {MAX_CLUSTER_RATE} a second per key (Redis keeps microseconds)"
                ),
                None,
                None,
            );
        }
    }
    (ok && overrides.len() == l.overrides.len()).then(|| LimitDef {
        name: name.clone(),
        groups,
        routes,
        by,
        rate: *l.rate.get_ref(),
        unit,
        burst,
        scope,
        overrides,
    })
}

/// An override; its burst is the limit's unless it says otherwise.
fn override_(
    o: &OverrideFile,
    limit: &str,
    limit_burst: u64,
    d: &mut Diagnostics<'_>,
    names: &Names<'_>,
) -> Option<Override> {
    let key = o.key.get_ref();
    if !names.callers.contains(&key.as_str()) {
        d.at(
            o.key.span(),
            format!(
                "limit '{limit}': no subscription key id or access key '{key}'{}",
                did_you_mean_suffix(key, names.callers.iter().copied())
            ),
            None,
            None,
        );
        return None;
    }
    rate_value(&o.rate, d).then(|| Override {
        key: key.clone(),
        rate: *o.rate.get_ref(),
        burst: match &o.burst {
            Some(b) => burst(Some(b), d),
            None => limit_burst,
        },
    })
}

fn rate_value(r: &Spanned<u64>, d: &mut Diagnostics<'_>) -> bool {
    let v = *r.get_ref();
    if v == 0 || v > MAX_RATE {
        d.at(
            r.span(),
            format!("rate {v}: must be between 1 and {MAX_RATE} (to refuse everything, use a mock 429)"),
            None,
            None,
        );
        return false;
    }
    true
}

fn unit(u: Option<&Spanned<String>>, d: &mut Diagnostics<'_>) -> Unit {
    match u.map(|u| (u.get_ref().as_str(), u.span())) {
        None | Some(("second", _)) => Unit::Second,
        Some(("minute", _)) => Unit::Minute,
        Some(("hour", _)) => Unit::Hour,
        Some(("day", _)) => Unit::Day,
        Some((other, span)) => {
            d.at(
                span,
                format!(
                    "unit '{other}' is not second, minute, hour or day{}",
                    did_you_mean_suffix(other, ["second", "minute", "hour", "day"])
                ),
                None,
                None,
            );
            Unit::Second
        }
    }
}

fn burst(b: Option<&Spanned<u64>>, d: &mut Diagnostics<'_>) -> u64 {
    let Some(b) = b else { return 0 };
    if *b.get_ref() > MAX_RATE {
        d.at(b.span(), format!("burst: at most {MAX_RATE}"), None, None);
    }
    (*b.get_ref()).min(MAX_RATE)
}

fn scope(s: Option<&Spanned<String>>, d: &mut Diagnostics<'_>, has_redis: bool) -> Scope {
    match s.map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("node", _)) => Scope::Node,
        Some(("cluster", span)) => {
            if !has_redis {
                d.at(
                    span,
                    "scope \"cluster\" shares the limit through Redis: add [traffic.redis] with its address",
                    None,
                    None,
                );
            }
            Scope::Cluster
        }
        Some((other, span)) => {
            d.at(
                span,
                format!("scope '{other}' is not \"node\" or \"cluster\""),
                None,
                None,
            );
            Scope::Node
        }
    }
}

/// JD's rule: a per-key rate (a limit's own, an override's, a group's
/// `caller_limit`) may not exceed a whole-group limit of a group it covers.
fn key_limits_within_groups(
    limits: &[LimitDef],
    spans: &[LimitSpans],
    groups: &[GroupConfig],
    d: &mut Diagnostics<'_>,
) {
    let covers_group = |l: &LimitDef, gi: usize| l.groups.as_ref().is_none_or(|g| g.contains(&gi));
    for (k, (_, rate_at, override_at)) in limits.iter().zip(spans) {
        if k.by != By::Key {
            continue;
        }
        let rates =
            std::iter::once((k.rate, rate_at)).chain(k.overrides.iter().map(|o| o.rate).zip(override_at));
        for (rate, at) in rates {
            let over = groups.iter().enumerate().find_map(|(gi, g)| {
                if !covers_group(k, gi) {
                    return None;
                }
                limits
                    .iter()
                    .filter(|a| a.by == By::All && a.routes.is_none() && covers_group(a, gi))
                    // rate / unit > a.rate / a.unit, without division.
                    .find(|a| {
                        u128::from(rate) * u128::from(a.unit.seconds())
                            > u128::from(a.rate) * u128::from(k.unit.seconds())
                    })
                    .map(|a| (g, a))
            });
            if let Some((g, a)) = over {
                d.at(
                    at.clone(),
                    format!(
                        "limit '{}': {rate} per {} per key is above group '{}''s limit '{}' ({} per {}); a key's limit may not exceed its group's",
                        k.name,
                        k.unit.as_str(),
                        g.name,
                        a.name,
                        a.rate,
                        a.unit.as_str()
                    ),
                    None,
                    None,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
