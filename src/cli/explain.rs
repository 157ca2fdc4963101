//! `ringway explain`: which rule wins one request, why the others lost, the captures
//! and the rendered target, as JSON or for people.

use super::{load, ExplainArgs, Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::config::{Config, EndpointDef};
use crate::proxy::decide::{decide, Decision, Dest, Refusal, RequestParts};
use crate::snapshot::Snapshot;
use ringway_router::{EnvId, Failure, MatchScratch, RequestView};
use serde_json::{json, Value};
use std::io::Write;

/// A request given on the command line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CliRequest {
    pub(super) host: Option<String>,
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) headers: Vec<(String, String)>,
}

pub(super) fn parse_request(url: &str, headers: &[String]) -> Result<CliRequest, String> {
    let mut hs = Vec::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header '{h}' is not 'Name: value'"))?;
        let name = name.trim();
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(format!("header '{h}' has an invalid name"));
        }
        hs.push((name.to_string(), value.trim().to_string()));
    }
    let url = url.split('#').next().unwrap_or_default();
    let (host, target) = if let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        if end == 0 {
            return Err(format!("URL '{url}' has no host"));
        }
        let target = &rest[end..];
        (Some(rest[..end].to_string()), target)
    } else if url.starts_with('/') {
        let host = hs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone());
        (host, url)
    } else {
        return Err(format!(
            "URL '{url}' must be absolute (http://host/path) or start with '/'"
        ));
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    Ok(CliRequest {
        host,
        path: if path.is_empty() { "/" } else { path }.to_string(),
        query,
        headers: hs,
    })
}

/// `ringway explain`: prints to stdout, returns the exit code.
pub fn explain(args: ExplainArgs) -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    explain_to(&args, &mut stdout.lock(), &mut stderr.lock())
}

/// [`explain`], writing the explanation to `out` and problems to `err`.
pub fn explain_to(args: &ExplainArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let config = match load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return EXIT_INVALID;
        }
    };
    let report = match explain_value(&config, args) {
        Ok(v) => v,
        Err(m) => {
            let _ = writeln!(err, "ringway explain: {m}");
            return EXIT_USAGE;
        }
    };
    let written = match args.format {
        Format::Json => writeln!(out, "{report}"),
        Format::Human => out.write_all(human(&report).as_bytes()),
    };
    if written.is_ok() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}

/// The explanation of one request as a JSON object (see `docs/configuration.md`).
///
/// The verdict — environment, winning rule, target, status — is the gateway's own
/// [`decide`]; the router's `explain` adds why each other candidate lost.
pub fn explain_value(config: &Config, args: &ExplainArgs) -> Result<Value, String> {
    let snap = Snapshot::build(config.clone(), 0)?;
    let router = snap.router();
    let req = parse_request(&args.url, &args.headers)?;
    let env = match &args.env {
        Some(e) => Some(router.env_id(e).ok_or_else(|| {
            format!(
                "unknown environment '{e}' (the config has: {})",
                config.router.environments.join(", ")
            )
        })?),
        None => None,
    };
    let parts = RequestParts {
        method: args.method.as_bytes(),
        host: req.host.as_deref().map(str::as_bytes),
        path: req.path.as_bytes(),
        query: req.query.as_deref().map(str::as_bytes),
        env,
    };
    let headers: Vec<(&[u8], &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let mut scratch = MatchScratch::default();
    let mut target = Vec::new();
    let decision = decide(
        &snap,
        router,
        &parts,
        headers.iter().copied(),
        &mut scratch,
        &mut target,
    );
    let env_name = |e: EnvId| config.router.environments.get(e.0 as usize).cloned();
    let mut v = json!({
        "method": args.method,
        "host": req.host,
    });
    let refused = |v: &mut Value, status: u16, error: String| {
        v["normalized_path"] = Value::Null;
        v["candidates"] = json!([]);
        v["rule"] = Value::Null;
        v["captures"] = json!([]);
        v["target"] = Value::Null;
        v["status"] = json!(status);
        v["error"] = json!(error);
    };
    let env = match decision {
        Decision::Refuse {
            refusal: Refusal::UnknownStage,
            ..
        } => {
            // As the gateway does: a request asking for an environment that does not
            // exist is answered 400, never routed in another environment.
            let stage = config.server.stage_header.as_deref().and_then(|s| {
                req.headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(s))
                    .map(|(_, v)| v.clone())
            });
            let s = stage.unwrap_or_default();
            v["environment"] = json!(s);
            let error = format!("the stage header names '{s}', which is not an environment of this config");
            refused(&mut v, 400, error);
            return Ok(v);
        }
        Decision::Refuse {
            refusal: Refusal::BadPath(e),
            env,
            ..
        } => {
            v["environment"] = json!(env.and_then(env_name));
            refused(&mut v, 400, format!("the path cannot be normalized: {e}"));
            return Ok(v);
        }
        Decision::Mock { env, .. } | Decision::Proxy { env, .. } => env,
        Decision::Refuse { env, .. } => env.unwrap_or(snap.default_env),
    };
    v["environment"] = json!(env_name(env));
    // Why the others lost: the router's account of the same match.
    let view = RequestView {
        method: parts.method,
        host: parts.host,
        path: parts.path,
        query: parts.query,
        env,
    };
    let ex = router
        .explain(&view, &headers, &mut MatchScratch::default())
        .map_err(|e| format!("the path cannot be normalized: {e}"))?;
    v["normalized_path"] = json!(ex.normalized_path);
    v["candidates"] = ex
        .candidates
        .iter()
        .map(|c| {
            json!({
                "rule": c.rule,
                "group": c.group,
                "failed": c.failed.as_ref().map(Failure::to_string),
                "checked": c.checked,
            })
        })
        .collect();
    v["captures"] = ex
        .captures
        .iter()
        .map(|c| json!({ "index": c.index, "name": c.name, "value": c.value }))
        .collect();
    v["version"] = json!(decision.route().and_then(|r| snap.version_in(r, env)));
    // The rate limits that would count the request, in the order they are tried.
    v["limits"] = match decision.route().and_then(|r| config.routes.get(r.index())) {
        Some(r) => config
            .traffic
            .limits
            .iter()
            .filter(|l| l.covers(r.group_index, &r.group, &r.name))
            .map(|l| json!({ "name": l.name, "by": l.by.as_str(), "rate": l.rate, "unit": l.unit.as_str(), "burst": l.burst }))
            .collect(),
        None => json!([]),
    };
    v["rule"] = match decision.route() {
        Some(r) => {
            let (group, name) = router.route_name(r);
            json!(format!("{group}/{name}"))
        }
        None => Value::Null,
    };
    match decision {
        Decision::Mock { route, .. } => {
            let status = config
                .routes
                .get(route.index())
                .and_then(|r| r.mock.as_ref())
                .map_or(500, |m| m.status);
            v["target"] = json!({ "mock": status });
            v["status"] = json!(status);
        }
        Decision::Proxy { dest, .. } => {
            let (target, upstream) = proxy_target(&snap, dest, &String::from_utf8_lossy(&target));
            v["target"] = json!(target);
            v["upstream"] = upstream;
            v["status"] = Value::Null;
        }
        Decision::Refuse { refusal, .. } => {
            v["target"] = Value::Null;
            v["status"] = json!(refusal.status(config.server.no_match_status));
            if refusal != Refusal::NoMatch {
                v["error"] = json!(refusal.problem());
            }
        }
    }
    Ok(v)
}

