//! The command line: `ringway [run]`, `ringway check` and `ringway explain`.
//!
//! [`parse_args`] reads `std::env::args` (printing help or a usage error and exiting
//! when asked to); [`check`] and [`explain`] do their work, print to stdout, and return
//! the process exit code. Their `*_to` forms write to any `Write`, for tests.

use crate::config::{self, Config, ConfigError, EndpointDef};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ringway_router::analysis::{analyze, AnalysisLimits, FindingKind};
use ringway_router::{Failure, MatchScratch, Origin, RequestView, RouteId};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

/// Exit code: success (`check`: the file is valid).
pub const EXIT_OK: i32 = 0;
/// Exit code: the config is invalid or unreadable (`check` with `--strict`: or has warnings).
pub const EXIT_INVALID: i32 = 1;
/// Exit code: the command line itself is wrong (a bad URL, header or environment).
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ringway",
    version,
    about = "An HTTP API gateway: thread-per-core, io_uring, compiled routing.",
    long_about = "An HTTP API gateway: thread-per-core, io_uring, compiled routing.\n\n\
        With no command, `ringway` runs the gateway (same as `ringway run`). Without -c it \
        serves the embedded default config: mock routes on 127.0.0.1:8080 that show the \
        rule syntax. docs/configuration.md documents the config file.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Run the gateway (the default command).
    Run(RunArgs),
    /// Validate a config file, like `nginx -t`: errors as FILE:LINE:COL, plus warnings
    /// about shadowed and overlapping routes. Exit 0 if valid, 1 if not.
    Check(CheckArgs),
    /// Show how a config routes one request: candidates, why each lost, the winner, its
    /// captures, the rendered target and the status the client would get.
    Explain(ExplainArgs),
}

/// `ringway run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The config file (TOML). Default: the embedded default config.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Output format of `check` and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    Human,
    /// One JSON object.
    Json,
}

/// `ringway check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The config file to check. Default: the embedded default config.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// `ringway explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The config file. Default: the embedded default config.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The environment to route in. Default: the stage header's value among the -H
    /// headers, else `server.environment`.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// A request header, as 'Name: value'. Repeatable. `-H 'host: …'` sets the Host
    /// for an origin-form URL.
    #[arg(short = 'H', long = "header", value_name = "'Name: value'")]
    pub headers: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// The request method, case-sensitive (GET, POST, …).
    #[arg(value_name = "METHOD")]
    pub method: String,
    /// The request target: absolute (http://api.example.com/store/v1?x=1, whose
    /// authority is the Host) or origin-form (/store/v1?x=1).
    #[arg(value_name = "URL")]
    pub url: String,
}

/// What to do, from the command line.
#[derive(Debug, Clone)]
pub enum Command {
    Run { config: Option<PathBuf> },
    Check(CheckArgs),
    Explain(ExplainArgs),
}

/// Parses the process's arguments; prints help, the version or a usage error and exits
/// when that is what they ask for.
pub fn parse_args() -> Command {
    command(Cli::parse())
}

/// Parses `args` (the first is the program name).
pub fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).map(command)
}

fn command(cli: Cli) -> Command {
    match cli.command {
        None => Command::Run {
            config: cli.run.config,
        },
        Some(Sub::Run(r)) => Command::Run { config: r.config },
        Some(Sub::Check(c)) => Command::Check(c),
        Some(Sub::Explain(e)) => Command::Explain(e),
    }
}

/// Loads `path`, or the embedded default when `None`.
pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => config::load_file(p),
        None => config::load_default(),
    }
}

fn config_name(path: Option<&std::path::Path>) -> String {
    path.map_or_else(
        || "<embedded default.toml>".to_string(),
        |p| p.display().to_string(),
    )
}

// ---------------------------------------------------------------------------------
// check

