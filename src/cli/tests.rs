use super::explain::{parse_request, CliRequest};
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
    let Ok(Command::Check(c)) = parse_from(["ringway", "check", "-c", "a", "--strict", "--format", "json"])
    else {
        panic!()
    };
    assert!(c.strict && c.format == Format::Json);
    let Ok(Command::Explain(e)) = parse_from([
        "ringway", "explain", "-c", "a", "--env", "test", "-H", "x: 1", "-H", "y: 2", "--format", "human",
        "GET", "/x",
    ]) else {
        panic!()
    };
    assert_eq!(e.headers, ["x: 1", "y: 2"]);
    assert_eq!((e.method.as_str(), e.url.as_str()), ("GET", "/x"));
    assert_eq!(e.env.as_deref(), Some("test"));
    assert!(parse_from(["ringway", "explain", "GET"]).is_err());
    // Issue 14's CLI habits: `check FILE` (nginx users) and `-c FILE check`.
    for args in [
        &["ringway", "check", "a.toml"][..],
        &["ringway", "-c", "a.toml", "check"],
        &["ringway", "check", "--config", "a.toml"],
    ] {
        let Ok(Command::Check(c)) = parse_from(args) else {
            panic!("{args:?}")
        };
        assert_eq!(c.config, Some(PathBuf::from("a.toml")), "{args:?}");
    }
    let Ok(Command::Explain(e)) = parse_from(["ringway", "-c", "b.toml", "explain", "GET", "/"]) else {
        panic!()
    };
    assert_eq!(e.config, Some(PathBuf::from("b.toml")));
    assert!(
        parse_from(["ringway", "-c", "a", "check", "-c", "b"]).is_err(),
        "given twice"
    );
    assert!(
        parse_from(["ringway", "check", "a", "-c", "b"]).is_err(),
        "a file and -c"
    );
    assert!(matches!(
        parse_from(["ringway", "--version"]),
        Ok(Command::Version)
    ));
    assert!(matches!(parse_from(["ringway", "-V"]), Ok(Command::Version)));
    let v = version_text("io_uring");
    assert!(
        v.starts_with(&format!("ringway {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains(" build)\ndriver: io_uring"), "{v}");
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
    // The rate limits that would count it, in the order they are tried.
    assert_eq!(
        v["limits"],
        json!([
            {"name": "stores-total", "by": "all", "rate": 100, "unit": "second", "burst": 20},
            {"name": "per-client", "by": "client_ip", "rate": 10, "unit": "second", "burst": 10}
        ])
    );
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

#[test]
fn check_warns_of_versions_published_nowhere() {
    let path = write_temp(
        "unpublished.toml",
        r#"
[[groups]]
name = "stores"
versions = ["1", "2", "3"]
publish = { online = "1" }
[[groups.routes]]
name = "live"
path = { exact = "/a" }
mock = { body = "a" }
[[groups.routes]]
name = "draft"
versions = ["2", "3"]
path = { exact = "/b" }
mock = { body = "b" }
"#,
    );
    let (code, out) = run_check(&path, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            ":11:8: warning: route is live in no environment: its versions 2, 3 are published nowhere"
        ),
        "{out}"
    );
    assert!(
        !out.contains("'live'") && out.matches("warning:").count() == 1,
        "{out}"
    );
    let (code, _) = run_check(&path, &["--strict"]);
    assert_eq!(code, 1, "--strict fails on it");
}

/// Issue 14: specific-before-general overlap is how rules are written, so it is a
/// note (shown with `--notes`), never a `--strict` failure; a shadow the route
/// acknowledges (`allow_shadow = true`) is a note too. Every shipped example passes
/// `--strict`.
#[test]
fn overlaps_are_notes_and_shipped_examples_pass_strict() {
    for name in [
        "default.toml",
        "example.toml",
        "stores.toml",
        "jdcloud-dynamic.toml",
        "mock-backend.toml",
    ] {
        let (code, out) = run_check(&config_path(name), &["--strict"]);
        assert_eq!(code, 0, "{name} fails --strict:\n{out}");
    }
    let (code, out) = run_check(&config_path("example.toml"), &[]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("overlaps"),
        "notes are not shown without --notes: {out}"
    );
    assert!(
        out.contains("0 warning(s), 1 note(s) (--notes shows them)"),
        "{out}"
    );
    let (_, out) = run_check(&config_path("example.toml"), &["--notes"]);
    assert!(
        out.contains(": note: route overlaps the earlier stores/store-info"),
        "{out}"
    );
    let (_, out) = run_check(&config_path("example.toml"), &["--format", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["warnings"], json!([]));
    assert_eq!(v["notes"][0]["kind"], json!("overlap"));

    let p = write_temp(
        "ack.toml",
        "[[groups]]\nname = \"g\"\n  [[groups.routes]]\n  name = \"api\"\n  path = { prefix = \"/api\" }\n  mock = {}\n\n  [[groups.routes]]\n  name = \"users\"\n  allow_shadow = true\n  path = { exact = \"/api/users\" }\n  mock = {}\n",
    );
    let (code, out) = run_check(&p, &["--strict", "--notes"]);
    assert_eq!(code, 0, "an acknowledged shadow passes --strict: {out}");
    assert!(out.contains(": note: route never wins"), "{out}");
}
