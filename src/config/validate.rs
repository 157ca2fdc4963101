//! [`FileConfig`] → [`Config`]: the sections (in [`super::sections`]), then the
//! routes turned into a [`RouterSpec`] that is compiled here, with every problem mapped
//! back to the line and column it comes from.

use super::access::{access, SecretSource};
use super::error::{did_you_mean_suffix, nearest, offset_in_string, Diagnostics};
use super::file::{FileConfig, GroupFile, PathFile, PredicateFile, RouteFile};
use super::resolve::{literal_origin, resolve, split_authority};
use super::sections::{endpoints, is_token, limits, log, parse_listen, server, upstream, TlsContext};
use super::tls::{server_tls, upstream_tls, ClientConfigs, FileSet};
use super::versions::{overrides, route_versions, versions, Versions};
use super::{
    AdminConfig, Config, ConfigError, ConfigSource, MockResponse, Notice, RouteConfig, UpstreamAddr,
};
use ringway_router::{
    ActionSpec, CompileCache, CompiledRouter, ErrorSite, PathSpec, PredicateOp, PredicateSpec, RouterSpec,
    RuleSpec, Source,
};
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

/// Router build errors reported before giving up (each one removes a rule and rebuilds).
const MAX_BUILD_ERRORS: usize = 20;

/// Where the parts of one rule are in the file, to point router errors at them.
struct RuleSpans {
    group: usize,
    name: Range<usize>,
    /// The path string; `regex` when it is a regex (offsets apply).
    path: Range<usize>,
    path_is_regex: bool,
    to: Option<Range<usize>>,
    methods: Vec<Range<usize>>,
    /// Per predicate (query first, then headers): the table, and its regex if any.
    predicates: Vec<(Range<usize>, Option<Range<usize>>)>,
    /// The environments list in force (the route's own, else the group's).
    environments: Vec<Range<usize>>,
}

/// Where the shared parts of a group are.
struct GroupSpans {
    name_span: Range<usize>,
    hosts: Vec<Range<usize>>,
    context_path: Option<Range<usize>>,
}

/// A rule on its way to the router.
struct PendingRule {
    spec: RuleSpec,
    route: RouteConfig,
    spans: RuleSpans,
}

