//! ringway's configuration: the TOML file in, a validated [`Config`] out.
//!
//! There are two kinds of config. [`file`] is what the user wrote — a serde mirror of
//! the TOML that only knows types, with spans so errors can point at a line. [`Config`]
//! is what the runtime uses: durations parsed, endpoint URLs resolved to socket
//! addresses, routes turned into a [`ringway_router::RouterSpec`] that has been
//! compiled once already (so a config that loads always builds a router).
//!
//! ```
//! let config = ringway::config::parse(ringway::config::DEFAULT_CONFIG, "default.toml").unwrap();
//! assert_eq!(config.server.listen, ["127.0.0.1:8080".parse().unwrap()]);
//! assert_eq!(config.routes.len(), config.router.rules.len());
//! ```
//!
//! Every error is a [`ConfigError`] whose lines read `FILE:LINE:COL: message`, with
//! ` (group 'g', route 'r')` when it is about a rule; as many problems as can be found
//! are reported at once. `docs/configuration.md` documents every key.

pub mod access;
mod error;
pub(crate) mod file;
pub mod health;
pub mod log;
mod resolve;
mod reuse;
mod sections;
pub mod tls;
pub mod traffic;
mod validate;
pub mod versions;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Diagnostic};

use ringway_router::{CompileCache, CompiledRouter, RouterSpec};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default request-body limit: 10 MiB. Large enough for API payloads and the
/// uploads an API usually takes (AWS API Gateway's own limit is 10 MB; nginx's 1 MiB
/// default is the 413 its users hit most), small enough that a request declaring a
/// 1 GiB body is refused before a backend is touched. Raise it per route for upload
/// routes, or set 0 for no limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;

/// The embedded default config, served by `ringway` with no `-c`: mock routes on
/// 127.0.0.1:8080 that show the rule syntax.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// What a [`Config`] was loaded from, with a hash of the exact bytes (FNV-1a, stable
/// across runs and builds) so two loads can be told apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    File { path: PathBuf, hash: u64 },
    Embedded { hash: u64 },
}

impl ConfigSource {
    /// The hash of the bytes that were loaded.
    pub fn hash(&self) -> u64 {
        match self {
            ConfigSource::File { hash, .. } | ConfigSource::Embedded { hash } => *hash,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File { path, hash } => write!(f, "{} ({hash:016x})", path.display()),
            ConfigSource::Embedded { hash } => write!(f, "embedded default ({hash:016x})"),
        }
    }
}

/// The validated runtime config.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: ConfigSource,
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub upstream: UpstreamConfig,
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    /// Single endpoints then endpoint groups, in file order; index ==
    /// [`ringway_router::EndpointId`].
    pub endpoints: Vec<EndpointDef>,
    /// Endpoints and environments filled in. `environments[0]` is
    /// `server.environment`.
    pub router: RouterSpec,
    /// `router` compiled (load compiles it anyway to validate; reuse it).
    pub compiled: CompiledRouter,
    /// Index == [`ringway_router::RouteId`] (same order as `router.rules`).
    pub routes: Vec<RouteConfig>,
    /// Every literal `http://authority` a target starts with, resolved, deduplicated.
    /// Look one up by [`ringway_router::Origin::Url`]'s `authority`.
    pub literal_origins: Vec<UpstreamAddr>,
    /// `[server.tls]`: TLS listeners and their certificates.
    pub tls: Option<std::sync::Arc<tls::TlsServerSettings>>,
    /// `[access]`: keys, key pairs, backend signing keys.
    pub access: access::AccessConfig,
    /// Index == the group's position in the file ([`RouteConfig::group_index`]).
    pub groups: Vec<access::GroupConfig>,
    /// Endpoints a group's publishing environment replaces (`publish.ENV.endpoints`).
    pub endpoint_overrides: Vec<versions::EndpointOverride>,
    /// `[traffic]`: rate limits (with the groups' `caller_limit`s), Redis, proxies.
    pub traffic: traffic::TrafficConfig,
    /// The files the config refers to (certificates, keys, CA bundles) and their
    /// contents' hashes: a change to one is a change to the config.
    pub files: tls::FileSet,
    /// Likely mistakes in a valid file (`ringway check` prints them as warnings).
    pub notices: Vec<Notice>,
}

