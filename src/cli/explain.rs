//! `ringway explain`: which rule wins one request, why the others lost, the captures
//! and the rendered target, as JSON or for people.

use super::{load, ExplainArgs, Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::config::{Config, EndpointDef};
use ringway_router::{Failure, MatchScratch, Origin, RequestView, RouteId};
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
pub fn explain_value(config: &Config, args: &ExplainArgs) -> Result<Value, String> {
    let router = &config.compiled;
    let req = parse_request(&args.url, &args.headers)?;
    // The environment: --env, else the stage header, else the default.
    let stage = config.server.stage_header.as_deref().and_then(|s| {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, v)| v.clone())
    });
    let environment = match (&args.env, stage) {
        (Some(e), _) => {
            if router.env_id(e).is_none() {
                return Err(format!(
                    "unknown environment '{e}' (the config has: {})",
                    config.router.environments.join(", ")
                ));
            }
            e.clone()
        }
        (None, Some(s)) if router.env_id(&s).is_some() => s,
        (None, Some(s)) => {
            // As the gateway does: a request asking for an environment that does not
            // exist is answered 400, never routed in another environment.
            return Ok(json!({
                "environment": s,
                "method": args.method,
                "host": req.host,
                "normalized_path": null,
                "candidates": [],
                "rule": null,
                "captures": [],
                "target": null,
                "status": 400,
                "error": format!("the stage header names '{s}', which is not an environment of this config"),
            }));
        }
        (None, None) => config.server.environment.clone(),
    };
    let env = router
        .env_id(&environment)
        .ok_or_else(|| format!("environment '{environment}' is not in the router"))?;
    let view = RequestView {
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
    let mut v = json!({
        "environment": environment,
        "method": args.method,
        "host": req.host,
    });
    let ex = match router.explain(&view, &headers, &mut scratch) {
        Ok(ex) => ex,
        Err(e) => {
            v["normalized_path"] = Value::Null;
            v["candidates"] = json!([]);
            v["rule"] = Value::Null;
            v["captures"] = json!([]);
            v["target"] = Value::Null;
            v["status"] = json!(400);
            v["error"] = json!(format!("the path cannot be normalized: {e}"));
            return Ok(v);
        }
    };
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
    let Some(winner) = ex.winner else {
        v["rule"] = Value::Null;
        v["target"] = Value::Null;
        v["status"] = json!(config.server.no_match_status);
        return Ok(v);
    };
    let (group, name) = router.route_name(winner);
    v["rule"] = json!(format!("{group}/{name}"));
    let route = config.routes.get(winner.index());
    if let Some(mock) = route.and_then(|r| r.mock.as_ref()) {
        v["target"] = json!({ "mock": mock.status });
        v["status"] = json!(mock.status);
        return Ok(v);
    }
    let (target, upstream) = proxy_target(config, winner, &scratch, view.query);
    v["target"] = json!(target);
    v["upstream"] = upstream;
    v["status"] = Value::Null;
    Ok(v)
}

/// The rendered target URL of a proxy route, and what it resolves to.
fn proxy_target(
    config: &Config,
    winner: RouteId,
    scratch: &MatchScratch,
    query: Option<&[u8]>,
) -> (String, Value) {
    let mut buf = Vec::new();
    let origin = config
        .compiled
        .render_target(winner, scratch, query, &mut buf)
        .cloned();
    let path = String::from_utf8_lossy(&buf).into_owned();
    match origin {
        Some(Origin::Endpoint(id)) => match config.endpoints.get(id.0 as usize) {
            Some(EndpointDef::Single { name, upstream }) => (
                format!("http://{}{path}", upstream.authority),
                json!({ "endpoint": name, "members": [format!("http://{}", upstream.authority)],
                        "address": upstream.addr.to_string() }),
            ),
            Some(EndpointDef::Group { name, lb, members }) => (
                format!("{{#endpoints['{name}']}}{path}"),
                json!({
                    "endpoint": name,
                    "lb": lb.as_str(),
                    "members": members.iter().map(|(m, w)| json!({
                        "url": format!("http://{}", m.authority), "weight": w
                    })).collect::<Vec<_>>(),
                }),
            ),
            None => (path, Value::Null),
        },
        Some(Origin::Url { tls, authority }) => {
            let scheme = if tls { "https" } else { "http" };
            let addr = config
                .literal_origins
                .iter()
                .find(|o| o.authority == authority)
                .map(|o| o.addr.to_string());
            (
                format!("{scheme}://{authority}{path}"),
                json!({ "literal": authority, "address": addr }),
            )
        }
        None => (path, Value::Null),
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
