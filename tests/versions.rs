//! Group versions published to environments, end to end: the same path answered
//! by different versions in different environments (chosen with the stage header),
//! an environment's own backend endpoint, a route only a newer version has, and the
//! version in `explain`, the access log and the metrics.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{Backend, Client, Gateway};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn config(online: &Backend, test: &Backend) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
shards = 1
stage_header = "x-stage"

[log]
access = "stdout"

[admin]
listen = "127.0.0.1:0"

[endpoints]
store = "{online}"

[[groups]]
name = "stores"
versions = ["0.0.1", "0.0.2"]
publish = {{ online = "0.0.1", pre-release = "0.0.2", test = {{ version = "0.0.2", endpoints = {{ store = "{test}" }} }} }}

[[groups.routes]]
name = "list"
path = {{ exact = "/stores" }}
to = "{{#endpoints['store']}}/list"

[[groups.routes]]
name = "search"
versions = ["0.0.2"]
path = {{ exact = "/stores/search" }}
to = "{{#endpoints['store']}}/search"
"#,
        online = online.url(),
        test = test.url()
    )
}

fn get(addr: SocketAddr, path: &str, stage: Option<&str>) -> (u16, Option<String>, Option<String>) {
    let mut c = Client::connect(addr);
    let stage = stage.map(|s| format!("x-stage: {s}\r\n")).unwrap_or_default();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: it.test\r\n{stage}\r\n").as_bytes());
    let r = c.response();
    (
        r.status,
        r.header("x-backend").map(str::to_string),
        r.header("x-target").map(str::to_string),
    )
}

#[test]
fn each_environment_serves_the_version_it_publishes() {
    let (online, test) = (Backend::echo("online"), Backend::echo("test"));
    let toml = config(&online, &test);
    let gw = Gateway::start(&toml);
    let admin: SocketAddr = gw
        .stdout_line("ringway admin on ", Duration::from_secs(5))
        .expect("admin line")
        .trim()
        .parse()
        .unwrap();
    let some = |b: &str, t: &str| (200, Some(b.to_string()), Some(t.to_string()));

    // online publishes 0.0.1: `list` only, on the group's endpoint.
    assert_eq!(get(gw.addr, "/stores", None), some("online", "/list"));
    assert_eq!(get(gw.addr, "/stores", Some("online")), some("online", "/list"));
    assert_eq!(
        get(gw.addr, "/stores/search", None).0,
        400,
        "0.0.2's route is not live in online"
    );
    // pre-release publishes 0.0.2 on the same endpoint; test publishes it on its own.
    assert_eq!(
        get(gw.addr, "/stores/search", Some("pre-release")),
        some("online", "/search")
    );
    assert_eq!(get(gw.addr, "/stores", Some("test")), some("test", "/list"));
    assert_eq!(
        get(gw.addr, "/stores/search", Some("test")),
        some("test", "/search")
    );

    // The access log names the version and environment that served.
    let mut versions = Vec::new();
    while let Some(line) = gw.stdout_line("{", Duration::from_secs(3)) {
        let v: serde_json::Value = serde_json::from_str(&format!("{{{line}")).unwrap();
        versions.push((
            v["env"].as_str().map(str::to_string),
            v["version"].as_str().map(str::to_string),
        ));
        if versions.len() == 6 {
            break;
        }
    }
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        versions,
        [
            (s("online"), s("0.0.1")),
            (s("online"), s("0.0.1")),
            (s("online"), None),
            (s("pre-release"), s("0.0.2")),
            (s("test"), s("0.0.2")),
            (s("test"), s("0.0.2")),
        ]
    );
    // So do the metrics.
    let mut m = TcpStream::connect(admin).unwrap();
    write!(m, "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let mut metrics = String::new();
    m.read_to_string(&mut metrics).unwrap();
    for line in [
        "ringway_version_requests_total{group=\"stores\",version=\"0.0.1\",environment=\"online\",class=\"2xx\"} 2",
        "ringway_version_requests_total{group=\"stores\",version=\"0.0.2\",environment=\"test\",class=\"2xx\"} 2",
        "ringway_version_requests_total{group=\"stores\",version=\"0.0.2\",environment=\"pre-release\",class=\"2xx\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }

    // `explain` shows the version, and the test environment's endpoint.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["explain", "-c"])
        .arg(gw.config_file())
        .args(["GET", "/stores", "-H", "x-stage: test"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("explain json");
    assert_eq!(v["version"], "0.0.2", "{v}");
    assert_eq!(v["environment"], "test");
    assert!(v["upstream"].to_string().contains(&test.addr.to_string()), "{v}");
}