/// The settings that apply only when the process starts: a reload that changes them
/// applies the rest and says these need a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartSettings {
    /// `[server] shards` as written (0: one per CPU).
    pub shards: usize,
    pub admin: Option<SocketAddr>,
    pub nonce_capacity: usize,
}

impl StartSettings {
    pub fn of(config: &Config) -> StartSettings {
        StartSettings {
            shards: config.server.shards,
            admin: config.admin.as_ref().map(|a| a.listen),
            nonce_capacity: config.access.nonce_capacity,
        }
    }

    /// The settings `next` changes from these, as `key (running X, file Y)`.
    pub fn changed_by(&self, next: &Config) -> Vec<String> {
        let n = StartSettings::of(next);
        let show = |a: Option<SocketAddr>| a.map_or("none".to_string(), |a| a.to_string());
        let mut out = Vec::new();
        if n.shards != self.shards {
            out.push(format!(
                "server.shards (running {}, file {})",
                self.shards, n.shards
            ));
        }
        if n.admin != self.admin {
            out.push(format!(
                "admin.listen (running {}, file {})",
                show(self.admin),
                show(n.admin)
            ));
        }
        if n.nonce_capacity != self.nonce_capacity {
            out.push(format!(
                "access.nonce_capacity (running {}, file {})",
                self.nonce_capacity, n.nonce_capacity
            ));
        }
        out
    }
}

/// A likely mistake in a valid config, found while validating it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `environment` or `access_log`.
    pub kind: &'static str,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Default `127.0.0.1:8080`.
    pub listen: Vec<SocketAddr>,
    /// 0 = one per CPU in the process's affinity mask (the default).
    pub shards: usize,
    /// The environment served when the request does not pick one. Default `online`.
    pub environment: String,
    /// A request header (lowercased) whose value picks the environment. Default none.
    pub stage_header: Option<String>,
    /// Status when no rule matches. Default 400.
    pub no_match_status: u16,
    /// Forward the client's Host instead of the target's authority. Default false.
    pub keep_client_host: bool,
    /// How long a graceful shutdown waits for in-flight requests. Default 30s.
    pub drain_timeout: Duration,
}

/// `[limits]`: downstream request-head limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Larger request head → 431. Default 65536.
    pub max_header_bytes: usize,
    /// More header fields → 431. Default 100.
    pub max_headers: usize,
    /// A larger request body → 413 (routes may override). `u64::MAX`: no limit.
    /// Default [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: u64,
    /// Head not complete in time → 408 and close. Default 10s.
    pub client_header_timeout: Duration,
    /// Idle keep-alive client connections are closed after this. Default 60s.
    pub keepalive_timeout: Duration,
    /// A write to a client that makes no progress this long closes the connection
    /// (and frees its upstream connection). Default 60s, as nginx's `send_timeout`.
    pub send_timeout: Duration,
    /// A request body read that gets nothing this long → 408 and close. Default
    /// 60s, as nginx's `client_body_timeout`.
    pub client_body_timeout: Duration,
    /// A request body arriving slower than this many bytes a second (averaged from
    /// its first byte, after [`BODY_RATE_GRACE`]) → 408 and close. Default 1024;
    /// 0: no minimum.
    pub client_body_min_rate: u64,
}