/// The rendered target URL of a proxy decision, and what it resolves to.
fn proxy_target(snap: &Snapshot, dest: Dest, path: &str) -> (String, Value) {
    match dest {
        Dest::Endpoint(id) => match snap.config.endpoints.get(id.0 as usize) {
            Some(EndpointDef::Single { name, upstream }) => (
                format!("http://{}{path}", upstream.authority),
                json!({ "endpoint": name, "members": [format!("http://{}", upstream.authority)],
                        "address": upstream.addr.to_string() }),
            ),
            Some(EndpointDef::Group {
                name, lb, members, ..
            }) => (
                format!("{{#endpoints['{name}']}}{path}"),
                json!({
                    "endpoint": name,
                    "lb": lb.as_str(),
                    "members": members.iter().map(|(m, w)| json!({
                        "url": format!("http://{}", m.authority), "weight": w
                    })).collect::<Vec<_>>(),
                }),
            ),
            None => (path.to_string(), Value::Null),
        },
        Dest::Upstream(u) => {
            let up = snap.upstream(u);
            let scheme = if up.tls.is_some() { "https" } else { "http" };
            (
                format!("{scheme}://{}{path}", up.authority),
                json!({ "literal": up.authority, "address": up.addr.to_string() }),
            )
        }
    }
}

/// The explanation, for people.
fn human(v: &Value) -> String {
    let s = |k: &str| match &v[k] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut o = String::new();
    o += &format!("environment      {}\n", s("environment"));
    o += &format!(
        "request          {} {} (host {})\n",
        s("method"),
        s("normalized_path"),
        s("host")
    );
    if let Some(e) = v["error"].as_str() {
        o += &format!("error            {e}\n");
    }
    let cands = v["candidates"].as_array().cloned().unwrap_or_default();
    if cands.is_empty() {
        o += "candidates       none (no rule's path matches)\n";
    } else {
        o += "candidates (rules whose path matches, in order):\n";
        for c in &cands {
            let name = format!(
                "{}/{}",
                c["group"].as_str().unwrap_or("?"),
                c["rule"].as_str().unwrap_or("?")
            );
            let verdict = match (c["checked"].as_bool(), c["failed"].as_str()) {
                (Some(false), _) => "not checked (an earlier rule won)".to_string(),
                (_, Some(f)) => format!("failed: {f}"),
                _ => "wins".to_string(),
            };
            o += &format!("  {name:<32} {verdict}\n");
        }
    }
    o += &format!("rule             {}\n", s("rule"));
    for l in v["limits"].as_array().into_iter().flatten() {
        o += &format!(
            "limit            {} ({} per {}, burst {}, by {})\n",
            l["name"].as_str().unwrap_or(""),
            l["rate"],
            l["unit"].as_str().unwrap_or(""),
            l["burst"],
            l["by"].as_str().unwrap_or("")
        );
    }
    if !v["version"].is_null() {
        o += &format!("version          {}\n", s("version"));
    }
    for c in v["captures"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().map(|n| format!(" ({n})")).unwrap_or_default();
        let value = c["value"].as_str().unwrap_or("(did not participate)");
        o += &format!("  group {}{name} = {value}\n", c["index"]);
    }
    let target = match &v["target"] {
        Value::Object(m) => format!(
            "local response {}",
            m.get("mock").map_or("?".into(), Value::to_string)
        ),
        _ => s("target"),
    };
    o += &format!("target           {target}\n");
    if let Value::Object(u) = &v["upstream"] {
        o += &format!("upstream         {}\n", Value::Object(u.clone()));
    }
    let status = match &v["status"] {
        Value::Null => "from the upstream (proxied)".to_string(),
        st => st.to_string(),
    };
    o += &format!("status           {status}\n");
    o
}
