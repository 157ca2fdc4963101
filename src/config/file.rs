//! The config file as the user wrote it: a serde mirror of the TOML, syntax only.
//!
//! Nothing here is validated beyond types: durations are still strings, URLs are not
//! parsed, names are not checked for duplicates. [`super::validate`] turns a
//! [`FileConfig`] into the runtime [`super::Config`]. Every table denies unknown keys,
//! and the values an error may have to point at are [`Spanned`], so a message can name
//! the line and column.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub upstream: UpstreamFile,
    pub admin: Option<AdminFile>,
    #[serde(default)]
    pub log: LogFile,
    /// `name = "http://host:port"` or `name = { url = "https://…", sni = …, … }`.
    #[serde(default)]
    pub endpoints: OrderedMap<Spanned<EndpointFile>>,
    /// `[endpoint_groups.NAME]`.
    #[serde(default)]
    pub endpoint_groups: OrderedMap<Spanned<EndpointGroupFile>>,
    /// `[access]`: subscription keys, signature key pairs, backend signing keys.
    #[serde(default)]
    pub access: AccessFile,
    /// `[[groups]]`, in order: their routes, in order, are the router's rules.
    #[serde(default)]
    pub groups: Vec<Spanned<GroupFile>>,
    /// `[traffic]`: rate limits, the Redis they share through, trusted proxies.
    #[serde(default)]
    pub traffic: TrafficFile,
}

/// `[traffic]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrafficFile {
    /// `[[traffic.limits]]`, in order.
    #[serde(default)]
    pub limits: Vec<Spanned<LimitFile>>,
    pub redis: Option<Spanned<RedisFile>>,
    /// CIDRs whose `X-Forwarded-For` / `Forwarded` say who the client is.
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// `RateLimit` fields: `"refused"` (default), `"always"` or `"never"`.
    pub headers: Option<Spanned<String>>,
    /// Clients a `by = "client_ip"` limit tracks at most (default 100,000).
    pub max_clients: Option<Spanned<usize>>,
}

/// `[[traffic.limits]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitFile {
    pub name: Spanned<String>,
    pub groups: Option<Vec<Spanned<String>>>,
    /// `"group/route"`.
    pub routes: Option<Vec<Spanned<String>>>,
    /// `"all"` (default), `"key"` or `"client_ip"`.
    pub by: Option<Spanned<String>>,
    pub rate: Spanned<u64>,
    /// `second` (default), `minute`, `hour` or `day`.
    pub unit: Option<Spanned<String>>,
    /// Requests beyond the pace that may come at once (default 0).
    pub burst: Option<Spanned<u64>>,
    /// `"node"` (default) or `"cluster"`.
    pub scope: Option<Spanned<String>>,
    #[serde(default)]
    pub overrides: Vec<Spanned<OverrideFile>>,
}

/// A group's `caller_limit = { rate = …, unit = …, burst = … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallerLimitFile {
    pub rate: Spanned<u64>,
    pub unit: Option<Spanned<String>>,
    pub burst: Option<Spanned<u64>>,
    pub scope: Option<Spanned<String>>,
}

/// `overrides = [{ key = "mobile-app", rate = 5000 }]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideFile {
    /// A subscription key id or a key pair's access key.
    pub key: Spanned<String>,
    pub rate: Spanned<u64>,
    pub burst: Option<Spanned<u64>>,
}

/// `[traffic.redis]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisFile {
    /// `host:port`.
    pub address: Spanned<String>,
    /// `"allow"` (default) or `"deny"`.
    pub on_redis_error: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    /// Per command (default `100ms`).
    pub timeout: Option<Spanned<String>>,
    pub key_prefix: Option<Spanned<String>>,
    /// An environment variable holding the password (`AUTH`).
    pub password_env: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub database: Option<Spanned<u32>>,
}