/// How long a request body may arrive at any rate before `client_body_min_rate`
/// applies.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// `[upstream]`: connections to backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Default 2s; exceeded → 504.
    pub connect_timeout: Duration,
    /// Until the response head arrives. Default 30s; exceeded → 504.
    pub response_timeout: Duration,
    /// Idle pooled connections kept per endpoint per shard. Default 64.
    pub max_idle_per_endpoint: usize,
    /// Pooled connections idle longer are closed. Default 60s.
    pub idle_timeout: Duration,
    /// A write to an upstream that makes no progress this long fails the request
    /// (502). Default 60s, as nginx's `proxy_send_timeout`.
    pub send_timeout: Duration,
    /// An upgraded connection (a WebSocket tunnel) with no byte either way this long
    /// is closed. Default 1h (HAProxy's `timeout tunnel` as usually set).
    pub upgrade_idle_timeout: Duration,
    /// Once one side of a tunnel has closed its stream, the other side may be
    /// silent this long (at most `upgrade_idle_timeout`). Default 30s (HAProxy's
    /// `timeout client-fin` as usually set).
    pub upgrade_half_closed_timeout: Duration,
    /// A response body of at least this many bytes (by its `Content-Length`), plain
    /// TCP on both sides, is moved with `splice(2)` through a pipe instead of being
    /// copied through the process, on shards that run the epoll driver (under
    /// io_uring the copy costs less). 0: never.
    pub splice_min_bytes: u64,
    /// A larger upstream response head → 502 naming this limit. Default 65536.
    pub max_response_header_bytes: usize,
    /// More upstream response header fields → 502 naming this limit. Default 100.
    pub max_response_headers: usize,
}

/// `[admin]`: the admin port (off when the table is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Where the access log goes. Default off.
    pub access: AccessLogTarget,
    /// The fields of a line (bits of `observe::access_log::Field`; `[log] fields`).
    /// Default every field.
    pub fields: u32,
}

/// Where access log lines are written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// No access log (the default).
    #[default]
    Off,
    /// The process's standard output.
    Stdout,
    /// A file opened for appending (reopened on SIGUSR1, for log rotation).
    File(PathBuf),
}

/// A resolved upstream origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    /// `host[:port]` as written; sent as Host.
    pub authority: String,
    pub addr: SocketAddr,
    /// How to speak TLS to it (`https://`); `None` for plain HTTP.
    pub tls: Option<std::sync::Arc<tls::UpstreamTls>>,
}

impl UpstreamAddr {
    /// The member as its config names it, `scheme://authority`: what a consistent
    /// hash and the health state key on. Neither the resolved address nor the TLS
    /// settings (a renewed client certificate, a config in another directory) move
    /// a key or forget a member's health.
    pub fn identity(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// Load balancing within an endpoint group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lb {
    RoundRobin,
    Weighted,
    /// Power of two choices, least in-flight.
    P2c,
    /// Maglev over a key of the request (`hash_on`).
    ConsistentHash,
}

impl Lb {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Lb::RoundRobin => "round_robin",
            Lb::Weighted => "weighted",
            Lb::P2c => "p2c",
            Lb::ConsistentHash => "consistent_hash",
        }
    }
}

/// A named target of `{#endpoints['name']}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointDef {
    /// `[endpoints] name = "http://…"`.
    Single { name: String, upstream: UpstreamAddr },
    /// `[endpoint_groups.name]`; members carry a weight (default 1).
    Group {
        name: String,
        lb: Lb,
        members: Vec<(UpstreamAddr, u32)>,
        /// Health, hashing and the answer when every member is down.
        policy: Box<health::GroupPolicy>,
    },
}

impl EndpointDef {
    pub fn name(&self) -> &str {
        match self {
            EndpointDef::Single { name, .. } | EndpointDef::Group { name, .. } => name,
        }
    }
}

