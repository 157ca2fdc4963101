use super::error::{line_col, offset_in_string};
use super::*;
use ringway_router::{ActionSpec, EncodedSlash, PathSpec};

fn load(text: &str) -> Config {
    match parse(text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected the config to load:\n{e}"),
    }
}

fn fail(text: &str) -> ConfigError {
    match parse(text, "t.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// (line, column) of the `nth` occurrence of `needle` in `text`, plus `extra` bytes.
fn pos(text: &str, needle: &str, nth: usize, extra: usize) -> (usize, usize) {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
        .0;
    line_col(text, at + extra)
}

fn assert_at(e: &ConfigError, expected: (usize, usize), message_part: &str) {
    assert_eq!((e.line(), e.column()), expected, "wrong position for: {e}");
    assert!(
        e.message().contains(message_part),
        "message {:?} lacks {message_part:?}",
        e.message()
    );
}

const ROUTE_HEAD: &str = r#"
[endpoints]
backend = "http://127.0.0.1:9001"

[[groups]]
name = "g"

  [[groups.routes]]
  name = "r"
"#;

#[test]
fn issue_3_example_is_accepted_as_written() {
    let text = include_str!("../../config/example.toml");
    assert!(text.contains("lb = \"round_robin\"               # also:"));
    let c = load(text);
    assert_eq!(c.server.listen, ["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.server.stage_header.as_deref(), Some("x-ringway-stage"));
    assert_eq!(c.server.no_match_status, 400);
    assert_eq!(c.limits.max_header_bytes, 65536);
    assert_eq!(c.limits.client_header_timeout, Duration::from_secs(10));
    assert_eq!(c.upstream.response_timeout, Duration::from_secs(30));
    let names: Vec<_> = c.endpoints.iter().map(EndpointDef::name).collect();
    assert_eq!(names, ["store12", "store45", "default"]);
    assert_eq!(c.router.endpoints, names);
    match &c.endpoints[2] {
        EndpointDef::Group { lb, members, .. } => {
            assert_eq!(*lb, Lb::RoundRobin);
            assert_eq!(members.len(), 2);
            assert_eq!(members[1].0.addr, "127.0.0.1:9002".parse().unwrap());
            assert_eq!(members[1].1, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.router.environments, ["online", "test"]);
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.router.rules.len(), 3);
    let r = &c.router.rules[0];
    assert_eq!((r.group.as_str(), r.name.as_str()), ("stores", "store-info"));
    assert_eq!(r.context_path.as_deref(), Some("/store"));
    assert_eq!(r.predicates.len(), 2);
    assert_eq!(r.path, PathSpec::Regex("/v1/stores/(?<id>[0-9]+)/(.*)".into()));
    let health = &c.routes[2];
    assert_eq!(
        health.mock,
        Some(MockResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"ok\n".to_vec()
        })
    );
    assert_eq!(c.router.rules[2].action, ActionSpec::Local);
    assert!(c.literal_origins.is_empty());
}

#[test]
fn every_shipped_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.routes.is_empty(), "{}", path.display());
            assert_eq!(c.source.hash(), fnv1a(&std::fs::read(&path).unwrap()));
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} configs in {}", dir.display());
}

#[test]
fn embedded_default_loads() {
    let c = load_default().unwrap();
    assert_eq!(c.server.listen, ["127.0.0.1:8080".parse().unwrap()]);
    assert!(matches!(c.source, ConfigSource::Embedded { .. }));
    assert!(c.routes.iter().all(|r| r.mock.is_some()));
    assert!(c.endpoints.is_empty());
}

#[test]
fn empty_file_gives_the_defaults() {
    let c = load("");
    let s = &c.server;
    assert_eq!(s.listen, ["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(
        (s.shards, s.environment.as_str(), s.stage_header.clone()),
        (0, "online", None)
    );
    assert_eq!(s.no_match_status, 400);
    assert!(!s.keep_client_host);
    assert_eq!(s.drain_timeout, Duration::from_secs(30));
    assert_eq!(
        c.limits,
        LimitsConfig {
            max_header_bytes: 65536,
            max_headers: 100,
            max_body_bytes: 10 << 20,
            client_header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            client_body_min_rate: 1024,
        }
    );
    assert_eq!(
        c.upstream,
        UpstreamConfig {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
            max_idle_per_endpoint: 64,
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            upgrade_idle_timeout: Duration::from_secs(3600),
            upgrade_half_closed_timeout: Duration::from_secs(30),
            splice_min_bytes: DEFAULT_SPLICE_MIN_BYTES,
            max_response_header_bytes: 65536,
            max_response_headers: 100,
        }
    );
    assert!(c.admin.is_none());
    assert_eq!(c.router.environments, ["online"]);
    assert_eq!(c.router.normalize, ringway_router::NormalizeOptions::default());
}

#[test]
fn durations_and_options() {
    let c = load(
        r#"
[server]
listen = "0.0.0.0:80"
drain_timeout = "2m"
keep_client_host = true
normalize = { merge_slashes = false, encoded_slash = "keep" }
[limits]
client_header_timeout = "250ms"
[admin]
listen = "127.0.0.1:9901"
"#,
    );
    assert_eq!(c.server.listen, ["0.0.0.0:80".parse().unwrap()]);
    assert_eq!(c.server.drain_timeout, Duration::from_secs(120));
    assert_eq!(c.limits.client_header_timeout, Duration::from_millis(250));
    assert!(c.server.keep_client_host);
    assert!(!c.router.normalize.merge_slashes);
    assert_eq!(c.router.normalize.encoded_slash, EncodedSlash::Keep);
    assert_eq!(c.admin.unwrap().listen, "127.0.0.1:9901".parse().unwrap());

    let text = "[upstream]\nconnect_timeout = \"2\"\n";
    assert_at(&fail(text), (2, 19), "connect_timeout: invalid duration '2'");
    let text = "[upstream]\nidle_timeout = \"1h\"\n";
    assert_at(&fail(text), (2, 16), "invalid duration");
    let text = "[limits]\nclient_header_timeout = \"0s\"\n";
    assert_at(&fail(text), (2, 25), "more than 0");
    let text = "[upstream]\nconnect_timeout = 2\n";
    let e = fail(text);
    assert!(e.is_syntax());
    assert_eq!(e.line(), 2);
}

#[test]
fn unknown_keys_are_errors_with_line_and_column() {
    let text = "[server]\nlisten = [\"127.0.0.1:8080\"]\nlisen = 1\n";
    let e = fail(text);
    assert!(e.is_syntax());
    assert_at(&e, (3, 1), "unknown field `lisen`");
    assert!(e.to_string().starts_with("t.toml:3:1: "), "{e}");

    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  to = \"{{#endpoints['backend']}}\"\n  timeout = \"1s\"\n");
    let e = fail(&text);
    assert_eq!(e.line(), pos(&text, "timeout", 0, 0).0, "{e}");
    assert!(e.message().contains("timeout"), "{e}");

    let e = fail("[serve]\nlisten = 1\n");
    assert_at(&e, (1, 2), "unknown field `serve`");
    let e = fail("[server]\nlisten = [\"127.0.0.1:8080\"\n");
    assert!(e.is_syntax() && e.line() >= 2, "{e}");
}

#[test]
fn invalid_regex_points_inside_the_pattern() {
    let text = format!(
        "{ROUTE_HEAD}  path = {{ regex = \"/v1/(?<id>[0-9]+/x\" }}\n  to = \"{{#endpoints['backend']}}\"\n"
    );
    let e = fail(&text);
    let (line, col) = pos(&text, "\"/v1/(?<id>", 0, 1);
    assert_eq!(e.line(), line, "{e}");
    assert!(e.column() >= col, "{e}");
    assert!(e.message().contains("invalid path regex"), "{e}");
    assert!(e.to_string().ends_with("(group 'g', route 'r')"), "{e}");
    // The offset the router reports lands on the same character in the file.
    let inner = "/v1/(?<id>[0-9]+/x";
    let d = e.column() - col;
    assert!(d <= inner.len(), "{e}");

    // Escapes in a basic string are walked: `\\d` is one byte in the pattern per char.
    let text =
        format!("{ROUTE_HEAD}  path = {{ regex = \"/a/\\\\d+/(\" }}\n  to = \"{{#endpoints['backend']}}\"\n");
    let e = fail(&text);
    assert_eq!(e.line(), pos(&text, "regex", 0, 0).0, "{e}");
}

#[test]
fn predicate_regex_errors_point_at_the_predicate() {
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  query = [{{ name = \"a\", equals = \"1\" }}]\n  headers = [{{ name = \"x\", regex = 'ab(' }}]\n  to = \"{{#endpoints['backend']}}\"\n");
    let e = fail(&text);
    let (line, col) = pos(&text, "'ab('", 0, 0);
    assert_eq!(e.line(), line, "{e}");
    assert!(e.column() > col, "{e}");
    assert_eq!(e.diagnostics()[0].route(), Some("r"));
}

#[test]
fn template_errors_point_at_to() {
    let text = format!(
        "{ROUTE_HEAD}  path = {{ regex = \"/(.*)\" }}\n  to = \"{{#endpoints['backend']}}/{{#group[1]}}\"\n"
    );
    let e = fail(&text);
    assert_at(&e, pos(&text, "\"{#endpoints", 0, 0), "out of range");
    let text = format!("{ROUTE_HEAD}  path = {{ regex = \"/(.*)\" }}\n  to = \"{{#endpoints['nope']}}/\"\n");
    assert_at(
        &fail(&text),
        pos(&text, "\"{#endpoints", 0, 0),
        "no endpoint or endpoint group named 'nope'",
    );
    let text = format!("{ROUTE_HEAD}  path = {{ regex = \"/(?<id>.*)\" }}\n  to = \"{{#endpoints['backend']}}/{{#groupName['x']}}\"\n");
    assert_at(
        &fail(&text),
        pos(&text, "\"{#endpoints", 0, 0),
        "no group named 'x'",
    );
}

#[test]
fn too_many_predicates_points_at_the_21st() {
    let mut text = format!(
        "{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  to = \"{{#endpoints['backend']}}\"\n  query = [\n"
    );
    for i in 0..12 {
        text += &format!("    {{ name = \"q{i}\", present = true }},\n");
    }
    text += "  ]\n  headers = [\n";
    for i in 0..10 {
        text += &format!("    {{ name = \"h{i}\", present = true }},\n");
    }
    text += "  ]\n";
    let e = fail(&text);
    assert_at(&e, pos(&text, "{ name = \"h8\"", 0, 0), "at most 20");
}

#[test]
fn duplicate_names_point_at_the_second() {
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/a\" }}\n  mock = {{}}\n\n  [[groups.routes]]\n  name = \"r\"\n  path = {{ exact = \"/b\" }}\n  mock = {{}}\n");
    let e = fail(&text);
    assert_at(&e, pos(&text, "\"r\"", 1, 0), "duplicate");
    let text = "[[groups]]\nname = \"g\"\n[[groups]]\nname = \"g\"\n";
    assert_at(&fail(text), (4, 8), "duplicate group name");
    let text = "[endpoints]\na = \"http://127.0.0.1:1\"\n[endpoint_groups.a]\nendpoints = [\"http://127.0.0.1:2\"]\n";
    assert_eq!(fail(text).line(), 3);
}

#[test]
fn route_shape_errors() {
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n");
    assert_at(&fail(&text), pos(&text, "\"r\"", 0, 0), "either `to`");
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  to = \"http://127.0.0.1:1\"\n  mock = {{ status = 200 }}\n");
    assert_at(&fail(&text), pos(&text, "{ status", 0, 0), "not both");
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  query = [{{ name = \"a\", equals = \"1\", prefix = \"x\" }}]\n  mock = {{}}\n");
    assert_at(&fail(&text), pos(&text, "{ name = \"a\"", 0, 0), "exactly one of");
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  headers = [{{ name = \"a\", present = false }}]\n  mock = {{}}\n");
    assert_at(&fail(&text), pos(&text, "false", 0, 0), "present = true");
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  mock = {{ status = 99 }}\n");
    assert_at(&fail(&text), pos(&text, "99", 0, 0), "not a final HTTP status");
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"x\" }}\n  mock = {{}}\n");
    assert_at(&fail(&text), pos(&text, "\"x\"", 0, 0), "must start with '/'");
    let text =
        format!("{ROUTE_HEAD}  methods = [\"GET\", \"get\"]\n  path = {{ exact = \"/\" }}\n  mock = {{}}\n");
    assert_at(&fail(&text), pos(&text, "\"get\"", 0, 0), "case-sensitive");
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\", prefix = \"/\" }}\n  mock = {{}}\n");
    assert_at(
        &fail(&text),
        pos(&text, "{ exact", 0, 0),
        "exactly one of exact, prefix or regex",
    );
    let text = format!("{ROUTE_HEAD}  path = \"/x\"\n  mock = {{}}\n");
    let e = fail(&text);
    assert!(e.is_syntax(), "{e}");
    assert!(e.message().contains("{ exact = \"/p\" }"), "{e}");
    assert!(e.to_string().ends_with("(group 'g', route 'r')"), "{e}");
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  mock = {{ bdy = \"x\" }}\n");
    let e = fail(&text);
    assert_eq!(e.diagnostics()[0].route(), Some("r"), "{e}");
}

#[test]
fn group_level_errors_point_at_the_group() {
    let text = "[[groups]]\nname = \"g\"\nhosts = [\"ok.example\", \"bad host\"]\n  [[groups.routes]]\n  name = \"r\"\n  path = { exact = \"/\" }\n  mock = {}\n";
    assert_at(&fail(text), pos(text, "\"bad host\"", 0, 0), "invalid host");
    let text = "[[groups]]\nname = \"g\"\ncontext_path = \"store\"\n  [[groups.routes]]\n  name = \"r\"\n  path = { exact = \"/\" }\n  mock = {}\n";
    assert_at(&fail(text), pos(text, "\"store\"", 0, 0), "context path");
}

#[test]
fn endpoint_errors() {
    // https endpoints: the string and the table form of the issue's contract.
    let text = "[endpoints]\nbilling = \"https://127.0.0.1:8443\"\nledger = { url = \"https://127.0.0.1:9443\", sni = \"ledger.internal\", insecure_skip_verify = true }\n";
    let c = load(text);
    let tls = |i: usize| match &c.endpoints[i] {
        EndpointDef::Single { upstream, .. } => upstream.tls.clone().expect("https is TLS"),
        other => panic!("{other:?}"),
    };
    assert_eq!(&*tls(0).id, "sni=127.0.0.1");
    assert!(tls(0).verify);
    assert_eq!(&*tls(1).id, "sni=ledger.internal;insecure");
    assert!(!tls(1).verify);
    let text = "[endpoints]\na = { url = \"https://127.0.0.1\", ca = \"/nonexistent/ca.pem\" }\n";
    assert_at(&fail(text), (2, 5), "cannot read '/nonexistent/ca.pem'");
    let text = "[endpoints]\na = { url = \"http://127.0.0.1\", sni = \"x\" }\n";
    assert_at(&fail(text), (2, 5), "'sni' applies to https:// endpoints only");
    let text = "[endpoints]\na = { url = \"https://127.0.0.1\", client_cert = \"c.pem\" }\n";
    assert_at(&fail(text), (2, 5), "client_cert and client_key go together");
    let text = "[endpoints]\na = \"127.0.0.1:80\"\n";
    assert_at(&fail(text), (2, 5), "must start with http://");
    let text = "[endpoint_groups.g]\nendpoints = [{ url = \"http://127.0.0.1:1\", weight = 2 }]\n";
    assert_at(&fail(text), (2, 14), "weights only apply");
    let text = "[endpoint_groups.g]\nendpoints = []\n";
    assert_at(&fail(text), (2, 13), "no endpoints");
    let text = "[endpoint_groups.g]\nendpoints = [{ url = \"http://127.0.0.1:1\", weight = 3 }, \"http://127.0.0.1:2\"]\nlb = \"weighted\"\n";
    let c = load(text);
    match &c.endpoints[0] {
        EndpointDef::Group { lb, members, .. } => {
            assert_eq!(*lb, Lb::Weighted);
            assert_eq!(members.iter().map(|m| m.1).collect::<Vec<_>>(), [3, 1]);
        }
        other => panic!("{other:?}"),
    }
    let text = "[endpoint_groups.g]\nendpoints = [\"http://127.0.0.1:1\"]\nlb = \"random\"\n";
    assert!(fail(text).is_syntax());
}

#[test]
fn literal_origins_are_resolved_http_and_https() {
    let text = format!("{ROUTE_HEAD}  path = {{ regex = \"/(.*)\" }}\n  to = \"http://localhost:9100/x/{{#group[0]}}\"\n\n  [[groups.routes]]\n  name = \"r2\"\n  path = {{ exact = \"/b\" }}\n  to = \"http://localhost:9100/b\"\n");
    let c = load(&text);
    assert_eq!(c.literal_origins.len(), 1);
    assert_eq!(c.literal_origins[0].authority, "localhost:9100");
    assert!(c.literal_origins[0].addr.ip().is_loopback());
    // The same authority over http and https: two upstreams.
    let text = format!("{ROUTE_HEAD}  path = {{ exact = \"/\" }}\n  to = \"https://127.0.0.1:9100/\"\n\n  [[groups.routes]]\n  name = \"r2\"\n  path = {{ exact = \"/b\" }}\n  to = \"http://127.0.0.1:9100/b\"\n");
    let c = load(&text);
    assert_eq!(c.literal_origins.len(), 2);
    assert!(c.literal_origins[0].tls.as_ref().is_some_and(|t| t.verify));
    assert!(c.literal_origins[1].tls.is_none());
}

#[test]
fn environments_are_the_union_with_the_default_first() {
    let text = "[server]\nenvironment = \"prod\"\n[[groups]]\nname = \"a\"\nenvironments = [\"test\", \"prod\"]\n[[groups]]\nname = \"b\"\n  [[groups.routes]]\n  name = \"r\"\n  environments = [\"pre-release\"]\n  path = { exact = \"/\" }\n  mock = {}\n";
    let c = load(text);
    assert_eq!(c.router.environments, ["prod", "test", "pre-release"]);
    assert_eq!(
        c.router.rules[0].environments,
        Some(vec!["pre-release".to_string()])
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let text = format!(
        "[upstream]\nconnect_timeout = \"fast\"\n{ROUTE_HEAD}  path = {{ regex = \"(\" }}\n  mock = {{}}\n\n  [[groups.routes]]\n  name = \"r2\"\n  path = {{ exact = \"/\" }}\n  to = \"{{#endpoints['nope']}}\"\n"
    );
    let e = fail(&text);
    assert_eq!(e.diagnostics().len(), 3, "{e}");
    let lines: Vec<_> = e.to_string().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].starts_with("t.toml:2:19: upstream.connect_timeout"),
        "{e}"
    );
    assert!(lines[1].contains("(group 'g', route 'r')"), "{e}");
    assert!(lines[2].contains("(group 'g', route 'r2')"), "{e}");
}

#[test]
fn unreadable_file() {
    let e = load_file(Path::new("/nonexistent/ringway.toml")).unwrap_err();
    assert!(e.is_io());
    assert_eq!(e.line(), 0);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/ringway.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn no_panic_on_any_prefix_or_mutation_of_a_config() {
    let text = include_str!("../../config/example.toml");
    for end in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
        let _ = parse(&text[..end], "t.toml");
    }
    let bytes = text.as_bytes();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut b = bytes.to_vec();
        let i = (seed % b.len() as u64) as usize;
        b[i] = b"{}[]\"'=,\\(?*#.0x \n"[(seed >> 32) as usize % 18];
        if let Ok(s) = std::str::from_utf8(&b) {
            let _ = parse(s, "t.toml");
        }
    }
}

#[test]
fn positions_helpers() {
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("é\nx", 1), (1, 1));
    assert_eq!(line_col("é\nx", 2), (1, 2));
    // The indexed form agrees with the scan at every offset.
    let text = "a\nbé\n\nxyz\n";
    let d = super::error::Diagnostics::new("f", text);
    for at in 0..=text.len() + 1 {
        assert_eq!(d.line_col(at), line_col(text, at), "offset {at}");
    }
    let text = r#"x = "a\\b(""#;
    let span = 4..text.len();
    // The pattern is `a\b(`: byte 3 is `(`, at file byte 4 + 1 + 4.
    assert_eq!(offset_in_string(text, &span, 3), 9);
    let text = "x = 'a\\b('";
    assert_eq!(offset_in_string(text, &(4..text.len()), 3), 8);
}

#[test]
fn access_log_is_off_stdout_or_an_absolute_file() {
    assert_eq!(load("").log.access, AccessLogTarget::Off);
    assert_eq!(load("[log]\naccess = \"off\"\n").log.access, AccessLogTarget::Off);
    assert_eq!(
        load("[log]\naccess = \"stdout\"\n").log.access,
        AccessLogTarget::Stdout
    );
    assert_eq!(
        load("[log]\naccess = \"/var/log/ringway/access.log\"\n")
            .log
            .access,
        AccessLogTarget::File("/var/log/ringway/access.log".into())
    );
    assert_at(
        &fail("[log]\naccess = \"access.log\"\n"),
        (2, 10),
        "absolute file path",
    );
    let e = fail("[log]\nacess = \"stdout\"\n");
    assert!(e.is_syntax());
    assert_at(&e, (2, 1), "unknown field `acess`");
}

#[test]
fn max_body_bytes_defaults_to_10_mib_and_routes_override_it() {
    let c = load(
        "[limits]\nmax_body_bytes = 1000\n\n[[groups]]\nname = \"g\"\n\n\
         [[groups.routes]]\nname = \"up\"\npath = { prefix = \"/up\" }\nmock = { status = 200 }\nmax_body_bytes = 0\n\n\
         [[groups.routes]]\nname = \"small\"\npath = { prefix = \"/s\" }\nmock = { status = 200 }\nmax_body_bytes = 10\n\n\
         [[groups.routes]]\nname = \"plain\"\npath = { prefix = \"/\" }\nmock = { status = 200 }\n",
    );
    assert_eq!(c.limits.max_body_bytes, 1000);
    let limits: Vec<Option<u64>> = c.routes.iter().map(|r| r.max_body_bytes).collect();
    assert_eq!(limits, [Some(u64::MAX), Some(10), None]);
    assert_eq!(
        load("").limits.max_body_bytes,
        crate::config::DEFAULT_MAX_BODY_BYTES
    );
}

/// Issue 14: typos that used to pass.
#[test]
fn likely_mistakes_are_noticed() {
    // An environment no request can reach (no stage header, not the default).
    let c = load(&format!(
        "{ROUTE_HEAD}  path = {{ exact = \"/a\" }}\n  environments = [\"test\"]\n  mock = {{}}\n"
    ));
    assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
    assert!(
        c.notices[0]
            .message
            .contains("environment 'test' can never be served"),
        "{:?}",
        c.notices
    );
    // Named once and a near miss of another: a typo.
    let text = format!(
        "[server]\nstage_header = \"x-stage\"\n{ROUTE_HEAD}  path = {{ exact = \"/a\" }}\n  environments = [\"prod\"]\n  mock = {{}}\n  [[groups.routes]]\n  name = \"r2\"\n  path = {{ exact = \"/b\" }}\n  environments = [\"prod\"]\n  mock = {{}}\n  [[groups.routes]]\n  name = \"r3\"\n  path = {{ exact = \"/c\" }}\n  environments = [\"prdo\"]\n  mock = {{}}\n"
    );
    let c = load(&text);
    assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
    assert!(
        c.notices[0]
            .message
            .contains("'prdo' is named only here; did you mean 'prod'?"),
        "{:?}",
        c.notices
    );
    assert_eq!(
        (c.notices[0].line, c.notices[0].column),
        pos(&text, "\"prdo\"", 0, 0)
    );
    // An access log in a directory that does not exist.
    let c = load(&format!("[log]\naccess = \"/nonexistent-dir-ringway/access.log\"\n{ROUTE_HEAD}  path = {{ exact = \"/a\" }}\n  mock = {{}}\n"));
    assert!(
        c.notices.iter().any(|n| n.kind == "access_log"),
        "{:?}",
        c.notices
    );
    // A path regex without its leading '/' is an error: it can never match.
    let text = format!("{ROUTE_HEAD}  path = {{ regex = \"api/(.*)\" }}\n  mock = {{}}\n");
    let e = fail(&text);
    assert_at(
        &e,
        pos(&text, "\"api/", 0, 0),
        "path regex 'api/(.*)' can never match",
    );
    assert!(e.message().contains("(write '/api/(.*)')"), "{e}");
    // Regexes that can match a path stay valid.
    for re in ["/(.*)", "(?i)/a", "(/a|/b)", "[/]x", "^/a$", ".*"] {
        load(&format!(
            "{ROUTE_HEAD}  path = {{ regex = \"{re}\" }}\n  mock = {{}}\n"
        ));
    }
}

/// Issue 14: a group's own mistake is reported once, about the group, and a
/// duplicate group name does not cascade into its routes' names.
#[test]
fn group_errors_are_said_once_and_do_not_cascade() {
    let text = "[[groups]]\nname = \"g\"\ncontext_path = \"bad\"\n[[groups.routes]]\nname = \"a\"\npath = { exact = \"/a\" }\nmock = {}\n[[groups.routes]]\nname = \"b\"\npath = { exact = \"/b\" }\nmock = {}\n[[groups]]\nname = \"h\"\n[[groups.routes]]\nname = \"a\"\npath = { exact = \"/x\" }\nmock = {}\n[[groups]]\nname = \"h\"\n[[groups.routes]]\nname = \"a\"\npath = { exact = \"/y\" }\nmock = {}\n";
    let e = fail(text);
    let lines: Vec<String> = e.diagnostics().iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("t.toml:3:16: context path 'bad' must start with '/' (group 'g')"),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains("t.toml:19:8: duplicate group name 'h' (first defined on line 13)"),
        "{lines:#?}"
    );
}