/// `[access]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessFile {
    /// The header a subscription key comes in (default `jdcloud-apim-subscription-key`).
    pub subscription_key_header: Option<Spanned<String>>,
    /// A query parameter a subscription key may come in instead (default: none).
    pub subscription_key_query: Option<Spanned<String>>,
    /// How far `x-jdcloud-date` may be from the gateway's clock (default `5m`).
    pub signature_skew: Option<Spanned<String>>,
    /// Slots of the node's nonce store (default 4,194,304: 32 MiB once used).
    pub nonce_capacity: Option<Spanned<usize>>,
    /// The largest body a signature group reads whole to hash (default 1 MiB).
    pub max_signed_body: Option<Spanned<u64>>,
    #[serde(default)]
    pub subscription_keys: Vec<Spanned<SubscriptionKeyFile>>,
    #[serde(default)]
    pub key_pairs: Vec<Spanned<KeyPairFile>>,
    #[serde(default)]
    pub backend_keys: Vec<Spanned<BackendKeyFile>>,
}

/// `[[access.subscription_keys]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionKeyFile {
    pub id: Spanned<String>,
    pub key: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub key_env: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
}

/// `[[access.key_pairs]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyPairFile {
    pub access_key: Spanned<String>,
    pub secret_key: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
}

/// `[[access.backend_keys]]`: a key the gateway signs upstream requests with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendKeyFile {
    pub id: Spanned<String>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    /// Request header fields covered besides the fixed ones (default
    /// `["content-type", "content-length", "x-request-id"]`).
    pub signed_headers: Option<Vec<Spanned<String>>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    pub listen: Option<Spanned<Listen>>,
    pub shards: Option<usize>,
    pub environment: Option<Spanned<String>>,
    pub stage_header: Option<Spanned<String>>,
    pub no_match_status: Option<Spanned<u16>>,
    pub keep_client_host: Option<bool>,
    pub drain_timeout: Option<Spanned<String>>,
    pub normalize: Option<NormalizeFile>,
    /// `[server.tls]`: TLS listeners.
    pub tls: Option<Spanned<TlsFile>>,
}

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    pub listen: Spanned<Listen>,
    /// The first is the default (no SNI, or no name matches).
    pub certificates: Spanned<Vec<Spanned<CertFile>>>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<Spanned<String>>,
    /// ALPN protocols offered, in preference order (default `["http/1.1"]`).
    pub alpn: Option<Vec<Spanned<String>>>,
    pub handshake_timeout: Option<Spanned<String>>,
    /// Handshakes in flight per shard before new connections are refused.
    pub max_handshakes: Option<Spanned<usize>>,
    /// TLS 1.2 session-id cache entries, shared by the shards (0: off).
    pub session_cache: Option<usize>,
    /// Resumption tickets (default true).
    pub tickets: Option<bool>,
    /// mTLS: CA bundle client certificates are verified against.
    pub client_ca: Option<Spanned<String>>,
    /// `"required"` (default when `client_ca` is set) or `"optional"`.
    pub client_auth: Option<Spanned<String>>,
}

/// `{ cert = "chain.pem", key = "key.pem" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertFile {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `listen = "addr"` or `listen = ["addr", …]`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "an address string or an array of address strings")]
pub(crate) enum Listen {
    One(String),
    Many(Vec<String>),
}