pub(crate) fn validate(
    f: &FileConfig,
    text: &str,
    origin: &str,
    cache: &mut CompileCache,
) -> Result<Config, ConfigError> {
    let mut d = Diagnostics::new(origin, text);
    let (server, normalize) = server(f, &mut d);
    let limits = limits(f, &mut d);
    let upstream = upstream(f, &mut d);
    let admin = f
        .admin
        .as_ref()
        .and_then(|a| parse_listen(&a.listen, &mut d, "admin.listen").map(|listen| AdminConfig { listen }));
    let log = log(f, &mut d);
    // Relative paths (certificates, CA bundles) start at the config file's directory.
    let base = std::path::Path::new(origin)
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !origin.starts_with('<'))
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let mut files = FileSet::default();
    let mut configs = ClientConfigs::default();
    let tls = f
        .server
        .tls
        .as_ref()
        .and_then(|t| server_tls(t, &base, &mut files, &mut d).map(std::sync::Arc::new));
    if let (Some(t), Some(spanned)) = (&tls, &f.server.tls) {
        for a in t.listen.iter().filter(|a| server.listen.contains(a)) {
            d.at(
                spanned.get_ref().listen.span(),
                format!("server.tls.listen: {a} is also in server.listen; an address is plain or TLS"),
                None,
                None,
            );
        }
    }
    if server.listen.is_empty() && tls.is_none() && f.server.tls.is_none() {
        d.at(0..0, "server.listen: no address to listen on", None, None);
    }
    let mut cx = TlsContext {
        base: &base,
        files: &mut files,
        configs: &mut configs,
    };
    let (mut endpoints, mut endpoint_names) = endpoints(f, &mut d, &mut cx);
    let group_versions = versions(f, &mut d);
    let endpoint_overrides = overrides(f, &mut d, &mut cx, &mut endpoints, &mut endpoint_names);
    let env = |k: &str| std::env::var(k).ok();
    let mut secrets = SecretSource {
        base: &base,
        files: &mut files,
        env: &env,
    };
    let (access, mut groups) = access(f, &mut d, &mut secrets);
    for (g, v) in groups.iter_mut().zip(&group_versions) {
        g.versions = v.clone();
    }
    let mut traffic_notices = Vec::new();
    let traffic = super::traffic::traffic(f, &mut d, &access, &groups, &mut traffic_notices);

    // Environments: the default one first, then every one named, in file order.
    let mut named: Vec<(String, Range<usize>)> = Vec::new();
    let mut environments = vec![server.environment.clone()];
    for g in &f.groups {
        let routes = g.get_ref().routes.iter();
        let lists =
            std::iter::once(&g.get_ref().environments).chain(routes.map(|r| &r.get_ref().environments));
        for e in lists.flatten().flatten() {
            named.push((e.get_ref().clone(), e.span()));
            if !environments.contains(e.get_ref()) {
                environments.push(e.get_ref().clone());
            }
        }
        for (e, p) in g.get_ref().publish.iter().flat_map(|p| &p.get_ref().0) {
            named.push((e.clone(), p.span()));
            if !environments.contains(e) {
                environments.push(e.clone());
            }
        }
    }

    let (mut pending, group_spans) = rules(&f.groups, &group_versions, &mut d);
    let mut spec = RouterSpec {
        rules: pending.iter().map(|p| p.spec.clone()).collect(),
        endpoints: endpoint_names,
        environments,
        normalize,
        ..Default::default()
    };
    // Build; on a rule's error, report it, drop the rule and build again to find more.
    let mut origins: Vec<usize> = (0..pending.len()).collect();
    let compiled = loop {
        match CompiledRouter::build_cached(&spec, cache) {
            Ok(r) => break Some(r),
            Err(e) => {
                let Some(i) = e.rule_index().filter(|&i| i < origins.len()) else {
                    let what = if e.is_size_limit_exceeded() {
                        "the router exceeds a size limit: "
                    } else {
                        ""
                    };
                    d.at(0..0, format!("{what}{}", e.message()), None, None);
                    break None;
                };
                let p = &pending[origins[i]];
                let group = &group_spans[p.spans.group];
                let at = site_offset(text, &p.spans, group, e.site());
                let message = match (e.is_size_limit_exceeded(), e.site()) {
                    (true, _) => format!("size limit exceeded: {}", e.message()),
                    (false, ErrorSite::Rule) => {
                        format!("{} ('{}')", e.message(), p.route.name)
                    }
                    (false, ErrorSite::Target) => with_endpoint_suggestion(e.message(), &spec.endpoints),
                    _ => e.message().to_string(),
                };
                // A group's own setting (its context path or a host) is wrong for
                // every route of it: said once, about the group, and the group's
                // routes leave the build together.
                if matches!(e.site(), ErrorSite::ContextPath | ErrorSite::Host(_)) {
                    let gi = p.spans.group;
                    d.at(at..at, message, Some(&p.route.group), None);
                    let keep: Vec<bool> = origins.iter().map(|&o| pending[o].spans.group != gi).collect();
                    let mut k = keep.iter();
                    spec.rules.retain(|_| *k.next().unwrap_or(&true));
                    let mut k = keep.iter();
                    origins.retain(|_| *k.next().unwrap_or(&true));
                } else {
                    d.at(at..at, message, Some(&p.route.group), Some(&p.route.name));
                    spec.rules.remove(i);
                    origins.remove(i);
                }
                if d.len() >= MAX_BUILD_ERRORS {
                    break None;
                }
            }
        }
    };

    // Literal origins of the rules that built.
    let mut literal_origins: Vec<UpstreamAddr> = Vec::new();
    for &i in &origins {
        let p = &pending[i];
        let (ActionSpec::Proxy { to }, Some(to_span)) = (&p.spec.action, &p.spans.to) else {
            continue;
        };
        let Some((tls, authority)) = literal_origin(to) else {
            continue;
        };
        if literal_origins
            .iter()
            .any(|o| o.authority == authority && o.tls.is_some() == tls)
        {
            continue;
        }
        let (group, route) = (Some(p.route.group.as_str()), Some(p.route.name.as_str()));
        let resolved = split_authority(authority, tls).and_then(|(host, port)| {
            let mut a = resolve(&super::resolve::HttpOrigin {
                tls,
                authority,
                host,
                port,
            })?;
            if tls {
                // A literal https origin: verified against the public roots as its host.
                let t = upstream_tls(host, None, &base, &mut files, &mut configs)?;
                a.tls = Some(std::sync::Arc::new(t));
            }
            Ok(a)
        });
        match resolved {
            Ok(a) => literal_origins.push(a),
            Err(m) => d.at(to_span.clone(), format!("target '{to}': {m}"), group, route),
        }
    }

    let (Some(compiled), true) = (compiled, d.is_empty()) else {
        return Err(d.into_error());
    };
    let mut notices = environment_notices(&named, &spec.environments, &server, &d);
    notices.extend(access_log_notice(&log, f, &d));
    notices.extend(traffic_notices);
    let endpoints = endpoints.into_iter().flatten().collect();
    let routes = pending.drain(..).map(|p| p.route).collect();
    Ok(Config {
        source: ConfigSource::Embedded { hash: 0 },
        server,
        limits,
        upstream,
        admin,
        log,
        endpoints,
        router: spec,
        compiled,
        routes,
        literal_origins,
        tls,
        access,
        groups,
        endpoint_overrides,
        traffic,
        files,
        notices,
    })
}

