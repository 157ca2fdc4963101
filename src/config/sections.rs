//! The sections that are not routes: `[server]`, `[limits]`, `[upstream]`, `[admin]`
//! addresses, `[log]`, `[endpoints]` and `[endpoint_groups]`.

use super::error::Diagnostics;
use super::file::{
    BackslashFile, EncodedSlashFile, EndpointFile, FileConfig, LbFile, Listen, MemberFile, SemicolonFile,
    UpstreamTlsFile,
};
use super::log::Field;
use super::resolve::{parse_duration, parse_origin, resolve};
use super::tls::{tls_keys_without_https, upstream_tls, ClientConfigs, FileSet};
use super::{
    AccessLogTarget, EndpointDef, Lb, LimitsConfig, LogConfig, ServerConfig, UpstreamAddr, UpstreamConfig,
};
use ringway_router::{Backslash, EncodedSlash, NormalizeOptions, Semicolon};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

pub(super) fn duration(
    d: &mut Diagnostics<'_>,
    v: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
    allow_zero: bool,
) -> Duration {
    let Some(v) = v else { return default };
    match parse_duration(v.get_ref()) {
        Ok(t) if t.is_zero() && !allow_zero => {
            d.at(v.span(), format!("{key} must be more than 0"), None, None);
            default
        }
        Ok(t) => t,
        Err(m) => {
            d.at(v.span(), format!("{key}: {m}"), None, None);
            default
        }
    }
}

pub(super) fn parse_listen(v: &Spanned<String>, d: &mut Diagnostics<'_>, key: &str) -> Option<SocketAddr> {
    match v.get_ref().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            d.at(
                v.span(),
                format!(
                    "{key}: '{}' is not an IP:port address (as in \"127.0.0.1:8080\" or \"[::]:80\")",
                    v.get_ref()
                ),
                None,
                None,
            );
            None
        }
    }
}

pub(super) fn log(f: &FileConfig, d: &mut Diagnostics<'_>) -> LogConfig {
    let access = match &f.log.access {
        None => AccessLogTarget::Off,
        Some(v) => match v.get_ref().as_str() {
            "off" => AccessLogTarget::Off,
            "stdout" => AccessLogTarget::Stdout,
            p if std::path::Path::new(p).is_absolute() => AccessLogTarget::File(p.into()),
            p => {
                d.at(
                    v.span(),
                    format!("log.access: '{p}' is not \"off\", \"stdout\" or an absolute file path"),
                    None,
                    None,
                );
                AccessLogTarget::Off
            }
        },
    };
    let mut fields = Field::EVERY;
    if let Some(list) = &f.log.fields {
        fields = 0;
        for name in list {
            match Field::named(name.get_ref()) {
                Some(field) => fields |= field.bit(),
                None => {
                    let all: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                    let near = super::error::did_you_mean_suffix(name.get_ref(), all.iter().copied());
                    d.at(
                        name.span(),
                        format!(
                            "log.fields: no field '{}' (fields: {}){near}",
                            name.get_ref(),
                            all.join(", ")
                        ),
                        None,
                        None,
                    );
                }
            }
        }
    }
    LogConfig { access, fields }
}

/// `listen = "addr"` or `listen = ["addr", …]`: at least one, none twice.
pub(super) fn parse_listen_list(l: &Spanned<Listen>, d: &mut Diagnostics<'_>, key: &str) -> Vec<SocketAddr> {
    let span = l.span();
    let list = match l.get_ref() {
        Listen::One(a) => std::slice::from_ref(a),
        Listen::Many(v) => v.as_slice(),
    };
    let mut out = Vec::new();
    for a in list {
        let a = Spanned::new(span.clone(), a.clone());
        if let Some(addr) = parse_listen(&a, d, key) {
            if out.contains(&addr) {
                d.at(span.clone(), format!("{key}: {addr} is listed twice"), None, None);
            }
            out.push(addr);
        }
    }
    if list.is_empty() {
        d.at(span, format!("{key}: at least one address is needed"), None, None);
    }
    out
}

