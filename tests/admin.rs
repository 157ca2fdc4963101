//! The admin port and the access log, end to end with the real binary: `/healthz`,
//! `/ready`, `/config`, `/metrics` counts after real traffic, a failed reload shown
//! with its line, and access log lines to a file that is rotated with SIGUSR1.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{refused, Backend, Config, Gateway, Reply};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// How long counters and log lines may take to show (the log is flushed every second).
const SETTLE: Duration = Duration::from_secs(4);

/// A backend answering `hello from b` to everything.
fn backend() -> Backend {
    Backend::start(|_| Reply::ok(b"hello from b".to_vec()))
}

/// `/api` → the backend, the mock `/health`.
fn routes(b: &Backend) -> Config {
    Config::new()
        .endpoint("b", &b.url())
        .prefix_to("api", "/api", "{#endpoints['b']}/v1")
        .mock("health", "/health", 200, "ok")
}

/// Starts the gateway with `[admin]` on port 0 and `extra` appended; returns it with
/// the admin address.
fn start(config: &Config, extra: &str) -> (Gateway, SocketAddr) {
    let toml = format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}", config.render());
    let gw = Gateway::start(&toml);
    let admin = gw
        .stdout_line("ringway admin on ", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no admin line; stderr:\n{}", gw.stderr()));
    (gw, admin.trim().parse().expect("admin address"))
}

/// One request to the admin port: (status, body).
fn admin(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read admin response");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    if method != "HEAD" {
        assert_eq!(body.len(), len, "{raw}");
    }
    (status, body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    admin(addr, "GET", path)
}

fn config_json(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = get(addr, "/config");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/config is JSON")
}

/// The value of the sample `name{labels}` in a scrape.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<String> {
    let mut key = name.to_string();
    if !labels.is_empty() {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        key = format!("{key}{{{}}}", l.join(","));
    }
    text.lines()
        .find_map(|line| line.strip_prefix(&key)?.strip_prefix(' ').map(str::to_string))
}

/// A sample's name, labels and value.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