/// One warning about a valid config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// `shadowed`, `overlap` or `unmatchable`.
    pub kind: &'static str,
    pub message: String,
    pub group: String,
    pub route: String,
    /// A normalized path that shows it (empty for `unmatchable`).
    pub witness: String,
    /// The other rules involved, as `group/route`.
    pub others: Vec<String>,
}

/// Shadowed, overlapping and unmatchable routes of a loaded config, in rule order,
/// from [`ringway_router::analysis::analyze`] with its default limits.
pub fn warnings(config: &Config, file: &str) -> Vec<Warning> {
    let analysis = analyze(&config.router, &AnalysisLimits::default());
    let full = |i: usize| {
        config
            .routes
            .get(i)
            .map_or_else(|| format!("#{i}"), |r| format!("{}/{}", r.group, r.name))
    };
    let mut out = Vec::new();
    for f in analysis.findings {
        let Some(route) = config.routes.get(f.rule) else {
            continue;
        };
        let (kind, message, others) = match &f.kind {
            FindingKind::Shadowed { by } => {
                let others: Vec<String> = by.iter().map(|&i| full(i)).collect();
                let message = format!(
                    "route never wins: {} take{} every request it matches, e.g. {}",
                    others.join(", "),
                    if others.len() == 1 { "s" } else { "" },
                    f.witness
                );
                ("shadowed", message, others)
            }
            FindingKind::Overlap { with } => (
                "overlap",
                format!(
                    "route overlaps the earlier {} (both match {}); the earlier one wins when its predicates hold",
                    full(*with),
                    f.witness
                ),
                vec![full(*with)],
            ),
            FindingKind::Unmatchable => (
                "unmatchable",
                "route can never match: no normalized request path matches its path".to_string(),
                Vec::new(),
            ),
        };
        out.push(Warning {
            file: file.to_string(),
            line: route.line,
            column: route.column,
            kind,
            message,
            group: route.group.clone(),
            route: route.name.clone(),
            witness: f.witness,
            others,
        });
    }
    out
}

/// `ringway check`: prints to stdout, returns the exit code.
pub fn check(args: CheckArgs) -> i32 {
    check_to(&args, &mut std::io::stdout().lock())
}

/// [`check`], writing to `out`.
pub fn check_to(args: &CheckArgs, out: &mut dyn Write) -> i32 {
    let file = config_name(args.config.as_deref());
    let (errors, warnings, summary) = match load(args.config.as_deref()) {
        Ok(c) => {
            let w = warnings(&c, &file);
            let summary = format!(
                "{file}: ok: {} route(s) in {} environment(s), {} endpoint(s), {} warning(s)",
                c.routes.len(),
                c.router.environments.len(),
                c.endpoints.len(),
                w.len()
            );
            (Vec::new(), w, summary)
        }
        Err(e) => {
            let n = e.diagnostics().len();
            (
                e.diagnostics().to_vec(),
                Vec::new(),
                format!("{file}: invalid: {n} error(s)"),
            )
        }
    };
    let ok = errors.is_empty() && (!args.strict || warnings.is_empty());
    let written = match args.format {
        Format::Human => {
            let mut s = String::new();
            for e in &errors {
                s += &format!("{e}\n");
            }
            for w in &warnings {
                s += &format!(
                    "{}:{}:{}: warning: {} (group '{}', route '{}')\n",
                    w.file, w.line, w.column, w.message, w.group, w.route
                );
            }
            if errors.is_empty() && !ok {
                s += &format!("{summary} (failing: --strict)\n");
            } else {
                s += &format!("{summary}\n");
            }
            out.write_all(s.as_bytes())
        }
        Format::Json => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| {
                    json!({
                        "file": e.file(),
                        "line": e.line(),
                        "column": e.column(),
                        "message": e.message(),
                        "group": e.group(),
                        "route": e.route(),
                    })
                })
                .collect();
            let warnings: Vec<Value> = warnings
                .iter()
                .map(|w| {
                    json!({
                        "file": w.file,
                        "line": w.line,
                        "column": w.column,
                        "kind": w.kind,
                        "message": w.message,
                        "group": w.group,
                        "route": w.route,
                        "witness": w.witness,
                        "others": w.others,
                    })
                })
                .collect();
            let v = json!({ "ok": ok, "errors": errors, "warnings": warnings });
            writeln!(out, "{v}")
        }
    };
    match (written, ok) {
        (Err(_), _) | (_, false) => EXIT_INVALID,
        (Ok(()), true) => EXIT_OK,
    }
}