pub(super) fn server(f: &FileConfig, d: &mut Diagnostics<'_>) -> (ServerConfig, NormalizeOptions) {
    let s = &f.server;
    let listen = match &s.listen {
        // With TLS listeners and no plain `listen`, there is no plain listener.
        None if s.tls.is_some() => Vec::new(),
        None => vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
        Some(l) => parse_listen_list(l, d, "server.listen"),
    };
    let environment = match &s.environment {
        None => "online".to_string(),
        Some(e) if e.get_ref().is_empty() => {
            d.at(e.span(), "server.environment may not be empty", None, None);
            String::new()
        }
        Some(e) => e.get_ref().clone(),
    };
    let stage_header = s.stage_header.as_ref().map(|h| {
        if !is_token(h.get_ref()) {
            d.at(
                h.span(),
                format!(
                    "server.stage_header: '{}' is not a valid header name",
                    h.get_ref()
                ),
                None,
                None,
            );
        }
        h.get_ref().to_ascii_lowercase()
    });
    let no_match_status = match &s.no_match_status {
        None => 400,
        Some(v) => status(d, v, "server.no_match_status"),
    };
    let mut normalize = NormalizeOptions::default();
    if let Some(n) = &s.normalize {
        if let Some(m) = n.merge_slashes {
            normalize.merge_slashes = m;
        }
        if let Some(e) = n.encoded_slash {
            normalize.encoded_slash = match e {
                EncodedSlashFile::Reject => EncodedSlash::Reject,
                EncodedSlashFile::Keep => EncodedSlash::Keep,
                EncodedSlashFile::Decode => EncodedSlash::Decode,
            };
        }
        if let Some(b) = n.backslash {
            normalize.backslash = match b {
                BackslashFile::Reject => Backslash::Reject,
                BackslashFile::Slash => Backslash::Slash,
            };
        }
        if let Some(sc) = n.semicolon {
            normalize.semicolon = match sc {
                SemicolonFile::Reject => Semicolon::Reject,
                SemicolonFile::Strip => Semicolon::Strip,
                SemicolonFile::Keep => Semicolon::Keep,
            };
        }
    }
    let server = ServerConfig {
        listen,
        shards: s.shards.unwrap_or(0),
        environment,
        stage_header,
        no_match_status,
        keep_client_host: s.keep_client_host.unwrap_or(false),
        drain_timeout: duration(
            d,
            &s.drain_timeout,
            "server.drain_timeout",
            Duration::from_secs(30),
            true,
        ),
    };
    (server, normalize)
}

pub(super) fn status(d: &mut Diagnostics<'_>, v: &Spanned<u16>, key: &str) -> u16 {
    let s = *v.get_ref();
    if !(200..=599).contains(&s) {
        d.at(
            v.span(),
            format!("{key}: {s} is not a final HTTP status (200-599)"),
            None,
            None,
        );
    }
    s
}

pub(super) fn positive(
    d: &mut Diagnostics<'_>,
    v: &Option<Spanned<usize>>,
    key: &str,
    default: usize,
) -> usize {
    match v {
        None => default,
        Some(v) if *v.get_ref() == 0 => {
            d.at(v.span(), format!("{key} must be more than 0"), None, None);
            default
        }
        Some(v) => *v.get_ref(),
    }
}

/// A `max_body_bytes` value: 0 is no limit.
pub(super) fn body_limit(v: Option<&Spanned<u64>>) -> Option<u64> {
    v.map(|v| match *v.get_ref() {
        0 => u64::MAX,
        n => n,
    })
}