/// Environments no request can reach, and ones named once that look like a typo
/// of another.
fn environment_notices(
    named: &[(String, Range<usize>)],
    environments: &[String],
    server: &super::ServerConfig,
    d: &Diagnostics<'_>,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, span) in named {
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let (line, column) = d.line_col(span.start);
        let notice = |message: String| Notice {
            kind: "environment",
            line,
            column,
            message,
        };
        if server.stage_header.is_none() && *name != server.environment {
            out.push(notice(format!(
                "environment '{name}' can never be served: there is no [server] stage_header to pick it, and it is not server.environment ('{}')",
                server.environment
            )));
            continue;
        }
        let once = named.iter().filter(|(n, _)| n == name).count() == 1;
        let near = nearest(name, environments.iter().map(String::as_str));
        if let (true, Some(other)) = (once, near) {
            out.push(notice(format!(
                "environment '{name}' is named only here; did you mean '{other}'?"
            )));
        }
    }
    out
}

/// `[log] access` pointing into a directory that does not exist.
fn access_log_notice(log: &super::LogConfig, f: &FileConfig, d: &Diagnostics<'_>) -> Option<Notice> {
    let super::AccessLogTarget::File(path) = &log.access else {
        return None;
    };
    let dir = path.parent()?;
    let problem = if !dir.is_dir() {
        "does not exist"
    } else if nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_err()
        && !path.exists()
    {
        // (An existing, writable file in a read-only directory is fine.)
        "is not writable by this user"
    } else if path.exists() && nix::unistd::access(path.as_path(), nix::unistd::AccessFlags::W_OK).is_err() {
        "holds the file, which is not writable by this user"
    } else {
        return None;
    };
    let span = f.log.access.as_ref()?.span();
    let (line, column) = d.line_col(span.start);
    Some(Notice {
        kind: "access_log",
        line,
        column,
        message: format!(
            "log.access: the directory '{}' {problem}; access log lines will be dropped until it is",
            dir.display()
        ),
    })
}

