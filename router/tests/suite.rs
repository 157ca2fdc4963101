//! Router semantics as data: every `tests/data/*.toml` file holds rules and the
//! requests that must route (or fail) a given way. A routing bug becomes one case.
//!
//! Each file is run twice: with the default limits (dense path automata) and with the
//! smallest automaton limit (from [`LAZY_LIMITS`]) the file still builds with, which
//! pushes its larger regex partitions onto the lazy DFA, so both engines answer the
//! same questions. Build errors are cases too (`[[build_errors]]`).

mod common;

use common::{site_string, RouterToml, RuleToml};
use ringway_router::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Automaton limits tried in turn for the lazy run. The limit bounds a partition's NFA
/// as well as its dense DFA, so no single value makes every partition lazy: the first
/// limit that builds is used; a tiny partition may stay dense (its DFA is smaller than
/// its NFA). Whole-segment rules stay in the segment trie under any limit (unless a
/// class segment's DFA exceeds it), so only the files with general regexes go lazy.
const LAZY_LIMITS: [usize; 12] = [400, 500, 600, 700, 800, 900, 1000, 1200, 1500, 2000, 3000, 6000];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    router: RouterToml,
    #[serde(default)]
    rules: Vec<RuleToml>,
    #[serde(default)]
    cases: Vec<Case>,
    #[serde(default)]
    build_errors: Vec<BuildErrorCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "default_method")]
    method: String,
    host: Option<String>,
    /// Path, optionally with `?query`.
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// Environment name; default: environment 0.
    env: Option<String>,
    /// `group/name` of the winner, or `none`. Required unless `error` is given.
    winner: Option<String>,
    /// Every capture group of the winner, in order; a group that did not participate
    /// is written `""` and listed in `unset`.
    captures: Option<Vec<String>>,
    #[serde(default)]
    unset: Vec<usize>,
    /// The rendered target path and query.
    target: Option<String>,
    /// `http://authority`, `https://authority`, `endpoint:name`, or `local`.
    origin: Option<String>,
    /// `invalid_percent_encoding`, `encoded_slash`, `not_absolute`, `backslash`,
    /// `semicolon` or `encoded_control`.
    error: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildErrorCase {
    name: String,
    #[serde(default)]
    router: RouterToml,
    rules: Vec<RuleToml>,
    /// Index of the rule to blame; absent = none.
    rule_index: Option<usize>,
    /// See [`site_string`].
    site: String,
    #[serde(default)]
    size_limit: bool,
    /// A fragment the message must contain.
    message: Option<String>,
}

fn data_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected the data files in {}", dir.display());
    files
}

fn load(path: &Path) -> File {
    let text = std::fs::read_to_string(path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn path_error_name(e: PathError) -> &'static str {
    match e {
        PathError::InvalidPercentEncoding => "invalid_percent_encoding",
        PathError::EncodedSlash => "encoded_slash",
        PathError::NotAbsolute => "not_absolute",
        PathError::Backslash => "backslash",
        PathError::Semicolon => "semicolon",
        PathError::EncodedControl => "encoded_control",
    }
}

fn origin_string(router: &CompiledRouter, o: Option<&Origin>) -> String {
    match o {
        None => "local".into(),
        Some(Origin::Endpoint(id)) => format!("endpoint:{}", router.endpoints()[id.0 as usize]),
        Some(Origin::Url { tls, authority }) => {
            format!("{}://{authority}", if *tls { "https" } else { "http" })
        }
    }
}

/// Runs one case; returns a description of every mismatch.
fn run_case(router: &CompiledRouter, c: &Case, s: &mut MatchScratch) -> Vec<String> {
    let mut errs = Vec::new();
    let (path, query) = match c.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (c.path.as_str(), None),
    };
    let env = match &c.env {
        Some(e) => router
            .env_id(e)
            .unwrap_or_else(|| panic!("case '{}': unknown env {e}", c.name)),
        None => EnvId(0),
    };
    let req = RequestView {
        method: c.method.as_bytes(),
        host: c.host.as_deref().map(str::as_bytes),
        path: path.as_bytes(),
        query: query.map(str::as_bytes),
        env,
    };
    let headers = c.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    let got = router.match_request(&req, headers, s);
    let route = match (got, &c.error) {
        (Err(e), Some(want)) => {
            if path_error_name(e) != want {
                errs.push(format!("path error {e:?}, want {want}"));
            }
            return errs;
        }
        (Err(e), None) => {
            errs.push(format!("unexpected path error {e:?}"));
            return errs;
        }
        (Ok(r), Some(want)) => {
            errs.push(format!("matched {r:?}, want path error {want}"));
            return errs;
        }
        (Ok(r), None) => r,
    };
    let want = c
        .winner
        .as_deref()
        .unwrap_or_else(|| panic!("case '{}': `winner` or `error` is required", c.name));
    let got_name = route.map_or("none".to_string(), |r| {
        let (g, n) = router.route_name(r);
        format!("{g}/{n}")
    });
    if got_name != want {
        errs.push(format!("winner {got_name}, want {want}"));
        return errs;
    }
    let Some(route) = route else {
        assert!(
            c.captures.is_none() && c.target.is_none() && c.origin.is_none(),
            "case '{}': no winner, so nothing else to check",
            c.name
        );
        return errs;
    };
    if let Some(caps) = &c.captures {
        let got: Vec<Option<String>> = (0..s.group_count())
            .map(|i| s.group(i).map(|g| String::from_utf8_lossy(g).into_owned()))
            .collect();
        let want: Vec<Option<String>> = caps
            .iter()
            .enumerate()
            .map(|(i, v)| (!c.unset.contains(&i)).then(|| v.clone()))
            .collect();
        if got != want {
            errs.push(format!("captures {got:?}, want {want:?}"));
        }
    }
    let mut out = Vec::new();
    let origin = router.render_target(route, s, query.map(str::as_bytes), &mut out);
    let got_origin = origin_string(router, origin);
    if let Some(want) = &c.origin {
        if &got_origin != want {
            errs.push(format!("origin {got_origin}, want {want}"));
        }
    }
    if let Some(want) = &c.target {
        let got = String::from_utf8_lossy(&out);
        if got != *want {
            errs.push(format!("target {got}, want {want}"));
        }
    }
    errs
}