pub(super) fn limits(f: &FileConfig, d: &mut Diagnostics<'_>) -> LimitsConfig {
    let l = &f.limits;
    LimitsConfig {
        max_header_bytes: positive(d, &l.max_header_bytes, "limits.max_header_bytes", 65536),
        max_headers: positive(d, &l.max_headers, "limits.max_headers", 100),
        max_body_bytes: body_limit(l.max_body_bytes.as_ref()).unwrap_or(super::DEFAULT_MAX_BODY_BYTES),
        client_header_timeout: duration(
            d,
            &l.client_header_timeout,
            "limits.client_header_timeout",
            Duration::from_secs(10),
            false,
        ),
        keepalive_timeout: duration(
            d,
            &l.keepalive_timeout,
            "limits.keepalive_timeout",
            Duration::from_secs(60),
            true,
        ),
        send_timeout: duration(
            d,
            &l.send_timeout,
            "limits.send_timeout",
            Duration::from_secs(60),
            false,
        ),
        client_body_timeout: duration(
            d,
            &l.client_body_timeout,
            "limits.client_body_timeout",
            Duration::from_secs(60),
            false,
        ),
        client_body_min_rate: l.client_body_min_rate.unwrap_or(1024),
    }
}

pub(super) fn upstream(f: &FileConfig, d: &mut Diagnostics<'_>) -> UpstreamConfig {
    let u = &f.upstream;
    UpstreamConfig {
        connect_timeout: duration(
            d,
            &u.connect_timeout,
            "upstream.connect_timeout",
            Duration::from_secs(2),
            false,
        ),
        response_timeout: duration(
            d,
            &u.response_timeout,
            "upstream.response_timeout",
            Duration::from_secs(30),
            false,
        ),
        max_idle_per_endpoint: u.max_idle_per_endpoint.unwrap_or(64),
        idle_timeout: duration(
            d,
            &u.idle_timeout,
            "upstream.idle_timeout",
            Duration::from_secs(60),
            true,
        ),
        send_timeout: duration(
            d,
            &u.send_timeout,
            "upstream.send_timeout",
            Duration::from_secs(60),
            false,
        ),
        upgrade_idle_timeout: duration(
            d,
            &u.upgrade_idle_timeout,
            "upstream.upgrade_idle_timeout",
            Duration::from_secs(3600),
            false,
        ),
        upgrade_half_closed_timeout: duration(
            d,
            &u.upgrade_half_closed_timeout,
            "upstream.upgrade_half_closed_timeout",
            Duration::from_secs(30),
            false,
        ),
        splice_min_bytes: u.splice_min_bytes.unwrap_or(super::DEFAULT_SPLICE_MIN_BYTES),
        max_response_header_bytes: positive(
            d,
            &u.max_response_header_bytes,
            "upstream.max_response_header_bytes",
            65536,
        ),
        max_response_headers: positive(d, &u.max_response_headers, "upstream.max_response_headers", 100),
    }
}

/// What resolving endpoints needs beside the file: where relative paths start, the
/// files read so far, the upstream TLS configurations made so far.
pub(super) struct TlsContext<'a> {
    pub base: &'a std::path::Path,
    pub files: &'a mut FileSet,
    pub configs: &'a mut ClientConfigs,
}

/// Parses and resolves one endpoint URL, with its TLS settings for `https://`;
/// errors go to `span`.
pub(super) fn endpoint_url(
    d: &mut Diagnostics<'_>,
    cx: &mut TlsContext<'_>,
    url: &str,
    settings: Option<&UpstreamTlsFile>,
    span: Range<usize>,
    name: &str,
) -> Option<UpstreamAddr> {
    let result = parse_origin(url).and_then(|o| {
        let mut addr = resolve(&o).map_err(|m| format!("endpoint '{name}': {m}"))?;
        if o.tls {
            let tls = upstream_tls(o.host, settings, cx.base, cx.files, cx.configs)
                .map_err(|m| format!("endpoint '{name}': {m}"))?;
            addr.tls = Some(std::sync::Arc::new(tls));
        } else if let Some(key) = settings.and_then(tls_keys_without_https) {
            return Err(format!(
                "endpoint '{name}': '{key}' applies to https:// endpoints only ('{url}' is plain HTTP)"
            ));
        }
        Ok(addr)
    });
    result.map_err(|m| d.at(span, m, None, None)).ok()
}