/// `[server] normalize = { … }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NormalizeFile {
    pub merge_slashes: Option<bool>,
    pub encoded_slash: Option<EncodedSlashFile>,
    pub backslash: Option<BackslashFile>,
    pub semicolon: Option<SemicolonFile>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BackslashFile {
    Reject,
    Slash,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SemicolonFile {
    Reject,
    Strip,
    Keep,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EncodedSlashFile {
    Reject,
    Keep,
    Decode,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsFile {
    pub max_header_bytes: Option<Spanned<usize>>,
    pub max_body_bytes: Option<Spanned<u64>>,
    pub send_timeout: Option<Spanned<String>>,
    pub client_body_timeout: Option<Spanned<String>>,
    pub client_body_min_rate: Option<u64>,
    pub max_headers: Option<Spanned<usize>>,
    pub client_header_timeout: Option<Spanned<String>>,
    pub keepalive_timeout: Option<Spanned<String>>,
}

/// `[upstream]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    pub max_idle_per_endpoint: Option<usize>,
    pub idle_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    pub upgrade_idle_timeout: Option<Spanned<String>>,
    pub upgrade_half_closed_timeout: Option<Spanned<String>>,
    pub splice_min_bytes: Option<u64>,
    pub max_response_header_bytes: Option<Spanned<usize>>,
    pub max_response_headers: Option<Spanned<usize>>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminFile {
    pub listen: Spanned<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogFile {
    /// `"off"`, `"stdout"` or an absolute file path.
    pub access: Option<Spanned<String>>,
    /// The fields of a line, in any order (default: every one).
    pub fields: Option<Vec<Spanned<String>>>,
}

/// `[endpoint_groups.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointGroupFile {
    pub endpoints: Spanned<Vec<Spanned<MemberFile>>>,
    pub lb: Option<LbFile>,
    /// `lb = "consistent_hash"`: what is hashed (`client_ip`, `header:NAME`,
    /// `cookie:NAME`, `query:NAME`, `capture:NAME`).
    pub hash_on: Option<Spanned<String>>,
    /// Passive health: when a member is ejected for failing.
    pub outlier: Option<Spanned<OutlierFile>>,
    /// Active health: a probe per member, once per process.
    pub health_check: Option<Spanned<HealthCheckFile>>,
    /// Every member down: `"refuse"` (503, the default) or `"try"`.
    pub all_down: Option<Spanned<String>>,
}

/// `outlier = { … }` of an endpoint group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutlierFile {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_failures: Option<u32>,
    pub base_ejection_time: Option<Spanned<String>>,
    pub max_ejection_time: Option<Spanned<String>>,
    pub max_ejection_percent: Option<Spanned<u32>>,
}

/// `health_check = { … }` of an endpoint group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheckFile {
    pub path: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<Vec<u16>>>,
    pub healthy_threshold: Option<Spanned<u32>>,
    pub unhealthy_threshold: Option<Spanned<u32>>,
    pub host: Option<String>,
}

/// `[endpoints]` value: `"https://host:port"` or a table with TLS settings.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "an endpoint URL string or a table { url = \"https://…\", sni = …, ca = … }"
)]
pub(crate) enum EndpointFile {
    Url(String),
    Table(UpstreamTlsFile),
}

/// The TLS settings of an HTTPS endpoint (or group member), beside its URL.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamTlsFile {
    pub url: String,
    /// Only in endpoint groups.
    pub weight: Option<u32>,
    /// Server name sent and verified (default: the URL's host).
    pub sni: Option<String>,
    /// CA bundle the backend's certificate is verified against (default: the
    /// webpki-roots set of public CAs).
    pub ca: Option<String>,
    /// Accept any certificate. Dangerous; for tests and migrations only.
    pub insecure_skip_verify: Option<bool>,
    /// Client certificate (mTLS to the backend).
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