/// Issue 14: three typos take one run — unknown keys and values of the wrong type
/// are all reported, at their own lines, with "did you mean" when a key is close.
#[test]
fn every_independent_toml_error_in_one_run() {
    let text = "[server]\nlisen = \"127.0.0.1:1\"\nshards = \"two\"\n[limitz]\nx = 1\n[[groups]]\nname = \"g\"\n[[groups.routes]]\nname = \"r\"\npaht = { exact = \"/\" }\nmock = {}\n";
    let e = fail(text);
    let lines: Vec<String> = e.diagnostics().iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("t.toml:2:1: unknown field `lisen`")
            && lines[0].contains("did you mean `listen`?"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("t.toml:3:10: invalid type: string \"two\""),
        "{lines:#?}"
    );
    assert!(
        lines[2].starts_with("t.toml:4:2: unknown field `limitz`")
            && lines[2].contains("did you mean `limits`?"),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with("t.toml:10:1: unknown field `paht`")
            && lines[3].contains("did you mean `path`?"),
        "{lines:#?}"
    );
    // A syntax error stops the search (what follows it cannot be read).
    let e = fail("[server]\nlisten = [\n[[groups]]\nnmae = \"g\"\n");
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    // An unknown endpoint in a target gets the nearest name; a duplicate endpoint
    // name points at the first.
    let e = fail("[endpoints]\nbackend = \"http://127.0.0.1:1\"\n[endpoint_groups.backend]\nendpoints = [\"http://127.0.0.1:2\"]\n[[groups]]\nname = \"g\"\n[[groups.routes]]\nname = \"r\"\npath = { exact = \"/\" }\nto = \"{#endpoints['backnd']}/\"\n");
    let text = e.to_string();
    assert!(
        text.contains("endpoint name 'backend' is defined twice (first on line 2)"),
        "{text}"
    );
    assert!(text.contains("did you mean 'backend'?"), "{text}");
}