/// Endpoint definitions (`None` where invalid) and the names the router knows, both in
/// `[endpoints]` then `[endpoint_groups]` order.
pub(super) fn endpoints(
    f: &FileConfig,
    d: &mut Diagnostics<'_>,
    cx: &mut TlsContext<'_>,
) -> (Vec<Option<EndpointDef>>, Vec<String>) {
    let mut defs = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut first_at: Vec<Range<usize>> = Vec::new();
    let mut check_name = |d: &mut Diagnostics<'_>, name: &str, span: Range<usize>| {
        if name.is_empty() || name.contains(['\'', '"', '[', ']', '{', '}']) {
            d.at(
                span.clone(),
                format!("endpoint name '{name}' may not be empty or contain quotes, brackets or braces"),
                None,
                None,
            );
        }
        if let Some(i) = names.iter().position(|n| n == name) {
            let (line, _) = d.line_col(first_at[i].start);
            d.at(
                span.clone(),
                format!("endpoint name '{name}' is defined twice (first on line {line})"),
                None,
                None,
            );
        }
        names.push(name.to_string());
        first_at.push(span);
    };
    for (name, e) in &f.endpoints.0 {
        check_name(d, name, e.span());
        let (url, settings) = match e.get_ref() {
            EndpointFile::Url(u) => (u, None),
            EndpointFile::Table(t) => (&t.url, Some(t)),
        };
        if let Some(w) = settings.and_then(|s| s.weight) {
            d.at(
                e.span(),
                format!("endpoint '{name}': weight = {w} applies to endpoint group members only"),
                None,
                None,
            );
        }
        let upstream = endpoint_url(d, cx, url, settings, e.span(), name);
        defs.push(upstream.map(|upstream| EndpointDef::Single {
            name: name.clone(),
            upstream,
        }));
    }
    for (name, g) in &f.endpoint_groups.0 {
        check_name(d, name, g.span());
        let lb = match g.get_ref().lb {
            None | Some(LbFile::RoundRobin) => Lb::RoundRobin,
            Some(LbFile::Weighted) => Lb::Weighted,
            Some(LbFile::P2c) => Lb::P2c,
            Some(LbFile::ConsistentHash) => Lb::ConsistentHash,
        };
        let policy = super::health::group_policy(name, g.get_ref(), lb, d);
        let list = &g.get_ref().endpoints;
        if list.get_ref().is_empty() {
            d.at(
                list.span(),
                format!("endpoint group '{name}' has no endpoints"),
                None,
                None,
            );
        }
        let mut members = Vec::new();
        let mut ok = true;
        for m in list.get_ref() {
            let (url, weight, settings) = match m.get_ref() {
                MemberFile::Url(u) => (u, 1, None),
                MemberFile::Weighted(w) => (&w.url, w.weight.unwrap_or(1), Some(w)),
            };
            if weight == 0 {
                d.at(
                    m.span(),
                    format!("endpoint group '{name}': a weight must be at least 1"),
                    None,
                    None,
                );
                ok = false;
            } else if weight != 1 && !matches!(lb, Lb::Weighted | Lb::ConsistentHash) {
                d.at(
                    m.span(),
                    format!(
                        "endpoint group '{name}': weights only apply with lb = \"weighted\" or \"consistent_hash\" (lb is \"{}\")",
                        lb.as_str()
                    ),
                    None,
                    None,
                );
                ok = false;
            }
            match endpoint_url(d, cx, url, settings, m.span(), name) {
                Some(a) => members.push((a, weight)),
                None => ok = false,
            }
        }
        defs.push(ok.then(|| EndpointDef::Group {
            name: name.clone(),
            lb,
            members,
            policy: Box::new(policy),
        }));
    }
    (defs, names)
}

/// A token (RFC 9110 §5.6.2), as header names and methods are.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