/// A target error naming an unknown endpoint, with the nearest defined name.
fn with_endpoint_suggestion(message: &str, endpoints: &[String]) -> String {
    let unknown = message
        .split_once("no endpoint or endpoint group named '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(name, _)| name);
    let near = unknown.map(|u| did_you_mean_suffix(u, endpoints.iter().map(String::as_str)));
    format!("{message}{}", near.unwrap_or_default())
}

/// The byte offset in the file that a router error about `site` points at.
fn site_offset(text: &str, r: &RuleSpans, g: &GroupSpans, site: ErrorSite) -> usize {
    let name = r.name.start;
    match site {
        ErrorSite::Rule | ErrorSite::Router => name,
        ErrorSite::Path { offset } => match offset {
            Some(o) if r.path_is_regex => offset_in_string(text, &r.path, o),
            _ => r.path.start,
        },
        ErrorSite::ContextPath => g.context_path.as_ref().map_or(g.name_span.start, |s| s.start),
        ErrorSite::Target => r.to.as_ref().map_or(name, |s| s.start),
        ErrorSite::Host(i) => g.hosts.get(i).map_or(g.name_span.start, |s| s.start),
        ErrorSite::Method(i) => r.methods.get(i).map_or(name, |s| s.start),
        ErrorSite::Predicate { index, offset } => match r.predicates.get(index) {
            Some((_, Some(re))) => offset_in_string(text, re, offset.unwrap_or(0)),
            Some((table, None)) => table.start,
            None => name,
        },
        ErrorSite::Environment(i) => r.environments.get(i).map_or(name, |s| s.start),
    }
}

/// Every route of every group, in order, with where its parts are.
fn rules(
    groups: &[Spanned<GroupFile>],
    versions: &[Option<Versions>],
    d: &mut Diagnostics<'_>,
) -> (Vec<PendingRule>, Vec<GroupSpans>) {
    let mut out = Vec::with_capacity(groups.iter().map(|g| g.get_ref().routes.len()).sum());
    let mut spans: Vec<GroupSpans> = Vec::with_capacity(groups.len());
    // Maps, not scans: 10,000 routes (or groups) would otherwise cost 50 M name
    // comparisons on every reload and `check`.
    let mut group_at: HashMap<&str, usize> = HashMap::with_capacity(groups.len());
    for (gi, g) in groups.iter().enumerate() {
        let gf = g.get_ref();
        let gname = gf.name.get_ref().as_str();
        if gname.is_empty() {
            d.at(gf.name.span(), "a group name may not be empty", None, None);
        }
        let first = *group_at.entry(gname).or_insert(spans.len());
        let duplicate = (first != spans.len()).then_some(first);
        if let Some(first) = duplicate {
            let (line, _) = d.line_col(spans[first].name_span.start);
            d.at(
                gf.name.span(),
                format!("duplicate group name '{gname}' (first defined on line {line})"),
                Some(gname),
                None,
            );
        }
        spans.push(GroupSpans {
            name_span: gf.name.span(),
            hosts: gf.hosts.iter().flatten().map(Spanned::span).collect(),
            context_path: gf.context_path.as_ref().map(Spanned::span),
        });
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(gf.routes.len());
        for r in &gf.routes {
            let rname = r.get_ref().name.get_ref().as_str();
            if let Some(&first) = seen.get(rname) {
                let (line, _) = d.line_col(first);
                d.at(
                    r.get_ref().name.span(),
                    format!(
                        "duplicate route name '{rname}' in group '{gname}' (first defined on line {line})"
                    ),
                    Some(gname),
                    Some(rname),
                );
                continue;
            }
            seen.insert(rname, r.get_ref().name.span().start);
            let versions = versions.get(gi).and_then(Option::as_ref);
            // A duplicate group's routes are still checked, but kept from the
            // router: their names would clash with the first group's.
            if let (Some(rule), None) = (rule(gi, gf, r.get_ref(), versions, d), duplicate) {
                out.push(rule);
            }
        }
    }
    (out, spans)
}

/// One route; `None` (with diagnostics) when it cannot be given to the router.
fn rule(
    gi: usize,
    g: &GroupFile,
    r: &RouteFile,
    versions: Option<&Versions>,
    d: &mut Diagnostics<'_>,
) -> Option<PendingRule> {
    let group = g.name.get_ref().as_str();
    let name = r.name.get_ref().as_str();
    let errors_before = d.len();
    let err = |d: &mut Diagnostics<'_>, span: Range<usize>, m: String| {
        d.at(span, m, Some(group), Some(name));
    };
    if name.is_empty() {
        err(d, r.name.span(), "a route name may not be empty".into());
    }
    let (path, path_span, path_is_regex) = match r.path.get_ref() {
        PathFile {
            exact: Some(p),
            prefix: None,
            regex: None,
        } => (PathSpec::Exact(p.get_ref().clone()), p.span(), false),
        PathFile {
            exact: None,
            prefix: Some(p),
            regex: None,
        } => (PathSpec::Prefix(p.get_ref().clone()), p.span(), false),
        PathFile {
            exact: None,
            prefix: None,
            regex: Some(p),
        } => {
            // It must match the whole path, which starts with `/`: a regex that
            // starts with a plain character can never match.
            let first = p.get_ref().chars().next();
            if first.is_some_and(|c| c.is_alphanumeric() || "-_~%:".contains(c)) {
                err(
                    d,
                    p.span(),
                    format!(
                        "path regex '{}' can never match: it must match the whole path, which starts with '/' (write '/{}')",
                        p.get_ref(),
                        p.get_ref()
                    ),
                );
            }
            (PathSpec::Regex(p.get_ref().clone()), p.span(), true)
        }
        _ => {
            err(
                d,
                r.path.span(),
                "path needs exactly one of exact, prefix or regex".into(),
            );
            return None;
        }
    };
    for m in r.methods.iter().flatten() {
        if m.get_ref().bytes().any(|b| b.is_ascii_lowercase()) {
            err(
                d,
                m.span(),
                format!(
                    "method '{}' has lowercase letters; methods are case-sensitive (write '{}')",
                    m.get_ref(),
                    m.get_ref().to_ascii_uppercase()
                ),
            );
        }
    }
    let mut predicates = Vec::new();
    let mut pred_spans = Vec::new();
    let all = r
        .query
        .iter()
        .map(|p| (Source::Query, p))
        .chain(r.headers.iter().map(|p| (Source::Header, p)));
    for (source, p) in all {
        match predicate_op(p.get_ref()) {
            Ok(op) => predicates.push(PredicateSpec {
                source,
                name: p.get_ref().name.get_ref().clone(),
                op,
            }),
            Err((span, m)) => err(d, span.unwrap_or(p.span()), m),
        }
        pred_spans.push((p.span(), p.get_ref().regex.as_ref().map(Spanned::span)));
    }
    let (action, mock) = match (&r.to, &r.mock) {
        (Some(to), None) => (
            ActionSpec::Proxy {
                to: to.get_ref().clone(),
            },
            None,
        ),
        (None, Some(m)) => (ActionSpec::Local, mock(m).map_err(|(s, e)| err(d, s, e)).ok()),
        (None, None) => {
            err(
                d,
                r.name.span(),
                "a route needs either `to` (proxy to a target) or `mock` (answer locally)".into(),
            );
            return None;
        }
        (Some(_), Some(m)) => {
            err(d, m.span(), "a route has either `to` or `mock`, not both".into());
            return None;
        }
    };
    let envs = r.environments.as_ref().or(g.environments.as_ref());
    let route_versions = route_versions(g, r, versions, d);
    // A versioned group's route is live where one of its versions is published.
    let environments = match versions {
        Some(vs) => Some(vs.environments_of(route_versions.as_deref())),
        None => envs.map(|e| e.iter().map(|e| e.get_ref().clone()).collect()),
    };
    let upgrade = upgrade_protocols(r, d);
    let (line, column) = d.line_col(r.name.span().start);
    if d.len() > errors_before {
        return None;
    }
    Some(PendingRule {
        spec: RuleSpec {
            name: name.to_string(),
            group: group.to_string(),
            hosts: g.hosts.iter().flatten().map(|h| h.get_ref().clone()).collect(),
            methods: r.methods.iter().flatten().map(|m| m.get_ref().clone()).collect(),
            context_path: g.context_path.as_ref().map(|c| c.get_ref().clone()),
            path,
            predicates,
            environments,
            action,
        },
        route: RouteConfig {
            max_body_bytes: super::sections::body_limit(r.max_body_bytes.as_ref()),
            group: group.to_string(),
            group_index: gi,
            versions: route_versions,
            name: name.to_string(),
            mock,
            allow_shadow: r.allow_shadow.unwrap_or(false),
            upgrade,
            retry: r.retry.as_ref().map(|t| super::health::retry_policy(name, t, d)),
            line,
            column,
        },
        spans: RuleSpans {
            group: gi,
            name: r.name.span(),
            path: path_span,
            path_is_regex,
            to: r.to.as_ref().map(Spanned::span),
            methods: r.methods.iter().flatten().map(Spanned::span).collect(),
            predicates: pred_spans,
            environments: envs.into_iter().flatten().map(Spanned::span).collect(),
        },
    })
}

