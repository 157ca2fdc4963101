//! HTTPS backends: Python's `ssl` module as the backend, with its own CA
//! (`tls_support`). Covered: verification by a CA file, wrong name and unknown
//! issuer as 502s naming the problem (and counted), `insecure_skip_verify`, a
//! client certificate to the backend, pooled connections isolated by SNI, and an
//! early answer relayed whole.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod tls_support;

use common::Gateway;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tls_support::*;

#[test]
fn https_upstreams_verify_against_their_ca() {
    let dir = temp_dir("up");
    let pki = Pki::new(&dir, "internal");
    pki.leaf("backend", "backend", &["backend.internal", "alias.internal"]);
    let be = HttpsBackend::start(&dir, &pki.path("backend.pem"), &pki.path("backend.key"), None);
    let url = format!("https://127.0.0.1:{}", be.port);
    let endpoints = format!(
        r#"good = {{ url = "{url}", sni = "backend.internal", ca = "internal-ca.pem" }}
public = "{url}"
wrongname = {{ url = "{url}", sni = "other.internal", ca = "internal-ca.pem" }}
insecure = {{ url = "{url}", insecure_skip_verify = true }}"#
    );
    let toml = upstream_config(
        &endpoints,
        &[
            ("good", "{#endpoints['good']}"),
            ("public", "{#endpoints['public']}"),
            ("wrongname", "{#endpoints['wrongname']}"),
            ("insecure", "{#endpoints['insecure']}"),
        ],
    );
    let file = dir.join("ringway.toml");
    std::fs::write(&file, toml).unwrap();
    let gw = Gateway::start_file(dir.clone(), file);
    let admin = admin_addr(&gw);

    let (status, body) = get(gw.addr, "/good/x");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("sni=backend.internal client=- path=/good/x"),
        "{body}"
    );
    // A second request reuses the verified connection.
    let (_, again) = get(gw.addr, "/good/y");
    let conn = |b: &str| b.rsplit("conn=").next().unwrap_or("").trim().to_string();
    assert_eq!(conn(&again), conn(&body), "pooled: {body} / {again}");

    let (status, body) = get(gw.addr, "/public/x");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("not signed by a trusted CA"), "{body}");
    let (status, body) = get(gw.addr, "/wrongname/x");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("not valid for the upstream's name"), "{body}");
    assert_eq!(
        metric(admin, "ringway_upstream_tls_verify_failures_total", &[]),
        2
    );

    let (status, body) = get(gw.addr, "/insecure/x");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("sni=None"), "an IP is not sent as SNI: {body}");
}

/// Two endpoints on one backend address with different SNI never share a pooled
/// connection: each request's connection was made for its own name.
#[test]
fn pooled_connections_are_isolated_by_sni() {
    let dir = temp_dir("isolation");
    let pki = Pki::new(&dir, "internal");
    pki.leaf("backend", "backend", &["a.internal", "b.internal"]);
    let be = HttpsBackend::start(&dir, &pki.path("backend.pem"), &pki.path("backend.key"), None);
    let url = format!("https://127.0.0.1:{}", be.port);
    let endpoints = format!(
        "a = {{ url = \"{url}\", sni = \"a.internal\", ca = \"internal-ca.pem\" }}\nb = {{ url = \"{url}\", sni = \"b.internal\", ca = \"internal-ca.pem\" }}"
    );
    let toml = upstream_config(
        &endpoints,
        &[("a", "{#endpoints['a']}"), ("b", "{#endpoints['b']}")],
    );
    let file = dir.join("ringway.toml");
    std::fs::write(&file, toml).unwrap();
    let gw = Gateway::start_file(dir.clone(), file);
    let mut conns = std::collections::HashMap::new();
    for i in 0..12 {
        let name = if i % 3 == 0 { "b" } else { "a" };
        let (status, body) = get(gw.addr, &format!("/{name}/{i}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with(&format!("sni={name}.internal ")), "{body}");
        let conn = body.rsplit("conn=").next().unwrap().trim().to_string();
        let owner = conns.entry(conn).or_insert(name);
        assert_eq!(*owner, name, "a connection made for one name served the other");
    }
    assert!(conns.len() < 12, "connections are reused at all: {conns:?}");
}

#[test]
fn client_certificates_to_the_backend() {
    let dir = temp_dir("up-mtls");
    let pki = Pki::new(&dir, "internal");
    pki.leaf("backend", "backend", &["backend.internal"]);
    pki.leaf("gateway", "ringway-gw", &["gw.internal"]);
    let be = HttpsBackend::start(
        &dir,
        &pki.path("backend.pem"),
        &pki.path("backend.key"),
        Some(&pki.path("internal-ca.pem")),
    );
    let url = format!("https://127.0.0.1:{}", be.port);
    let endpoints = format!(
        "with = {{ url = \"{url}\", sni = \"backend.internal\", ca = \"internal-ca.pem\", client_cert = \"gateway.pem\", client_key = \"gateway.key\" }}\nwithout = {{ url = \"{url}\", sni = \"backend.internal\", ca = \"internal-ca.pem\" }}"
    );
    let toml = upstream_config(
        &endpoints,
        &[
            ("with", "{#endpoints['with']}"),
            ("without", "{#endpoints['without']}"),
        ],
    );
    let file = dir.join("ringway.toml");
    std::fs::write(&file, toml).unwrap();
    let gw = Gateway::start_file(dir.clone(), file);
    let (status, body) = get(gw.addr, "/with/x");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("client=ringway-gw"), "{body}");
    let (status, body) = get(gw.addr, "/without/x");
    assert_eq!(status, 502, "{body}");
}

/// An HTTPS backend that answers 413 before reading the body: the client gets the
/// 413, whole (issue 9.2 over TLS: looking at the early answer must not eat it).
#[test]
fn an_early_answer_from_an_https_backend_reaches_the_client_whole() {
    let dir = temp_dir("early");
    let pki = Pki::new(&dir, "internal");
    pki.leaf("backend", "backend", &["backend.internal"]);
    let be = HttpsBackend::start(&dir, &pki.path("backend.pem"), &pki.path("backend.key"), None);
    let url = format!("https://127.0.0.1:{}", be.port);
    let endpoints =
        format!("be = {{ url = \"{url}\", sni = \"backend.internal\", ca = \"internal-ca.pem\" }}");
    let toml = upstream_config(&endpoints, &[("early", "{#endpoints['be']}")]);
    let file = dir.join("ringway.toml");
    std::fs::write(&file, toml).unwrap();
    let gw = Gateway::start_file(dir.clone(), file);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let len = 8 << 20;
    write!(
        s,
        "POST /early/x HTTP/1.1\r\nHost: gw\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < len {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        if text.windows(10).any(|w| w == b"too large\n") {
            break;
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.ends_with("too large\n"), "{text}");
}
