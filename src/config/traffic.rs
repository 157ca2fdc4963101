//! `[traffic]`: rate limits per group, route, key and client address; the Redis
//! that `scope = "cluster"` limits share; the proxies whose forwarding headers say
//! who the client is. `docs/traffic.md` is the reference.
//!
//! Checked here, each at its line: names, units and scopes; the groups, routes and
//! keys a limit names; a key's limit above its group's (JD's rule: a caller may not
//! be allowed more than the group it calls); a cluster limit without a Redis.

use super::access::{AccessConfig, Auth, GroupConfig};
use super::error::{did_you_mean_suffix, Diagnostics};
use super::file::{FileConfig, LimitFile, OverrideFile, RedisFile};
use super::resolve::parse_duration;
use super::Notice;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// Clients a `by = "client_ip"` limit tracks by default (about 6.5 MiB per limit
/// once all are tracked; `docs/traffic.md` has the measurement).
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;
/// The largest `rate` and `burst` accepted.
pub const MAX_RATE: u64 = 1_000_000_000;
/// The fastest cluster limit, per second and key.
pub const MAX_CLUSTER_RATE: u64 = 1_000_000;
/// Limits in one config (each request's route keeps their indices in 16 bits).
pub const MAX_LIMITS: usize = 4_096;
/// Redis defaults: a lease is one command, so a slow Redis costs a request at most this.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
pub const DEFAULT_KEY_PREFIX: &str = "ringway:limit:";

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

/// What a cluster limit does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnRedisError {
    /// Admit, with the cluster limit applied by this node alone (the floor).
    Allow,
    /// Refuse with 503.
    Deny,
}

impl OnRedisError {
    /// What cluster limits do while Redis is down, for the log.
    pub fn while_down(self) -> &'static str {
        match self {
            OnRedisError::Allow => "apply per node",
            OnRedisError::Deny => "refuse requests (503)",
        }
    }
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
    /// Whether the limit covers route `route` of group `group` (index `gi`).
    pub fn covers(&self, gi: usize, group: &str, route: &str) -> bool {
        self.groups.as_ref().is_none_or(|g| g.contains(&gi))
            && self
                .routes
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|(g, r)| g == group && r == route))
    }
}

/// `[traffic.redis]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RedisSettings {
    /// `host:port`, resolved when connecting (a restarted Redis may move).
    pub address: String,
    pub on_error: OnRedisError,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub key_prefix: String,
    pub username: Option<String>,
    pub password: Option<SecretText>,
    pub database: u32,
}

/// A password: compared and hashed, never shown.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
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
        out.redis = redis(r, d);
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

fn redis(r: &Spanned<RedisFile>, d: &mut Diagnostics<'_>) -> Option<RedisSettings> {
    let r = r.get_ref();
    let address = r.address.get_ref();
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        d.at(
            r.address.span(),
            format!("traffic.redis.address '{address}': write host:port, as in \"127.0.0.1:6379\""),
            None,
            None,
        );
    }
    let dur = |v: &Option<Spanned<String>>, default: Duration, key: &str, d: &mut Diagnostics<'_>| match v {
        None => default,
        Some(s) => match parse_duration(s.get_ref()) {
            Ok(t) if !t.is_zero() => t,
            Ok(_) => {
                d.at(
                    s.span(),
                    format!("traffic.redis.{key}: must be above zero"),
                    None,
                    None,
                );
                default
            }
            Err(m) => {
                d.at(s.span(), format!("traffic.redis.{key}: {m}"), None, None);
                default
            }
        },
    };
    let on_error = match r
        .on_redis_error
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("allow", _)) => OnRedisError::Allow,
        Some(("deny", _)) => OnRedisError::Deny,
        Some((other, span)) => {
            d.at(
                span,
                format!("traffic.redis.on_redis_error '{other}' is not \"allow\" or \"deny\""),
                None,
                None,
            );
            OnRedisError::Allow
        }
    };
    let password = match &r.password_env {
        None => None,
        Some(v) => match std::env::var(v.get_ref()) {
            Ok(p) => Some(SecretText(p)),
            Err(_) => {
                d.at(
                    v.span(),
                    format!("traffic.redis.password_env: ${} is not set", v.get_ref()),
                    None,
                    None,
                );
                None
            }
        },
    };
    Some(RedisSettings {
        address: address.clone(),
        on_error,
        connect_timeout: dur(
            &r.connect_timeout,
            DEFAULT_REDIS_CONNECT_TIMEOUT,
            "connect_timeout",
            d,
        ),
        timeout: dur(&r.timeout, DEFAULT_REDIS_TIMEOUT, "timeout", d),
        key_prefix: r
            .key_prefix
            .as_ref()
            .map_or(DEFAULT_KEY_PREFIX.to_string(), |p| p.get_ref().clone()),
        username: r.username.as_ref().map(|u| u.get_ref().clone()),
        password,
        database: r.database.as_ref().map_or(0, |v| *v.get_ref()),
    })
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let written: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{s}' is not an address or CIDR (as in \"10.0.0.0/8\")"))?;
    let max = if written.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {max}"))?,
    };
    // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps,
    // as peers are compared by their IPv4 address.
    match (written, canonical(written)) {
        (IpAddr::V6(_), v4 @ IpAddr::V4(_)) if prefix >= 96 => Ok(Cidr {
            addr: v4,
            prefix: prefix - 96,
        }),
        _ => Ok(Cidr {
            addr: written,
            prefix,
        }),
    }
}

#[cfg(test)]
mod tests;