type SpanError = (Option<Range<usize>>, String);

/// The route's `upgrade` list, lowercase: protocol names as `Upgrade` carries them
/// (a token, optionally `/version`). Absent: WebSocket only.
fn upgrade_protocols(r: &RouteFile, d: &mut Diagnostics<'_>) -> Vec<String> {
    let Some(list) = &r.upgrade else {
        return vec!["websocket".to_string()];
    };
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for p in list {
        let name = p.get_ref().to_ascii_lowercase();
        let (proto, version) = name.split_once('/').unwrap_or((&name, "x"));
        if !is_token(proto) || !is_token(version) {
            d.at(
                p.span(),
                format!(
                    "route '{}': upgrade: '{}' is not a protocol name",
                    r.name.get_ref(),
                    p.get_ref()
                ),
                None,
                None,
            );
        } else if out.contains(&name) {
            d.at(
                p.span(),
                format!(
                    "route '{}': upgrade: '{}' is listed twice",
                    r.name.get_ref(),
                    p.get_ref()
                ),
                None,
                None,
            );
        } else {
            out.push(name);
        }
    }
    out
}

fn predicate_op(p: &PredicateFile) -> Result<PredicateOp, SpanError> {
    let mut ops = Vec::new();
    if let Some(v) = &p.equals {
        ops.push(PredicateOp::Equals(v.clone()));
    }
    if let Some(v) = &p.one_of {
        if v.is_empty() {
            return Err((
                None,
                format!(
                    "predicate on '{}': one_of needs at least one value",
                    p.name.get_ref()
                ),
            ));
        }
        ops.push(PredicateOp::OneOf(v.clone()));
    }
    if let Some(v) = &p.prefix {
        ops.push(PredicateOp::Prefix(v.clone()));
    }
    if let Some(v) = &p.regex {
        ops.push(PredicateOp::Regex(v.get_ref().clone()));
    }
    for (flag, op, key) in [
        (&p.present, PredicateOp::Present, "present"),
        (&p.absent, PredicateOp::Absent, "absent"),
    ] {
        if let Some(f) = flag {
            if !*f.get_ref() {
                return Err((
                    Some(f.span()),
                    format!(
                        "predicate on '{}': write `{key} = true` or leave it out",
                        p.name.get_ref()
                    ),
                ));
            }
            ops.push(op);
        }
    }
    if ops.len() != 1 {
        return Err((
            None,
            format!(
                "predicate on '{}' needs exactly one of equals, one_of, prefix, regex, present = true, absent = true (found {})",
                p.name.get_ref(),
                ops.len()
            ),
        ));
    }
    Ok(ops.remove(0))
}

fn mock(m: &Spanned<super::file::MockFile>) -> Result<MockResponse, (Range<usize>, String)> {
    let mf = m.get_ref();
    let status = match &mf.status {
        None => 200,
        Some(s) if (200..=599).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => {
            return Err((
                s.span(),
                format!("mock status {} is not a final HTTP status (200-599)", s.get_ref()),
            ))
        }
    };
    for (k, v) in &mf.headers.0 {
        if !is_token(k) {
            return Err((
                m.span(),
                format!("mock header name '{k}' is not a valid header name"),
            ));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err((
                m.span(),
                format!("mock header '{k}': the value may not contain CR, LF or NUL"),
            ));
        }
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding") {
            return Err((
                m.span(),
                format!("mock header '{k}' is set by ringway from the body; leave it out"),
            ));
        }
    }
    Ok(MockResponse {
        status,
        headers: mf.headers.0.clone(),
        body: mf.body.clone().into_bytes(),
    })
}