/// One member of an endpoint group: `"http://…"` or `{ url = "http://…", weight = 3 }`
/// (with the TLS settings of [`UpstreamTlsFile`]).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "an endpoint URL string or a table { url = \"http://…\", weight = N }"
)]
pub(crate) enum MemberFile {
    Url(String),
    Weighted(UpstreamTlsFile),
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LbFile {
    RoundRobin,
    Weighted,
    P2c,
    ConsistentHash,
}

/// `[[groups]]`: an API group, the settings its routes share, and its routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupFile {
    pub name: Spanned<String>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub context_path: Option<Spanned<String>>,
    pub environments: Option<Vec<Spanned<String>>>,
    /// `"none"` (default), `"subscription_key"` or `"signature"`.
    pub auth: Option<Spanned<String>>,
    /// Send the caller's credentials (subscription key, signature `Authorization`)
    /// upstream too (default false: the gateway consumes them).
    pub forward_credentials: Option<bool>,
    /// An `[[access.backend_keys]]` id: sign every upstream request of the group.
    pub backend_key: Option<Spanned<String>>,
    /// The group's versions (`["0.0.1", "0.0.2"]`); with them, `publish` says which
    /// one each environment serves.
    pub versions: Option<Spanned<Vec<Spanned<String>>>>,
    /// Environment → the version it serves, or `{ version = "…", endpoints = { … } }`
    /// with endpoint overrides for that environment.
    pub publish: Option<Spanned<OrderedMap<Spanned<PublishFile>>>>,
    /// The default limit per caller (key or key pair) of the group.
    pub caller_limit: Option<Spanned<CallerLimitFile>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteFile>>,
}

/// `publish.ENV = "0.0.2"` or `{ version = "0.0.2", endpoints = { name = "http://…" } }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a version string or a table { version = \"…\", endpoints = { name = \"http://…\" } }"
)]
pub(crate) enum PublishFile {
    Version(String),
    Table(PublishTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishTable {
    pub version: String,
    /// Endpoints of `[endpoints]` replaced, for this environment, by these. (No
    /// spans inside an untagged enum: errors point at the publish entry.)
    #[serde(default)]
    pub endpoints: OrderedMap<EndpointFile>,
}

/// `[[groups.routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteFile {
    pub name: Spanned<String>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub path: Spanned<PathFile>,
    #[serde(default)]
    pub query: Vec<Spanned<PredicateFile>>,
    #[serde(default)]
    pub headers: Vec<Spanned<PredicateFile>>,
    /// Overrides the group's `environments` for this route.
    pub environments: Option<Vec<Spanned<String>>>,
    /// The group versions the route belongs to (default: every version).
    pub versions: Option<Vec<Spanned<String>>>,
    /// The route is shadowed on purpose: `check` notes it instead of warning.
    pub allow_shadow: Option<bool>,
    pub to: Option<Spanned<String>>,
    pub mock: Option<Spanned<MockFile>>,
    /// Overrides `[limits] max_body_bytes` for this route (0: no limit).
    pub max_body_bytes: Option<Spanned<u64>>,
    /// The `Upgrade` protocols the route tunnels (default: `["websocket"]`).
    pub upgrade: Option<Vec<Spanned<String>>>,
    /// When a failed attempt goes again, to another member.
    pub retry: Option<Spanned<RetryFile>>,
}

/// `retry = { … }` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryFile {
    pub attempts: Option<Spanned<u32>>,
    pub on: Option<Vec<Spanned<String>>>,
    pub budget_percent: Option<Spanned<u32>>,
    pub min_retry_concurrency: Option<u32>,
}

/// `path = { exact = "…" }`, `{ prefix = "…" }` or `{ regex = "…" }` (exactly one,
/// checked in validation).
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: { exact = \"/p\" }, { prefix = \"/p\" } or { regex = \"…\" }"
)]
pub(crate) struct PathFile {
    pub exact: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub regex: Option<Spanned<String>>,
}

/// `{ name = "…", equals | one_of | prefix | regex | present | absent }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PredicateFile {
    pub name: Spanned<String>,
    pub equals: Option<String>,
    pub one_of: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub regex: Option<Spanned<String>>,
    pub present: Option<Spanned<bool>>,
    pub absent: Option<Spanned<bool>>,
}

/// `mock = { status = 200, body = "…", headers = { "name" = "value" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MockFile {
    pub status: Option<Spanned<u16>>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: OrderedMap<String>,
}

/// A TOML table read as `(key, value)` pairs in the order the deserializer yields them
/// (document order: the `toml` crate is built with `preserve_order`).
#[derive(Debug)]
pub(crate) struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(PairsVisitor(PhantomData))
    }
}