// ---------------------------------------------------------------------------------
// explain

/// A request given on the command line.
#[derive(Debug, PartialEq, Eq)]
struct CliRequest {
    host: Option<String>,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
}

fn parse_request(url: &str, headers: &[String]) -> Result<CliRequest, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)
    }

    fn explain_args(config: &str, extra: &[&str]) -> ExplainArgs {
        let path = config_path(config);
        let mut args = vec!["ringway", "explain", "-c", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        match parse_from(args) {
            Ok(Command::Explain(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    fn explain_json(config: &str, extra: &[&str]) -> Value {
        let args = explain_args(config, extra);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = explain_to(&args, &mut out, &mut err);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        serde_json::from_slice(&out).unwrap()
    }

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringway-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run_check(path: &Path, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["ringway", "check", "-c", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let Ok(Command::Check(c)) = parse_from(args) else {
            panic!("not a check command")
        };
        let mut out = Vec::new();
        let code = check_to(&c, &mut out);
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn command_line_shapes() {
        assert!(matches!(
            parse_from(["ringway"]),
            Ok(Command::Run { config: None })
        ));
        let Ok(Command::Run { config }) = parse_from(["ringway", "-c", "x.toml"]) else {
            panic!()
        };
        assert_eq!(config, Some(PathBuf::from("x.toml")));
        let Ok(Command::Run { config }) = parse_from(["ringway", "run", "--config", "y.toml"]) else {
            panic!()
        };
        assert_eq!(config, Some(PathBuf::from("y.toml")));
        let Ok(Command::Check(c)) =
            parse_from(["ringway", "check", "-c", "a", "--strict", "--format", "json"])
        else {
            panic!()
        };
        assert!(c.strict && c.format == Format::Json);
        let Ok(Command::Explain(e)) = parse_from([
            "ringway", "explain", "-c", "a", "--env", "test", "-H", "x: 1", "-H", "y: 2", "--format",
            "human", "GET", "/x",
        ]) else {
            panic!()
        };
        assert_eq!(e.headers, ["x: 1", "y: 2"]);
        assert_eq!((e.method.as_str(), e.url.as_str()), ("GET", "/x"));
        assert_eq!(e.env.as_deref(), Some("test"));
        assert!(parse_from(["ringway", "explain", "GET"]).is_err());
        assert!(parse_from(["ringway", "-c", "a", "check"]).is_err());
        let help = Cli::try_parse_from(["ringway", "explain", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("--env") && help.contains("'Name: value'"), "{help}");
    }

    #[test]
    fn check_valid_config_exits_0() {
        let (code, out) = run_check(&config_path("example.toml"), &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(": ok: 3 route(s)"), "{out}");
    }

    #[test]
    fn check_invalid_config_prints_file_line_col() {
        let p = write_temp(
            "bad.toml",
            "[[groups]]\nname = \"g\"\n  [[groups.routes]]\n  name = \"r\"\n  path = { regex = \"/(\" }\n  mock = {}\n",
        );
        let (code, out) = run_check(&p, &[]);
        assert_eq!(code, 1);
        let first = out.lines().next().unwrap();
        let prefix = format!("{}:5:", p.display());
        assert!(first.starts_with(&prefix), "{out}");
        assert!(first.ends_with("(group 'g', route 'r')"), "{out}");

        let (code, out) = run_check(&p, &["--format", "json"]);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], json!(false));
        assert_eq!(v["errors"][0]["line"], json!(5));
        assert_eq!(v["errors"][0]["group"], json!("g"));
        assert_eq!(v["errors"][0]["route"], json!("r"));
        assert_eq!(v["warnings"], json!([]));

        let (code, out) = run_check(Path::new("/nonexistent/x.toml"), &[]);
        assert_eq!(code, 1);
        assert!(out.starts_with("/nonexistent/x.toml: cannot read"), "{out}");
    }

    #[test]
    fn check_warnings_and_strict() {
        let p = write_temp(
            "shadow.toml",
            "[[groups]]\nname = \"g\"\n  [[groups.routes]]\n  name = \"api\"\n  path = { prefix = \"/api\" }\n  mock = {}\n\n  [[groups.routes]]\n  name = \"users\"\n  path = { exact = \"/api/users\" }\n  mock = {}\n",
        );
        let (code, out) = run_check(&p, &[]);
        assert_eq!(code, 0, "{out}");
        let line = format!("{}:9:10: warning: route never wins: g/api takes every request it matches, e.g. /api/users (group 'g', route 'users')", p.display());
        assert!(out.contains(&line), "{out}");
        let (code, out) = run_check(&p, &["--strict", "--format", "json"]);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], json!(false));
        assert_eq!(v["errors"], json!([]));
        let w = &v["warnings"][0];
        assert_eq!(w["kind"], json!("shadowed"));
        assert_eq!(w["witness"], json!("/api/users"));
        assert_eq!(w["others"], json!(["g/api"]));
        assert_eq!(
            (w["line"].clone(), w["route"].clone()),
            (json!(9), json!("users"))
        );
    }

    #[test]
    fn explain_issue_3_example_store_info() {
        let v = explain_json(
            "example.toml",
            &["GET", "http://api.example.com/store/v1/stores/12/x?region=eu"],
        );
        assert_eq!(v["environment"], json!("online"));
        assert_eq!(v["normalized_path"], json!("/store/v1/stores/12/x"));
        assert_eq!(v["rule"], json!("stores/store-info"));
        assert_eq!(
            v["captures"],
            json!([{"index": 0, "name": "id", "value": "12"}, {"index": 1, "name": null, "value": "x"}])
        );
        assert_eq!(v["target"], json!("http://127.0.0.1:9012/stores/12/x?region=eu"));
        assert_eq!(v["status"], Value::Null);
        assert_eq!(v["candidates"][0]["failed"], Value::Null);
        assert_eq!(v["candidates"][0]["checked"], json!(true));
    }

    #[test]
    fn explain_reports_the_failed_matcher_of_each_loser() {
        // No region=eu: store-info loses on its query predicate, store-default wins.
        let v = explain_json(
            "example.toml",
            &["GET", "http://api.example.com/store/v1/stores/12/x"],
        );
        let c = v["candidates"].as_array().unwrap();
        assert_eq!(c[0]["rule"], json!("store-info"));
        assert!(c[0]["failed"].as_str().unwrap().starts_with("predicate 0"), "{v}");
        assert_eq!(v["rule"], json!("stores/store-default"));
        assert_eq!(v["target"], json!("{#endpoints['default']}/stores"));
        assert_eq!(v["upstream"]["lb"], json!("round_robin"));
        // A header predicate, from -H; and the host from -H for origin-form.
        let v = explain_json(
            "example.toml",
            &[
                "-H",
                "host: api.example.com",
                "-H",
                "x-canary: 1",
                "GET",
                "/store/v1/stores/12/x?region=eu",
            ],
        );
        assert_eq!(v["host"], json!("api.example.com"));
        assert!(
            v["candidates"][0]["failed"]
                .as_str()
                .unwrap()
                .starts_with("predicate 1"),
            "{v}"
        );
        // Wrong host: every candidate fails on it and the no-match status comes back.
        let v = explain_json("example.toml", &["GET", "http://other.example/store/health"]);
        assert_eq!(v["rule"], Value::Null);
        assert_eq!(v["candidates"][0]["failed"], json!("host"));
        assert_eq!(v["status"], json!(400));
    }

    #[test]
    fn explain_mock_and_environment() {
        let v = explain_json("example.toml", &["GET", "http://api.example.com/store/health"]);
        assert_eq!(v["rule"], json!("stores/health"));
        assert_eq!(v["target"], json!({"mock": 200}));
        assert_eq!(v["status"], json!(200));
        let v = explain_json(
            "jdcloud-dynamic.toml",
            &["-H", "x-ringway-stage: test", "GET", "/orders/v1/list"],
        );
        assert_eq!(v["environment"], json!("test"));
        assert_eq!(v["rule"], json!("orders/test-all"));
        // A stage the config does not have is a 400, as the gateway answers it.
        let bad = explain_json(
            "jdcloud-dynamic.toml",
            &["-H", "x-ringway-stage: prod", "GET", "/orders/v1/list"],
        );
        assert_eq!(bad["status"], json!(400));
        assert_eq!(bad["rule"], json!(null));
        assert_eq!(v["target"], json!("http://127.0.0.1:9201/v1/list"));
        let v = explain_json(
            "jdcloud-dynamic.toml",
            &[
                "--env",
                "pre-release",
                "-H",
                "x-canary: 1",
                "GET",
                "/orders/v1/list",
            ],
        );
        assert_eq!(v["rule"], json!("orders/pre-canary"));
        assert_eq!(v["candidates"][0]["failed"], json!("environment"));
        let v = explain_json(
            "jdcloud-dynamic.toml",
            &["GET", "/orders/v1/list?region=cn-north-1"],
        );
        assert_eq!(v["rule"], json!("orders/online-north"));
        assert_eq!(
            v["target"],
            json!("http://127.0.0.1:9211/v1/list?region=cn-north-1")
        );
    }

    #[test]
    fn explain_path_errors_and_bad_arguments() {
        let v = explain_json("example.toml", &["GET", "/store/a%2Fb"]);
        assert_eq!(v["status"], json!(400));
        assert!(v["error"].as_str().is_some(), "{v}");
        for bad in [
            &["--env", "nope", "GET", "/"][..],
            &["GET", "store"],
            &["-H", "nocolon", "GET", "/"],
        ] {
            let args = explain_args("example.toml", bad);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(explain_to(&args, &mut out, &mut err), EXIT_USAGE, "{bad:?}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn explain_human_format() {
        let args = explain_args(
            "stores.toml",
            &[
                "--format",
                "human",
                "GET",
                "http://api.example.com/store/v1/stores/77/info",
            ],
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(explain_to(&args, &mut out, &mut err), 0);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("rule             stores/store-any"), "{out}");
        assert!(out.contains("group 0 (id) = 77"), "{out}");
        assert!(
            out.contains("target           {#endpoints['stores-shared']}/stores/77/info"),
            "{out}"
        );
        assert!(out.contains("status           from the upstream"), "{out}");
    }

    #[test]
    fn parse_request_forms() {
        let r = parse_request("http://h:8/a/b?x=1#frag", &[]).unwrap();
        assert_eq!(
            r,
            CliRequest {
                host: Some("h:8".into()),
                path: "/a/b".into(),
                query: Some("x=1".into()),
                headers: vec![]
            }
        );
        let r = parse_request("http://h?q", &[]).unwrap();
        assert_eq!((r.path.as_str(), r.query.as_deref()), ("/", Some("q")));
        let r = parse_request("/p", &["Host:  api ".into()]).unwrap();
        assert_eq!(r.host.as_deref(), Some("api"));
        assert!(parse_request("http:///x", &[]).is_err());
        assert!(parse_request("x", &[]).is_err());
        assert!(parse_request("/", &[": v".into()]).is_err());
    }
}