/// Issue 14: `[log] fields` picks the fields of a line; an unknown one is an error
/// with the list and the nearest name.
#[test]
fn log_fields_are_checked() {
    let c = load(&format!("[log]\naccess = \"stdout\"\nfields = [\"time\", \"status\"]\n{ROUTE_HEAD}  path = {{ exact = \"/a\" }}\n  mock = {{}}\n"));
    use super::log::Field;
    assert_eq!(c.log.fields, Field::Time.bit() | Field::Status.bit());
    let e = fail(&format!(
        "[log]\nfields = [\"stauts\"]\n{ROUTE_HEAD}  path = {{ exact = \"/a\" }}\n  mock = {{}}\n"
    ));
    assert!(
        e.message().contains("log.fields: no field 'stauts'")
            && e.message().contains("did you mean 'status'?"),
        "{e}"
    );
    assert_eq!(
        load(&format!(
            "{ROUTE_HEAD}  path = {{ exact = \"/a\" }}\n  mock = {{}}\n"
        ))
        .log
        .fields,
        Field::EVERY
    );
}

/// Issue 14: a duplicate route name points at the first; a misspelt group name in
/// an authorization list gets the nearest one.
#[test]
fn duplicates_point_at_the_first_and_group_names_get_suggestions() {
    let text = "[[groups]]\nname = \"g\"\n[[groups.routes]]\nname = \"a\"\npath = { exact = \"/a\" }\nmock = {}\n[[groups.routes]]\nname = \"a\"\npath = { exact = \"/b\" }\nmock = {}\n[[access.subscription_keys]]\nid = \"k\"\nkey = \"x\"\ngroups = [\"gg\"]\n";
    let e = fail(text).to_string();
    assert!(
        e.contains("t.toml:8:8: duplicate route name 'a' in group 'g' (first defined on line 4)"),
        "{e}"
    );
    assert!(
        !e.contains("duplicate rule name"),
        "no second report from the router: {e}"
    );
    assert!(
        e.contains("which is not defined (known: g); did you mean 'g'?"),
        "{e}"
    );
}

