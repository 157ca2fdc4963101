//! The command line: `ringway [run]`, `ringway check` and `ringway explain`.
//!
//! [`parse_args`] reads `std::env::args` (printing help or a usage error and exiting
//! when asked to); [`check`] and [`explain`] do their work, print to stdout, and return
//! the process exit code. Their `*_to` forms write to any `Write`, for tests.

use crate::config::{self, Config, ConfigError};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ringway_router::analysis::{analyze, AnalysisLimits, FindingKind};
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
    disable_version_flag = true,
    about = "An HTTP API gateway: thread-per-core, io_uring, compiled routing.",
    long_about = "An HTTP API gateway: thread-per-core, io_uring, compiled routing.\n\n\
        With no command, `ringway` runs the gateway (same as `ringway run`). Without -c it \
        serves the embedded default config: mock routes on 127.0.0.1:8080 that show the \
        rule syntax. docs/configuration.md documents the config file."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
    /// Print the version, the commit and build profile, and the I/O driver this
    /// kernel would give the shards.
    #[arg(short = 'V', long = "version")]
    version: bool,
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
    /// The config file, as nginx users write it: `ringway check FILE`.
    #[arg(value_name = "FILE", conflicts_with = "config")]
    pub file: Option<PathBuf>,
    /// Fail (exit 1) on warnings too (not on notes).
    #[arg(long)]
    pub strict: bool,
    /// Also print the notes: overlaps of specific-before-general rules (the normal
    /// way to write them) and acknowledged shadows.
    #[arg(long)]
    pub notes: bool,
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
    Run {
        config: Option<PathBuf>,
    },
    Check(CheckArgs),
    Explain(ExplainArgs),
    /// `--version`: the binary prints [`version_text`] with the driver it probes.
    Version,
}

/// What `ringway --version` prints, given the driver the shards would use here.
pub fn version_text(driver: &str) -> String {
    format!(
        "ringway {} (commit {}, {} build)\ndriver: {driver}\n",
        env!("CARGO_PKG_VERSION"),
        env!("RINGWAY_COMMIT"),
        env!("RINGWAY_PROFILE")
    )
}

/// Parses the process's arguments; prints help, the version or a usage error and exits
/// when that is what they ask for.
pub fn parse_args() -> Command {
    let cli = Cli::parse();
    command(cli).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the first is the program name).
pub fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).and_then(command)
}

/// The command, with a `-c FILE` written before it (`ringway -c FILE check`, as
/// `nginx -c FILE -t` users do) given to it; the same option both before and after
/// the command is an error.
fn command(cli: Cli) -> Result<Command, clap::Error> {
    if cli.version {
        return Ok(Command::Version);
    }
    let before = cli.run.config;
    let merge = |after: Option<PathBuf>| match (before.clone(), after) {
        (Some(_), Some(_)) => Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "-c/--config is given both before and after the command; give it once\n",
        )),
        (b, a) => Ok(a.or(b)),
    };
    Ok(match cli.command {
        None => Command::Run {
            config: before.clone(),
        },
        Some(Sub::Run(r)) => Command::Run {
            config: merge(r.config)?,
        },
        Some(Sub::Check(mut c)) => {
            let after = c.config.take().or(c.file.take());
            c.config = merge(after)?;
            Command::Check(c)
        }
        Some(Sub::Explain(mut e)) => {
            e.config = merge(e.config.take())?;
            Command::Explain(e)
        }
    })
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