/// Runs one file: (cases run, failures, lazy partitions of the router).
fn run_file(path: &Path, lazy: bool) -> (usize, Vec<String>, usize) {
    let f = load(path);
    let mut failures = Vec::new();
    let mut count = 0;
    let mut lazy_partitions = 0;
    if !f.rules.is_empty() || !f.cases.is_empty() {
        let mut spec = f.router.to_spec(&f.rules);
        let router = if lazy {
            let router = LAZY_LIMITS
                .iter()
                .find_map(|&limit| {
                    spec.limits.max_automaton_bytes = limit;
                    CompiledRouter::build(&spec).ok()
                })
                .unwrap_or_else(|| panic!("{}: no lazy limit builds", path.display()));
            lazy_partitions = router.stats().lazy_partitions;
            router
        } else {
            CompiledRouter::build(&spec).unwrap_or_else(|e| panic!("{}: build: {e}", path.display()))
        };
        let mut s = MatchScratch::default();
        for c in &f.cases {
            count += 1;
            // Twice with the same scratch: state left over from a request must not leak.
            for round in 0..2 {
                for e in run_case(&router, c, &mut s) {
                    failures.push(format!(
                        "{} [{}] (lazy={lazy}, round {round}): {e}",
                        path.display(),
                        c.name
                    ));
                }
            }
        }
    }
    for b in &f.build_errors {
        count += 1;
        let spec = b.router.to_spec(&b.rules);
        let name = format!("{} [{}]", path.display(), b.name);
        match CompiledRouter::build(&spec) {
            Ok(_) => failures.push(format!("{name}: built, want an error")),
            Err(e) => {
                if e.rule_index() != b.rule_index {
                    failures.push(format!(
                        "{name}: rule_index {:?}, want {:?} ({e})",
                        e.rule_index(),
                        b.rule_index
                    ));
                }
                if site_string(e.site()) != b.site {
                    failures.push(format!(
                        "{name}: site {}, want {} ({e})",
                        site_string(e.site()),
                        b.site
                    ));
                }
                if e.is_size_limit_exceeded() != b.size_limit {
                    failures.push(format!("{name}: size_limit {}", e.is_size_limit_exceeded()));
                }
                if let Some(m) = &b.message {
                    if !e.to_string().contains(m.as_str()) {
                        failures.push(format!("{name}: message '{e}' lacks '{m}'"));
                    }
                }
            }
        }
    }
    (count, failures, lazy_partitions)
}

#[test]
fn data_suite_with_dense_automata() {
    let mut failures = Vec::new();
    let mut total = 0;
    for f in data_files() {
        let (n, errs, _) = run_file(&f, false);
        assert!(n > 0, "{}: no cases", f.display());
        total += n;
        failures.extend(errs);
    }
    assert!(total >= 100, "only {total} cases");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn data_suite_with_lazy_automata() {
    let mut failures = Vec::new();
    let mut with_lazy = 0;
    for f in data_files() {
        let (_, errs, lazy) = run_file(&f, true);
        failures.extend(errs);
        with_lazy += usize::from(lazy > 0);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // Most rules of most files are whole-segment patterns, matched by the segment trie
    // under any limit; the files with general regexes must get lazy partitions.
    assert!(with_lazy >= 2, "only {with_lazy} files got lazy partitions");
}

/// The suite must catch a wrong expectation: flip one case's winner and see it fail.
#[test]
fn suite_reports_a_wrong_winner() {
    let f = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gravitee.toml"));
    let router = CompiledRouter::build(&f.router.to_spec(&f.rules)).unwrap();
    let mut c = f.cases.into_iter().find(|c| c.winner.is_some()).unwrap();
    c.winner = Some("nope/nope".into());
    let errs = run_case(&router, &c, &mut MatchScratch::default());
    assert_eq!(errs.len(), 1, "{errs:?}");
}