#[test]
fn routes_tunnel_websocket_by_default_and_only_what_upgrade_lists() {
    let text = "[[groups]]\nname = \"g\"\n\n\
         [[groups.routes]]\nname = \"ws\"\npath = { prefix = \"/ws\" }\nmock = { status = 200 }\n\n\
         [[groups.routes]]\nname = \"none\"\npath = { prefix = \"/n\" }\nmock = { status = 200 }\nupgrade = []\n\n\
         [[groups.routes]]\nname = \"more\"\npath = { prefix = \"/m\" }\nmock = { status = 200 }\nupgrade = [\"WebSocket\", \"foo/2\"]\n";
    let c = load(text);
    let lists: Vec<&[String]> = c.routes.iter().map(|r| &r.upgrade[..]).collect();
    assert_eq!(
        lists,
        [
            &["websocket".to_string()][..],
            &[],
            &["websocket".to_string(), "foo/2".to_string()]
        ]
    );
    let bad = text.replace("\"foo/2\"", "\"foo bar\"");
    let at = pos(&bad, "\"foo bar\"", 0, 0);
    assert_at(&fail(&bad), at, "upgrade: 'foo bar' is not a protocol name");
    let twice = text.replace("\"foo/2\"", "\"websocket\"");
    let at = pos(&twice, "\"websocket\"", 0, 0);
    assert_at(&fail(&twice), at, "upgrade: 'websocket' is listed twice");
    assert_eq!(
        load("[upstream]\nupgrade_idle_timeout = \"90s\"\n")
            .upstream
            .upgrade_idle_timeout,
        Duration::from_secs(90)
    );
    let c = load("[upstream]\nupgrade_half_closed_timeout = \"5s\"\n");
    assert_eq!(c.upstream.upgrade_half_closed_timeout, Duration::from_secs(5));
}