/// What the runtime needs about a rule beyond the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// The route's own request-body limit (`u64::MAX`: none), over `[limits]`'s.
    pub max_body_bytes: Option<u64>,
    pub group: String,
    /// Index into [`Config::groups`].
    pub group_index: usize,
    /// The group versions the route is in (indices into the group's
    /// [`versions::Versions::list`]; `None`: every version, or an unversioned group).
    pub versions: Option<Vec<usize>>,
    pub name: String,
    /// `Some` for mock routes ([`ringway_router::ActionSpec::Local`]).
    pub mock: Option<MockResponse>,
    /// `check` notes (rather than warns) that the route is shadowed.
    pub allow_shadow: bool,
    /// The `Upgrade` protocols this route tunnels, lowercase (default `websocket`).
    /// A request asking for another one is forwarded as a plain request, its
    /// `Upgrade` field dropped (an `h2c` upgrade must not slip past the rules).
    pub upgrade: Vec<String>,
    /// When a failed attempt goes again (`retry`); `None`: only the stale pooled
    /// connection's retry.
    pub retry: Option<health::RetryPolicy>,
    /// Where the route's `name` is in the file (1-based), for messages about it.
    pub line: usize,
    pub column: usize,
}

/// `[upstream] splice_min_bytes` when unset (docs/benchmarks.md: where splice wins).
pub const DEFAULT_SPLICE_MIN_BYTES: u64 = 256 * 1024;

/// A locally answered response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockResponse {
    pub status: u16,
    /// In file order; names as written.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads, parses and validates the config file at `path`. Errors name the file.
impl Config {
    /// Every address to listen on: `[server] listen` (plain), then `[server.tls]
    /// listen`.
    pub fn listen_all(&self) -> Vec<SocketAddr> {
        let tls = self.tls.iter().flat_map(|t| t.listen.iter().copied());
        self.server.listen.iter().copied().chain(tls).collect()
    }

    /// Whether `addr` (as configured) is a TLS listener.
    pub fn is_tls_listener(&self, addr: SocketAddr) -> bool {
        self.tls.as_ref().is_some_and(|t| t.listen.contains(&addr))
    }
}

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    load_file_cached(path, &mut LoadCache::default())
}

/// What a load leaves for the next one: the analyses of its path regexes
/// ([`CompileCache`]) and the parsed route tables of its file (`reuse.rs`). The
/// control thread keeps one from the first load on, so a reload parses and analyses
/// only what changed.
#[derive(Debug, Default)]
pub struct LoadCache {
    regexes: CompileCache,
    tables: reuse::RouteTables,
}

impl LoadCache {
    /// The last load's config is now in service: what it uses is kept whatever
    /// loads fail after it ([`CompileCache::commit`]).
    pub fn commit(&mut self) {
        self.regexes.commit();
    }
}

/// As [`load_file`], taking what `cache` kept of earlier loads and keeping what this
/// one learns.
pub fn load_file_cached(path: &Path, cache: &mut LoadCache) -> Result<Config, ConfigError> {
    let (bytes, hash) = read_hashed(path)?;
    parse_file(path, bytes, hash, cache)
}

/// As [`load_file`], but `Ok(None)` without parsing anything when the file's bytes
/// hash to `hash` (the running config's [`ConfigSource::hash`]) and every file it
/// refers to (`files`: certificates, keys, CA bundles) is unchanged: a reload of an
/// unchanged config costs a few reads, not a parse, DNS lookups and a router
/// compile; a renewed certificate reloads. A changed one is compiled through
/// `cache`, as [`load_file_cached`].
pub fn load_file_if_changed(
    path: &Path,
    hash: u64,
    files: &tls::FileSet,
    cache: &mut LoadCache,
) -> Result<Option<Config>, ConfigError> {
    let (bytes, now) = read_hashed(path)?;
    if now == hash && files.unchanged() {
        return Ok(None);
    }
    parse_file(path, bytes, now, cache).map(Some)
}

fn read_hashed(path: &Path) -> Result<(Vec<u8>, u64), ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::io(&path.display().to_string(), &e))?;
    let hash = fnv1a(&bytes);
    Ok((bytes, hash))
}

fn parse_file(path: &Path, bytes: Vec<u8>, hash: u64, cache: &mut LoadCache) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::io(
            &name,
            &std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })?;
    let mut config = parse_cached(&text, &name, cache)?;
    config.source = ConfigSource::File {
        path: path.to_path_buf(),
        hash,
    };
    Ok(config)
}