/// Waits (at most [`SETTLE`]) until every `(name, labels, value)` holds in one scrape;
/// panics with the last scrape otherwise.
fn expect_metrics(addr: SocketAddr, want: &[Expected<'_>]) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, 200);
        let wrong: Vec<String> = want
            .iter()
            .filter(|(n, l, v)| sample(&text, n, l).as_deref() != Some(*v))
            .map(|(n, l, v)| format!("{n}{l:?} = {:?}, want {v}", sample(&text, n, l)))
            .collect();
        if wrong.is_empty() {
            return text;
        }
        if Instant::now() > deadline {
            panic!(
                "metrics not as expected:\n{}\n--- scrape:\n{text}",
                wrong.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` until it returns Some (at most [`SETTLE`]).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------
// Endpoints

#[test]
fn healthz_ready_and_unknown_paths() {
    let b = backend();
    let (_gw, a) = start(&routes(&b), "");
    assert_eq!(get(a, "/healthz"), (200, "ok\n".to_string()));
    let (status, body) = get(a, "/ready");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("version 1"), "{body}");
    assert_eq!(get(a, "/healthz?verbose=1").0, 200);
    assert_eq!(get(a, "/nope").0, 404);
    assert_eq!(get(a, "/metrics/x").0, 404);
    assert_eq!(admin(a, "POST", "/healthz").0, 405);
    assert_eq!(admin(a, "HEAD", "/metrics"), (200, String::new()));
}

#[test]
fn metrics_count_requests_by_route_class_and_no_match() {
    let b = backend();
    let (gw, a) = start(&routes(&b), "");
    let mut c = gw.client();
    for i in 0..5 {
        let r = c.get(&format!("/api/item/{i}"));
        assert_eq!(r.status, 200, "{r:?}");
    }
    for _ in 0..2 {
        assert_eq!(c.get("/health").status, 200);
    }
    assert_eq!(c.get("/nothing/here").status, 400);

    let upstream = b.addr.to_string();
    let api: &[(&str, &str)] = &[("group", "it"), ("route", "api")];
    let text = expect_metrics(
        a,
        &[
            (
                "ringway_requests_total",
                &[("group", "it"), ("route", "api"), ("class", "2xx")],
                "5",
            ),
            (
                "ringway_requests_total",
                &[("group", "it"), ("route", "health"), ("class", "2xx")],
                "2",
            ),
            (
                "ringway_route_responses_total",
                &[
                    ("group", "it"),
                    ("route", "api"),
                    ("method", "GET"),
                    ("code", "200"),
                ],
                "5",
            ),
            (
                "ringway_route_responses_total",
                &[
                    ("group", "it"),
                    ("route", "health"),
                    ("method", "GET"),
                    ("code", "200"),
                ],
                "2",
            ),
            ("ringway_response_body_bytes_total", api, "60"),
            ("ringway_request_body_bytes_total", api, "0"),
            (
                "ringway_upstream_info",
                &[("upstream", &upstream), ("endpoint", "b")],
                "1",
            ),
            (
                "ringway_upstream_requests_total",
                &[("upstream", &upstream), ("class", "2xx")],
                "5",
            ),
            (
                "ringway_upstream_response_seconds_count",
                &[("upstream", &upstream)],
                "5",
            ),
            ("ringway_request_duration_seconds_count", api, "5"),
            (
                "ringway_request_duration_seconds_bucket",
                &[("group", "it"), ("route", "api"), ("le", "+Inf")],
                "5",
            ),
            ("ringway_responses_total", &[("class", "2xx")], "7"),
            ("ringway_responses_total", &[("class", "4xx")], "1"),
            ("ringway_responses_total", &[("class", "5xx")], "0"),
            ("ringway_no_match_total", &[], "1"),
            ("ringway_accepted_connections_total", &[], "1"),
            ("ringway_open_connections", &[], "1"),
            (
                "ringway_upstream_idle_connections",
                &[("upstream", &upstream)],
                "1",
            ),
            (
                "ringway_upstream_connect_errors_total",
                &[("upstream", &upstream)],
                "0",
            ),
            ("ringway_upstream_retries_total", &[("upstream", &upstream)], "0"),
            ("ringway_upstream_timeouts_total", &[("upstream", &upstream)], "0"),
            ("ringway_config_reloads_total", &[("result", "ok")], "0"),
            ("ringway_config_reloads_total", &[("result", "failed")], "0"),
            ("ringway_shard_config_version", &[("shard", "0")], "1"),
            ("ringway_config_version", &[], "1"),
            (
                "ringway_build_info",
                &[
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("commit", env!("RINGWAY_COMMIT")),
                    ("profile", "debug"),
                ],
                "1",
            ),
        ],
    );
    // Only classes that occurred are listed per route; the no-match is in no route.
    assert_eq!(
        sample(
            &text,
            "ringway_requests_total",
            &[("group", "it"), ("route", "api"), ("class", "4xx")]
        ),
        None
    );
    for family in [
        "ringway_requests_total counter",
        "ringway_request_duration_seconds histogram",
        "ringway_upstream_idle_connections gauge",
    ] {
        assert!(text.contains(&format!("# TYPE {family}\n")), "{family}:\n{text}");
    }
    // Buckets are cumulative: never decreasing, ending at the count.
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("ringway_request_duration_seconds_bucket{group=\"it\",route=\"api\","))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 20, "{text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&5));

    drop(c);
    expect_metrics(a, &[("ringway_open_connections", &[], "0")]);
}

#[test]
fn upstream_connect_errors_are_counted_per_upstream() {
    let down = refused();
    let (gw, a) = start(
        &Config::new()
            .endpoint("down", &down.url())
            .prefix_to("down", "/down", "{#endpoints['down']}"),
        "",
    );
    let mut c = gw.client();
    for _ in 0..3 {
        assert_eq!(c.get("/down").status, 502);
    }
    let addr = down.addr.to_string();
    expect_metrics(
        a,
        &[
            (
                "ringway_upstream_connect_errors_total",
                &[("upstream", &addr)],
                "3",
            ),
            ("ringway_upstream_idle_connections", &[("upstream", &addr)], "0"),
            (
                "ringway_requests_total",
                &[("group", "it"), ("route", "down"), ("class", "5xx")],
                "3",
            ),
            ("ringway_responses_total", &[("class", "5xx")], "3"),
        ],
    );
}

#[test]
fn config_shows_version_hash_rules_and_shards() {
    let b = backend();
    let (gw, a) = start(&routes(&b), "");
    let v = config_json(a);
    assert_eq!(v["version"], 1);
    let hash = v["hash"].as_str().unwrap();
    assert!(
        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_eq!(v["source"], gw.config_file().display().to_string());
    assert_eq!(v["rules"], 2);
    let g = &v["groups"][0];
    assert_eq!(g["name"], "it");
    assert_eq!(g["routes"][0]["name"], "api");
    assert_eq!(g["routes"][0]["path"]["kind"], "prefix");
    assert_eq!(g["routes"][0]["path"]["text"], "/api");
    assert_eq!(g["routes"][0]["action"]["kind"], "proxy");
    assert_eq!(g["routes"][0]["action"]["to"], "{#endpoints['b']}/v1");
    assert_eq!(g["routes"][1]["name"], "health");
    assert_eq!(g["routes"][1]["path"]["kind"], "exact");
    assert_eq!(g["routes"][1]["action"]["kind"], "mock");
    assert_eq!(g["routes"][1]["action"]["status"], 200);
    // The effective routing (issue 14): what each rule matches on, and the members.
    assert_eq!(g["routes"][0]["hosts"], serde_json::json!([]));
    assert_eq!(g["routes"][0]["methods"], serde_json::json!([]));
    assert_eq!(g["routes"][0]["predicates"], serde_json::json!([]));
    assert_eq!(g["routes"][0]["environments"], serde_json::json!(["online"]));
    assert_eq!(v["endpoints"][0]["name"], "b");
    assert_eq!(v["endpoints"][0]["members"][0]["address"], b.addr.to_string());
    assert!(v["restart_needed"].as_array().is_some_and(|r| r.is_empty()));
    assert_eq!(v["shards"], serde_json::json!([{"shard": 0, "version": 1}]));
    assert!(v["last_reload_error"].is_null());
    assert_eq!(v["reloads"], serde_json::json!({"ok": 0, "failed": 0}));
}

#[test]
fn failed_reload_keeps_serving_and_shows_the_error_with_its_line() {
    let b = backend();
    let (gw, a) = start(&routes(&b), "");
    let file = gw.config_file().to_path_buf();
    let good = std::fs::read_to_string(&file).unwrap();
    let bogus_line = good.lines().count() + 2;
    replace_file(&file, &format!("{good}\n[bogus]\nx = 1\n"));
    gw.signal("HUP");

    let error = eventually("last_reload_error", || {
        config_json(a)["last_reload_error"].as_str().map(str::to_string)
    });
    let at = format!("{}:{bogus_line}:", file.display());
    assert!(
        error.contains(&at) && error.contains("bogus"),
        "{error} (want {at})"
    );
    let v = config_json(a);
    assert_eq!(v["version"], 1);
    // The file watcher may have tried too: at least the SIGHUP failed.
    assert!(v["reloads"]["failed"].as_u64() >= Some(1), "{v}");
    assert_eq!(v["reloads"]["ok"], 0);
    assert_eq!(get(a, "/ready").0, 200);
    assert_eq!(gw.client().get("/api/x").status, 200);

    // A good config clears the error and every shard moves to version 2.
    let next = routes(&b).mock("extra", "/extra", 200, "new").render();
    let next = format!("{next}\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    replace_file(&file, &next);
    gw.signal("HUP");
    eventually("version 2 on every shard", || {
        let v = config_json(a);
        (v["version"] == 2 && v["shards"][0]["version"] == 2).then_some(())
    });
    let v = config_json(a);
    assert!(v["last_reload_error"].is_null(), "{v}");
    assert_eq!(v["reloads"]["ok"], 1);
    assert_eq!(v["rules"], 3);
    assert_eq!(get(a, "/ready").0, 200);
    assert_eq!(gw.client().get("/extra").text(), "new");
    expect_metrics(
        a,
        &[
            ("ringway_config_reloads_total", &[("result", "ok")], "1"),
            ("ringway_shard_config_version", &[("shard", "0")], "2"),
        ],
    );
}

/// Writes `text` beside `path` and renames it over `path`, as editors do: a reload
/// never sees a half-written file.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------
// Access log

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringway-admin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The JSON lines of `path` once it has `n` of them (at most [`SETTLE`]).
fn log_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let text = eventually(&format!("{n} lines in {}", path.display()), || {
        let t = std::fs::read_to_string(path).ok()?;
        (t.lines().count() >= n).then_some(t)
    });
    assert!(text.ends_with('\n'), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), n, "{text}");
    lines
}

#[test]
fn access_log_lines_have_every_field_and_follow_sigusr1_rotation() {
    let b = backend();
    let dir = temp_dir("log");
    let path = dir.join("access.log");
    let (gw, _a) = start(
        &routes(&b),
        &format!("\n[log]\naccess = \"{}\"\n", path.display()),
    );
    let mut c = gw.client();
    let mut sizes = Vec::new();
    for i in 0..3 {
        let r = c.get(&format!("/api/item/{i}?q={i}"));
        assert_eq!(r.status, 200);
        sizes.push(r.body.len() as u64);
    }
    let miss = c.get("/nothing");
    assert_eq!(miss.status, 400);

    let lines = log_lines(&path, 4);
    let mut ids = std::collections::HashSet::new();
    for (i, l) in lines[..3].iter().enumerate() {
        let time = l["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{l}"
        );
        assert!(ids.insert(l["id"].as_str().unwrap().to_string()), "{l}");
        assert_eq!(l["client"], "127.0.0.1");
        assert_eq!(l["method"], "GET");
        assert_eq!(l["path"], format!("/api/item/{i}"));
        assert_eq!(l["query"], format!("q={i}"));
        assert_eq!(l["group"], "it");
        assert_eq!(l["route"], "api");
        assert_eq!(l["upstream"], b.addr.to_string());
        assert_eq!(l["status"], 200);
        assert_eq!(l["bytes"].as_u64(), Some(sizes[i]), "{l}");
        let total = l["duration_us"].as_u64().unwrap();
        let upstream = l["upstream_us"].as_u64().unwrap();
        assert!(upstream <= total, "{l}");
    }
    let m = &lines[3];
    assert_eq!(m["path"], "/nothing");
    assert!(
        m["query"].is_null() && m["group"].is_null() && m["route"].is_null(),
        "{m}"
    );
    assert!(m["upstream"].is_null() && m["upstream_us"].is_null(), "{m}");
    assert_eq!(m["status"], 400);
    assert_eq!(m["bytes"].as_u64(), Some(miss.body.len() as u64));

    // logrotate: rename, then SIGUSR1; the new file appears at the configured path.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    gw.signal("USR1");
    eventually("a reopened access.log", || path.exists().then_some(()));
    for _ in 0..2 {
        assert_eq!(c.get("/health").status, 200);
    }
    let fresh = log_lines(&path, 2);
    assert!(
        fresh.iter().all(|l| l["route"] == "health" && l["bytes"] == 2),
        "{fresh:?}"
    );
    assert_eq!(log_lines(&rotated, 4).len(), 4);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn access_log_to_stdout_writes_whole_json_lines() {
    let b = backend();
    let (gw, _a) = start(&routes(&b), "\n[log]\naccess = \"stdout\"\n");
    let mut c = gw.client();
    assert_eq!(c.get("/health").status, 200);
    assert_eq!(c.get("/api/x").status, 200);
    for route in ["health", "api"] {
        let line = gw
            .stdout_line("{", SETTLE)
            .unwrap_or_else(|| panic!("no access log line for {route}"));
        let v: serde_json::Value = serde_json::from_str(&format!("{{{line}")).unwrap();
        assert_eq!(v["route"], route);
    }
}

/// Issue 14: `/config` shows the whole effective routing — hosts, methods,
/// predicates, context path, environments — with no secret.
#[test]
fn config_shows_the_effective_routing() {
    let b = backend();
    let config = Config::new().endpoint("b", &b.url()).route(
        "name = \"r\"\nmethods = [\"GET\", \"POST\"]\npath = { prefix = \"/orders\" }\nquery = [{ name = \"region\", equals = \"eu\" }]\nheaders = [{ name = \"x-canary\", absent = true }]\nto = \"{#endpoints['b']}/o{#request.pathRest}\"",
    );
    let (_gw, a) = start(&config, "");
    let v = config_json(a);
    let r = &v["groups"][0]["routes"][0];
    assert_eq!(r["methods"], serde_json::json!(["GET", "POST"]));
    assert_eq!(
        r["predicates"],
        serde_json::json!([
            {"source": "query", "name": "region", "equals": "eu"},
            {"source": "header", "name": "x-canary", "absent": true},
        ])
    );
    assert_eq!(r["action"]["to"], "{#endpoints['b']}/o{#request.pathRest}");
}