#[test]
fn retry_policies_default_to_envoys_budget_and_are_checked() {
    let text = "[[groups]]\nname = \"g\"\n\n[[groups.routes]]\nname = \"r\"\npath = { prefix = \"/\" }\n\
                mock = { status = 200 }\nretry = { attempts = 3, on = [\"503\", \"timeout\"] }\n";
    let r = load(text).routes[0].retry.clone().expect("a policy");
    use super::health::RetryOn;
    assert_eq!(
        (r.attempts, r.budget_percent, r.min_retry_concurrency),
        (3, 20, 3)
    );
    assert!(r.retries(RetryOn::Status503) && r.retries(RetryOn::Timeout));
    assert!(!r.retries(RetryOn::ConnectFailure));
    let bad = text.replace("attempts = 3", "attempts = 9");
    assert_at(&fail(&bad), pos(&bad, "9", 0, 0), "retry.attempts is from 2 to 5");
    let bad = text.replace("\"timeout\"", "\"sometimes\"");
    assert_at(
        &fail(&bad),
        pos(&bad, "\"sometimes\"", 0, 0),
        "'sometimes' is not one of connect_failure",
    );
}

#[test]
fn group_health_and_hashing_are_checked() {
    let group = |extra: &str| {
        format!(
            "[endpoint_groups.g]\nendpoints = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\n{extra}\n"
        )
    };
    let c = load(&group("lb = \"consistent_hash\"\nhash_on = \"header:X-User\""));
    match &c.endpoints[0] {
        EndpointDef::Group { policy, .. } => {
            assert_eq!(
                policy.hash_on,
                Some(super::health::HashOn::Header("x-user".into()))
            );
            assert_eq!(policy.outlier, super::health::Outlier::default());
        }
        other => panic!("{other:?}"),
    }
    for (extra, message) in [
        (
            "hash_on = \"client_ip\"",
            "hash_on applies with lb = \"consistent_hash\" only",
        ),
        (
            "lb = \"consistent_hash\"\nhash_on = \"body\"",
            "hash_on is \"client_ip\"",
        ),
        ("all_down = \"panic\"", "all_down is \"refuse\" or \"try\""),
        (
            "outlier = { max_ejection_percent = 101 }",
            "max_ejection_percent must be at most 100",
        ),
        ("health_check = { path = \"healthz\" }", "must start with '/'"),
        (
            "health_check = { path = \"/h\", interval = \"1s\", timeout = \"2s\" }",
            "longer than its interval",
        ),
        (
            "health_check = { path = \"/h\", expect_status = [700] }",
            "statuses from 100 to 599",
        ),
    ] {
        let e = fail(&group(extra));
        assert!(e.message().contains(message), "{extra}: {}", e.message());
    }
}