/// Validates config text; `origin` names the file in messages (and in
/// [`ConfigSource::File`]).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_cached(text, origin, &mut LoadCache::default())
}

/// As [`parse`], through `cache`: route tables whose text the last parse saw are
/// not parsed again, path regexes it analysed are not analysed again.
pub fn parse_cached(text: &str, origin: &str, cache: &mut LoadCache) -> Result<Config, ConfigError> {
    let (reused, layout) = cache.tables.reparse(text);
    let mut file = match reused {
        Some(f) => f,
        None => toml::from_str(text).map_err(|e| every_toml_error(text, origin, e))?,
    };
    let validated = validate::validate(&file, text, origin, &mut cache.regexes);
    cache.tables.keep(text, &mut file, layout);
    let mut config = validated?;
    config.source = ConfigSource::File {
        path: PathBuf::from(origin),
        hash: fnv1a(text.as_bytes()),
    };
    Ok(config)
}

/// TOML errors reported before giving up on finding more.
const MAX_TOML_ERRORS: usize = 20;

/// `first` and the independent errors after it: an unknown key or a value of the
/// wrong type is blanked out (its line, or a whole unknown table — spaces, so every
/// later offset stays put) and the file parsed again, up to [`MAX_TOML_ERRORS`].
/// Three typos take one run, not three. Any other error (syntax, a missing key —
/// which may be the blanking's own doing) ends the search, and is reported only if
/// it came first.
fn every_toml_error(text: &str, origin: &str, first: toml::de::Error) -> ConfigError {
    let mut found = vec![Diagnostic::toml(origin, text, &first)];
    let mut doc = text.to_string();
    let mut err = first;
    let mut last_at = usize::MAX;
    while found.len() < MAX_TOML_ERRORS {
        let message = err.message();
        let blankable = [
            "unknown field",
            "invalid type",
            "invalid value",
            "unknown variant",
        ]
        .iter()
        .any(|p| message.starts_with(p));
        let Some(span) = err
            .span()
            .filter(|s| blankable && s.start != last_at && s.start < doc.len())
        else {
            break;
        };
        last_at = span.start;
        blank(&mut doc, span.start);
        match toml::from_str::<file::FileConfig>(&doc) {
            Ok(_) => break,
            Err(e) => {
                let next = e.message();
                let independent = [
                    "unknown field",
                    "invalid type",
                    "invalid value",
                    "unknown variant",
                ]
                .iter()
                .any(|p| next.starts_with(p));
                if !independent {
                    break;
                }
                found.push(Diagnostic::toml(origin, &doc, &e));
                err = e;
            }
        }
    }
    ConfigError::from_diagnostics(found)
}

/// Overwrites with spaces the line of `doc` holding byte `at` — or, when that line
/// is a table header, the table up to the next header — keeping every newline.
fn blank(doc: &mut String, at: usize) {
    let bytes = doc.as_bytes();
    let start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let line_end = |from: usize| {
        bytes[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| from + p)
    };
    let mut end = line_end(start);
    if bytes[start..end].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        // An unknown table: its keys would otherwise land in the table before it.
        while end < bytes.len() {
            let next = end + 1;
            let next_end = line_end(next);
            if bytes[next..next_end].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                break;
            }
            end = next_end;
        }
    }
    let blanked: String = doc[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    // Multi-byte characters became one space each: pad to the same byte length.
    let pad = (end - start) - blanked.len();
    doc.replace_range(start..end, &(blanked + &" ".repeat(pad)));
}

/// The embedded default config ([`DEFAULT_CONFIG`]).
pub fn load_default() -> Result<Config, ConfigError> {
    let mut config = parse(DEFAULT_CONFIG, "<embedded default.toml>")?;
    config.source = ConfigSource::Embedded {
        hash: config.source.hash(),
    };
    Ok(config)
}

/// 64-bit FNV-1a: small, stable, good enough to tell config versions apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