/// One finding about a valid config: a warning (something is likely wrong; fails
/// `--strict`) or a note (for information).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// A note rather than a warning: an overlap, or a shadow the route acknowledges
    /// with `allow_shadow = true`.
    pub note: bool,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// `shadowed`, `overlap`, `unmatchable`, `unpublished` (a versioned group's
    /// route whose versions no environment publishes) or `certificate` (expires
    /// within 30 days, or has expired).
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
        let note = kind == "overlap" || (kind == "shadowed" && route.allow_shadow);
        out.push(Warning {
            note,
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
    out.extend(unpublished_warnings(config, file));
    out.extend(config.notices.iter().map(|n| Warning {
        note: false,
        file: file.to_string(),
        line: n.line,
        column: n.column,
        kind: n.kind,
        message: n.message.clone(),
        group: String::new(),
        route: String::new(),
        witness: String::new(),
        others: Vec::new(),
    }));
    out.extend(certificate_warnings(config, file, now_unix()));
    out
}

/// Routes of versioned groups that no environment publishes: checked, live nowhere.
fn unpublished_warnings(config: &Config, file: &str) -> Vec<Warning> {
    let mut out = Vec::new();
    for r in &config.routes {
        let Some(vs) = config.groups.get(r.group_index).and_then(|g| g.versions.as_ref()) else {
            continue;
        };
        let mine: Vec<usize> = r.versions.clone().unwrap_or_else(|| (0..vs.list.len()).collect());
        if vs.published.iter().any(|(_, v)| mine.contains(v)) {
            continue;
        }
        let names: Vec<&str> = mine
            .iter()
            .filter_map(|&v| vs.list.get(v).map(String::as_str))
            .collect();
        out.push(Warning {
            note: false,
            file: file.to_string(),
            line: r.line,
            column: r.column,
            kind: "unpublished",
            message: format!(
                "route is live in no environment: its version{} {} {} published nowhere",
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" }
            ),
            group: r.group.clone(),
            route: r.name.clone(),
            witness: String::new(),
            others: Vec::new(),
        });
    }
    out
}

/// A certificate that expires within this many days is warned of.
const EXPIRY_WARNING_DAYS: i64 = 30;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Listener certificates that expire within [`EXPIRY_WARNING_DAYS`] of `now`.
fn certificate_warnings(config: &Config, file: &str, now: i64) -> Vec<Warning> {
    let Some(tls) = &config.tls else {
        return Vec::new();
    };
    tls.certificates
        .iter()
        .filter(|c| c.not_after - now < EXPIRY_WARNING_DAYS * 86_400)
        .map(|c| {
            let when = crate::observe::access_log::rfc3339(c.not_after);
            let message = if c.not_after <= now {
                format!("certificate '{}' expired at {when}", c.cert_path.display())
            } else {
                format!(
                    "certificate '{}' expires in {} day(s), at {when}",
                    c.cert_path.display(),
                    (c.not_after - now) / 86_400
                )
            };
            Warning {
                note: false,
                file: file.to_string(),
                line: c.line,
                column: c.column,
                kind: "certificate",
                message,
                group: String::new(),
                route: String::new(),
                witness: String::new(),
                others: Vec::new(),
            }
        })
        .collect()
}

/// `ringway check`: prints to stdout, returns the exit code.
pub fn check(args: CheckArgs) -> i32 {
    check_to(&args, &mut std::io::stdout().lock())
}

/// [`check`], writing to `out`.
pub fn check_to(args: &CheckArgs, out: &mut dyn Write) -> i32 {
    let file = config_name(args.config.as_deref());
    let (errors, all, summary) = match load(args.config.as_deref()) {
        Ok(c) => {
            let w = warnings(&c, &file);
            let notes = w.iter().filter(|w| w.note).count();
            let summary = format!(
                "{file}: ok: {} route(s) in {} environment(s), {} endpoint(s), {} warning(s), {notes} note(s){}",
                c.routes.len(),
                c.router.environments.len(),
                c.endpoints.len(),
                w.len() - notes,
                if notes > 0 && !args.notes && args.format == Format::Human { " (--notes shows them)" } else { "" }
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
    let (notes, warnings): (Vec<Warning>, Vec<Warning>) = all.into_iter().partition(|w| w.note);
    let ok = errors.is_empty() && (!args.strict || warnings.is_empty());
    let written = match args.format {
        Format::Human => {
            let mut s = String::new();
            for e in &errors {
                s += &format!("{e}\n");
            }
            let shown = warnings.iter().chain(notes.iter().filter(|_| args.notes));
            for w in shown {
                let what = if w.note { "note" } else { "warning" };
                s += &format!("{}:{}:{}: {what}: {}", w.file, w.line, w.column, w.message);
                if !w.route.is_empty() {
                    s += &format!(" (group '{}', route '{}')", w.group, w.route);
                }
                s.push('\n');
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
            let finding = |w: &Warning| {
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
            };
            let notes: Vec<Value> = notes.iter().map(finding).collect();
            let warnings: Vec<Value> = warnings.iter().map(finding).collect();
            let v = json!({ "ok": ok, "errors": errors, "warnings": warnings, "notes": notes });
            writeln!(out, "{v}")
        }
    };
    match (written, ok) {
        (Err(_), _) | (_, false) => EXIT_INVALID,
        (Ok(()), true) => EXIT_OK,
    }
}

mod explain;
#[cfg(test)]
mod tests;

pub use explain::{explain, explain_to, explain_value};
