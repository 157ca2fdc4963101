//! Access authorization and the backend signature, end to end with the real binary:
//! subscription keys; requests signed by **JD Cloud's own Python SDK signer**
//! (`jdcloud_sdk_core` 1.3.3 from PyPI, `JDCLOUD2-HMAC-SHA256`) and then tampered
//! with on the wire, one part at a time; replays; the skew window; the authorization
//! list; and a Python backend that checks ringway's backend signature with the
//! verifier copied out of `docs/access.md`.
//!
//! The SDK comes from PyPI: `.ci/run` installs it into the venv and sets
//! `RINGWAY_PYTHON`. Without it the SDK tests say so and pass, except in CI
//! (`CI=true`), where a missing SDK fails them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{Backend, Client, Gateway, Response};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A venv python that can import JD's SDK, if there is one.
fn python() -> Option<PathBuf> {
    common::venv_python("jdcloud_sdk.core.signer", "JD's SDK (jdcloud_sdk_core)")
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The headers JD's SDK signer sets for a request (`tests/access_support/jd_sign.py`).
struct Signed(Vec<(String, String)>);

#[allow(clippy::too_many_arguments)]
fn jd_sign(
    py: &PathBuf,
    method: &str,
    url: &str,
    body: &str,
    ak: &str,
    sk: &str,
    at: Option<i64>,
    nonce: Option<&str>,
) -> Signed {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/access_support/jd_sign.py");
    let input = serde_json::json!({
        "method": method, "url": url, "body": body, "ak": ak, "sk": sk,
        "now": at, "nonce": nonce,
    });
    let mut child = Command::new(py)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run jd_sign.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jd_sign.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    Signed(
        map.into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
            .collect(),
    )
}

/// Sends `method target` with `Host: host`, the `headers` and `body` as raw bytes.
fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(String, String)],
    body: &str,
) -> Response {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        raw += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        raw += &format!("Content-Length: {}\r\n", body.len());
    }
    raw += "\r\n";
    raw += body;
    let mut c = Client::connect(addr);
    c.send(raw.as_bytes());
    c.response()
}

fn json(r: &Response) -> serde_json::Value {
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// The status and, for a refusal, its `code` (and that the body names the request id
/// of the response).
fn outcome(r: &Response) -> (u16, String) {
    if r.status < 400 {
        return (r.status, String::new());
    }
    let v = json(r);
    assert_eq!(v["request_id"].as_str(), r.header("x-request-id"), "{}", r.text());
    (r.status, v["code"].as_str().unwrap_or_default().to_string())
}

fn start_with_admin(toml: &str) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(&format!("{toml}\n[admin]\nlisten = \"127.0.0.1:0\"\n"));
    let admin = gw
        .stdout_line("ringway admin on ", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no admin line; stderr:\n{}", gw.stderr()));
    (gw, admin.trim().parse().unwrap())
}

fn admin_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
}

/// A `[[groups]]` table: `name`, its `settings` lines, and one prefix route of the
/// same name sending to `to`.
fn group(name: &str, settings: &str, prefix: &str, to: &str) -> String {
    format!(
        "\n[[groups]]\nname = \"{name}\"\n{settings}\n[[groups.routes]]\nname = \"{name}\"\npath = {{ prefix = \"{prefix}\" }}\nto = \"{to}\"\n"
    )
}

const KEY_STORES: &str = "3f1c9a7e5b-stores";
const KEY_ORDERS: &str = "9d2b-orders-from-a-file";
const KEY_ENV: &str = "k-from-the-environment";

fn key_config(backend: &Backend, dir: &std::path::Path) -> String {
    let key_file = dir.join("orders.key");
    std::fs::write(&key_file, format!("{KEY_ORDERS}\n")).unwrap();
    let url = backend.url();
    let head = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
shards = 1

[access]
subscription_key_query = "apikey"

[[access.subscription_keys]]
id = "mobile-app"
key = "{KEY_STORES}"
groups = ["stores"]

[[access.subscription_keys]]
id = "ops"
key_file = "{}"
groups = ["orders", "stores"]

[[access.subscription_keys]]
id = "batch"
key_env = "RINGWAY_TEST_ACCESS_KEY_ENV"
groups = ["orders"]
"#,
        key_file.display()
    );
    let mock = "\n[[groups.routes]]\nname = \"stores-mock\"\npath = { exact = \"/stores-info\" }\nmock = { status = 200, body = \"info\" }\n";
    head + &group(
        "stores",
        "auth = \"subscription_key\"",
        "/stores",
        &format!("{url}/stores"),
    ) + mock
        + &group(
            "orders",
            "auth = \"subscription_key\"\nforward_credentials = true",
            "/orders",
            &format!("{url}/orders"),
        )
        + &group("free", "", "/free", &format!("{url}/free"))
}

#[test]
fn subscription_keys_admit_refuse_and_are_consumed() {
    let backend = Backend::echo("b");
    let dir = std::env::temp_dir().join(format!("ringway-access-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The gateway inherits the test's environment (set once, before it starts).
    std::env::set_var("RINGWAY_TEST_ACCESS_KEY_ENV", KEY_ENV);
    let (gw, admin) = start_with_admin(&key_config(&backend, &dir));
    let hdr = |k: &str| vec![("jdcloud-apim-subscription-key".to_string(), k.to_string())];
    let get = |target: &str, h: &[(String, String)]| send(gw.addr, "GET", target, "it.test", h, "");

    // No key, an unknown key, a key for another group, the header twice.
    let r = get("/stores/1", &[]);
    assert_eq!(outcome(&r), (401, "missing_credentials".into()));
    assert_eq!(r.header("www-authenticate"), Some("SubscriptionKey"));
    assert!(json(&r)["message"]
        .as_str()
        .unwrap()
        .contains("jdcloud-apim-subscription-key"));
    assert_eq!(
        outcome(&get("/stores/1", &hdr("nope"))),
        (401, "unknown_key".into())
    );
    assert_eq!(
        outcome(&get("/stores/1", &hdr(&KEY_STORES[..KEY_STORES.len() - 1]))),
        (401, "unknown_key".into())
    );
    let r = get("/orders/1", &hdr(KEY_STORES));
    assert_eq!(outcome(&r), (403, "not_authorized".into()));
    assert!(
        json(&r)["message"].as_str().unwrap().contains("'mobile-app'"),
        "{}",
        r.text()
    );
    let mut twice = hdr(KEY_STORES);
    twice.extend(hdr(KEY_STORES));
    assert_eq!(
        outcome(&get("/stores/1", &twice)),
        (401, "ambiguous_credentials".into())
    );
    // A mock route of the group is covered too.
    assert_eq!(
        outcome(&get("/stores-info", &[])),
        (401, "missing_credentials".into())
    );
    assert_eq!(get("/stores-info", &hdr(KEY_STORES)).text(), "info");
    assert_eq!(backend.requests().len(), 0, "nothing refused reached the backend");

    // Admitted: the key is consumed, unless the group forwards it.
    assert_eq!(get("/stores/1", &hdr(KEY_STORES)).status, 200);
    assert_eq!(
        backend.requests()[0].header("jdcloud-apim-subscription-key"),
        None
    );
    assert_eq!(
        get("/orders/1", &hdr(KEY_ORDERS)).status,
        200,
        "a key from key_file"
    );
    assert_eq!(
        backend.requests()[1].header("jdcloud-apim-subscription-key"),
        Some(KEY_ORDERS)
    );
    assert_eq!(get("/orders/2", &hdr(KEY_ENV)).status, 200, "a key from key_env");
    assert_eq!(
        outcome(&get("/stores/2", &hdr(KEY_ENV))),
        (403, "not_authorized".into())
    );
    // In the query parameter: admitted, and the parameter leaves the query.
    let r = get(&format!("/stores/q?a=1&apikey={KEY_STORES}&b=2"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-target"), Some("/stores?a=1&b=2"));
    // A free group needs nothing, and a key sent to it is not consumed.
    assert_eq!(get("/free/1", &[]).status, 200);

    // Metrics name the caller, never the key; /config holds no secret.
    let metrics = admin_get(admin, "/metrics");
    assert!(
        metrics.contains("ringway_auth_allowed_total{group=\"stores\",caller=\"mobile-app\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringway_auth_allowed_total{group=\"orders\",caller=\"batch\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringway_auth_denied_total{group=\"stores\",code=\"missing_credentials\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringway_auth_denied_total{group=\"orders\",code=\"not_authorized\"} 1"),
        "{metrics}"
    );
    let config = admin_get(admin, "/config");
    assert!(
        config.contains("\"mobile-app\"") && config.contains("\"subscription_key\""),
        "{config}"
    );
    for secret in [KEY_STORES, KEY_ORDERS, KEY_ENV] {
        assert!(
            !config.contains(secret) && !metrics.contains(secret),
            "a secret in /config or /metrics"
        );
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

const AK: &str = "AKIDEXAMPLE01";
const SK: &str = "s3cr3tEXAMPLE";
const AK_ORDERS: &str = "AKIDORDERS02";

fn signature_config(backend: &Backend) -> String {
    let url = backend.url();
    let head = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
shards = 2

[access]
signature_skew = "60s"

[[access.key_pairs]]
access_key = "{AK}"
secret_key = "{SK}"
groups = ["stores"]

[[access.key_pairs]]
access_key = "{AK_ORDERS}"
secret_key = "other-secret"
groups = ["orders"]
"#
    );
    head + &group(
        "stores",
        "auth = \"signature\"\ncontext_path = \"/api\"",
        "/v1",
        &format!("{url}/backend"),
    ) + &group(
        "orders",
        "auth = \"signature\"",
        "/orders",
        &format!("{url}/orders"),
    )
}

#[test]
fn requests_signed_by_jd_sdk_are_accepted_and_every_tamper_is_refused() {
    let Some(py) = python() else { return };
    let backend = Backend::echo("b");
    let gw = Gateway::start(&signature_config(&backend));
    let host = gw.addr.to_string();
    let base = format!("http://{host}");
    let signed_headers = |s: &Signed| -> Vec<(String, String)> { s.0.clone() };

    // GET with a query (the context path is part of what was signed: the raw path).
    let url = format!("{base}/api/v1/regions/cn-north-1/instances?pageSize=10&pageNumber=1");
    let s = jd_sign(&py, "GET", &url, "", AK, SK, None, None);
    let target = "/api/v1/regions/cn-north-1/instances?pageSize=10&pageNumber=1";
    let r = send(gw.addr, "GET", target, &host, &signed_headers(&s), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = backend.only_request();
    // (A prefix route sends its target, with the query: `to` has no path placeholder.)
    assert_eq!(got.target, "/backend?pageSize=10&pageNumber=1");
    assert_eq!(got.header("authorization"), None, "the signature is consumed");
    assert!(
        got.header("x-jdcloud-nonce").is_some(),
        "x-jdcloud-* headers are forwarded"
    );
    // Replaying it exactly — on a new connection, possibly another shard — is refused.
    for _ in 0..3 {
        let r = send(gw.addr, "GET", target, &host, &signed_headers(&s), "");
        assert_eq!(outcome(&r), (401, "replayed_nonce".into()));
    }
    // The query in another order is the same request (a fresh signature, same query).
    let s = jd_sign(&py, "GET", &url, "", AK, SK, None, None);
    let r = send(
        gw.addr,
        "GET",
        "/api/v1/regions/cn-north-1/instances?pageNumber=1&pageSize=10",
        &host,
        &signed_headers(&s),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // POST with a JSON body.
    let body = r#"{"name":"store 7","tags":["a","b"]}"#;
    let url = format!("{base}/api/v1/stores");
    let s = jd_sign(&py, "POST", &url, body, AK, SK, None, None);
    let r = send(
        gw.addr,
        "POST",
        "/api/v1/stores",
        &host,
        &signed_headers(&s),
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), body, "the body reached the backend whole");

    // Each tamper of a fresh, valid request, one at a time.
    type Tamper = Box<dyn Fn(&mut String, &mut String, &mut Vec<(String, String)>, &mut String)>;
    let set = |h: &mut Vec<(String, String)>, name: &str, v: &str| {
        for (k, val) in h.iter_mut() {
            if k.eq_ignore_ascii_case(name) {
                *val = v.to_string();
            }
        }
    };
    let tampers: Vec<(&str, Tamper, &str)> = vec![
        (
            "method",
            Box::new(|m, _, _, _| *m = "PUT".into()),
            "signature_mismatch",
        ),
        (
            "path",
            Box::new(|_, t, _, _| *t = t.replace("/stores", "/storez")),
            "signature_mismatch",
        ),
        (
            "query value",
            Box::new(|_, t, _, _| *t = t.replace("v=1", "v=2")),
            "signature_mismatch",
        ),
        (
            "query added",
            Box::new(|_, t, _, _| t.push_str("&admin=1")),
            "signature_mismatch",
        ),
        (
            "signed header",
            Box::new(move |_, _, h, _| set(h, "content-type", "text/plain")),
            "signature_mismatch",
        ),
        (
            "body",
            Box::new(|_, _, _, b| *b = b.replace("store 7", "store 8")),
            "content_sha256_mismatch",
        ),
        (
            "declared hash",
            Box::new(move |_, _, h, b| {
                // Body and declared hash changed together: the signed hash no longer matches.
                *b = b.replace("store 7", "store 8");
                let digest = sha256_hex(b.as_bytes());
                set(h, "x-jdcloud-content-sha256", &digest);
            }),
            "signature_mismatch",
        ),
        (
            "date",
            Box::new(move |_, _, h, _| {
                let d = h.iter().find(|(k, _)| k == "x-jdcloud-date").unwrap().1.clone();
                let later = format!("{}{}", &d[..13], if &d[13..15] == "00" { "01Z" } else { "00Z" });
                set(h, "x-jdcloud-date", &later);
            }),
            "signature_mismatch",
        ),
        (
            "nonce",
            Box::new(move |_, _, h, _| set(h, "x-jdcloud-nonce", "fresh-nonce")),
            "signature_mismatch",
        ),
        (
            "signed header removed",
            Box::new(|_, _, h, _| h.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"))),
            "missing_signed_header",
        ),
        (
            "no date",
            Box::new(|_, _, h, _| h.retain(|(k, _)| k != "x-jdcloud-date")),
            "missing_date",
        ),
        (
            "no authorization",
            Box::new(|_, _, h, _| h.retain(|(k, _)| k != "Authorization")),
            "missing_credentials",
        ),
        (
            "access key",
            Box::new(move |_, _, h, _| {
                let a = h
                    .iter()
                    .find(|(k, _)| k == "Authorization")
                    .unwrap()
                    .1
                    .replace(AK, "AKIDUNKNOWN");
                set(h, "Authorization", &a);
            }),
            "unknown_access_key",
        ),
    ];
    let body = r#"{"name":"store 7"}"#;
    for (what, tamper, code) in &tampers {
        let url = format!("{base}/api/v1/stores?v=1&w=2");
        let s = jd_sign(&py, "POST", &url, body, AK, SK, None, None);
        let (mut m, mut t, mut h, mut b) = (
            "POST".to_string(),
            "/api/v1/stores?v=1&w=2".to_string(),
            signed_headers(&s),
            body.to_string(),
        );
        tamper(&mut m, &mut t, &mut h, &mut b);
        let r = send(gw.addr, &m, &t, &host, &h, &b);
        assert_eq!(outcome(&r), (401, code.to_string()), "tamper: {what}");
        // The untampered request is still good: the tamper burned no nonce.
        let r = send(
            gw.addr,
            "POST",
            "/api/v1/stores?v=1&w=2",
            &host,
            &signed_headers(&s),
            body,
        );
        assert_eq!(r.status, 200, "the original after tamper '{what}': {}", r.text());
    }
    // The wrong secret.
    let url = format!("{base}/api/v1/stores");
    let s = jd_sign(&py, "GET", &url, "", AK, "not-the-secret", None, None);
    assert_eq!(
        outcome(&send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "")),
        (401, "signature_mismatch".into())
    );

    // The skew window (60 s here), both ways, with a margin for the test's own time.
    for (offset, ok) in [(-50, true), (50, true), (-75, false), (75, false)] {
        let s = jd_sign(&py, "GET", &url, "", AK, SK, Some(now() + offset), None);
        let r = send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "");
        if ok {
            assert_eq!(r.status, 200, "offset {offset}: {}", r.text());
        } else {
            assert_eq!(outcome(&r), (401, "date_out_of_window".into()), "offset {offset}");
            assert!(json(&r)["message"].as_str().unwrap().contains("±60s"));
        }
    }

    // A valid pair, not authorized for this group: 403 (after the signature checks).
    let s = jd_sign(
        &py,
        "GET",
        &format!("{base}/api/v1/stores"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        None,
    );
    let r = send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "");
    assert_eq!(outcome(&r), (403, "not_authorized".into()));
    let s = jd_sign(
        &py,
        "GET",
        &format!("{base}/orders/1"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        None,
    );
    assert_eq!(send(gw.addr, "GET", "/orders/1", &host, &s.0, "").status, 200);
    // The 403's nonce was not recorded (authorization is checked before the nonce).
    let s = jd_sign(
        &py,
        "GET",
        &format!("{base}/orders/2"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        Some("n-403"),
    );
    let s2 = jd_sign(
        &py,
        "GET",
        &format!("{base}/api/v1/stores"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        Some("n-403"),
    );
    assert_eq!(
        outcome(&send(gw.addr, "GET", "/api/v1/stores", &host, &s2.0, "")).0,
        403
    );
    assert_eq!(send(gw.addr, "GET", "/orders/2", &host, &s.0, "").status, 200);
    // A body larger than max_signed_body: 413 before it is read.
    let mut h = jd_sign(&py, "POST", &url, "x", AK, SK, None, None).0;
    h.retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    let mut c = Client::connect(gw.addr);
    let mut raw = format!("POST /api/v1/stores HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2000000\r\n");
    for (k, v) in &h {
        raw += &format!("{k}: {v}\r\n");
    }
    c.send(format!("{raw}\r\n").as_bytes());
    assert_eq!(outcome(&c.response()), (413, "signed_body_too_large".into()));

    // A forged signature with a declared body hash is refused before any of its
    // body is read: the answer comes at once, with the body never sent.
    let mut h = jd_sign(&py, "POST", &url, "x", AK, "not-the-secret", None, None).0;
    h.retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    let mut raw = format!("POST /api/v1/stores HTTP/1.1\r\nHost: {host}\r\nContent-Length: 500000\r\n");
    for (k, v) in &h {
        raw += &format!("{k}: {v}\r\n");
    }
    let mut c = Client::connect(gw.addr);
    c.send(format!("{raw}\r\n").as_bytes());
    let r = c.response();
    assert_eq!(outcome(&r), (401, "signature_mismatch".into()));
    assert!(
        r.closes() && c.is_closed(),
        "a refused caller's body is not read: the connection closes"
    );

    // Nonces compare as the signature covers them: "a  b" is a replay of "a b".
    let s = jd_sign(&py, "GET", &url, "", AK, SK, None, Some("test nonce"));
    assert_eq!(
        send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "").status,
        200
    );
    let mut h = s.0.clone();
    for (k, v) in h.iter_mut() {
        if k == "x-jdcloud-nonce" {
            *v = "test  nonce".into();
        }
    }
    let r = send(gw.addr, "GET", "/api/v1/stores", &host, &h, "");
    assert_eq!(outcome(&r), (401, "replayed_nonce".into()));
}

fn sha256_hex(b: &[u8]) -> String {
    // The test's own SHA-256, through Python's hashlib (no crate of ours).
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .expect("python3");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A Python HTTP/1.1 backend that checks ringway's backend signature with the
/// verifier from `docs/access.md`, and answers 200 `verified CONTENT-SHA256` or 401.
struct VerifyingBackend {
    child: Child,
    url: String,
}

impl Drop for VerifyingBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn documented_verifier() -> String {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/access.md")).unwrap();
    let after = doc
        .split("<!-- verifier -->")
        .nth(1)
        .expect("docs/access.md has the verifier marker");
    let code = after
        .split("```python")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    code.to_string()
}

fn verifying_backend(secret: &str) -> VerifyingBackend {
    let server = format!(
        r#"{verifier}
import http.server, sys
SECRET = {secret:?}.encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def handle_one(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n)
        ok = verify_ringway(SECRET, self.command, self.path, self.headers, body)
        out = ("verified " if ok else "REFUSED ") + (self.headers.get("x-ringway-content-sha256") or "")
        out = out.encode()
        self.send_response(200 if ok else 401)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = handle_one
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#,
        verifier = documented_verifier()
    );
    let mut child = Command::new("python3")
        .args(["-c", &server])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the backend's port");
    VerifyingBackend {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[test]
fn the_documented_verifier_accepts_ringway_backend_signatures() {
    let secret = "backend-signing-secret";
    let backend = verifying_backend(secret);
    let toml = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
shards = 1

[[access.backend_keys]]
id = "gw-1"
secret = "{secret}"

[[access.backend_keys]]
id = "gw-wrong"
secret = "not-what-the-backend-has"
"#
    );
    let to = format!("{}/in", backend.url);
    let toml = toml
        + &group("signed", "backend_key = \"gw-1\"", "/s", &to)
        + &group("wrong", "backend_key = \"gw-wrong\"", "/w", &to)
        + &group("unsigned", "", "/u", &to);
    let gw = Gateway::start(&toml);
    let forged = vec![
        (
            "x-ringway-signature".to_string(),
            "RINGWAY1-HMAC-SHA256 key=gw-1, headers=, signature=00".to_string(),
        ),
        ("x-ringway-date".to_string(), "20000101T000000Z".to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    // GET, a small body (hashed), a 200 KiB body (streamed: UNSIGNED-PAYLOAD).
    let r = send(gw.addr, "GET", "/s/x?a=1&b=%20", "it.test", &forged, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("verified {}", sha256_hex(b"")));
    let body = r#"{"order":7}"#;
    let r = send(gw.addr, "POST", "/s/orders", "it.test", &forged, body);
    assert_eq!(r.text(), format!("verified {}", sha256_hex(body.as_bytes())));
    let big = "x".repeat(200 * 1024);
    let r = send(gw.addr, "PUT", "/s/blob", "it.test", &forged, &big);
    assert_eq!(r.text(), "verified UNSIGNED-PAYLOAD");
    // A wrong key, and no signature at all (the client's forged fields pass through
    // a group without a backend key, and the verifier refuses them).
    assert_eq!(send(gw.addr, "GET", "/w/x", "it.test", &[], "").status, 401);
    assert_eq!(send(gw.addr, "GET", "/u/x", "it.test", &forged, "").status, 401);
}

/// Polls `probe` until it returns true, for at most `within`.
fn eventually(within: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

#[test]
fn a_rotated_key_file_and_a_new_publish_reload_without_a_restart() {
    let (online, next) = (Backend::echo("v1"), Backend::echo("v2"));
    let dir = std::env::temp_dir().join(format!("ringway-access-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("app.key");
    std::fs::write(&key_file, "old-key\n").unwrap();
    let config = |published: &str| {
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
shards = 1

[endpoints]
v1 = "{v1}"
v2 = "{v2}"

[[access.subscription_keys]]
id = "app"
key_file = "{key}"
groups = ["api"]

[[groups]]
name = "api"
auth = "subscription_key"
versions = ["1", "2"]
publish = {{ online = "{published}" }}

[[groups.routes]]
name = "one"
versions = ["1"]
path = {{ exact = "/x" }}
to = "{{#endpoints['v1']}}/x"

[[groups.routes]]
name = "two"
versions = ["2"]
path = {{ exact = "/x" }}
to = "{{#endpoints['v2']}}/x"
"#,
            v1 = online.url(),
            v2 = next.url(),
            key = key_file.display()
        )
    };
    let gw = Gateway::start(&config("1"));
    let call = |key: &str| {
        let h = vec![("jdcloud-apim-subscription-key".to_string(), key.to_string())];
        let r = send(gw.addr, "GET", "/x", "it.test", &h, "");
        (r.status, r.header("x-backend").map(str::to_string))
    };
    assert_eq!(call("old-key"), (200, Some("v1".into())));
    // The key file is renewed in place: the old key stops working, the new one works.
    std::fs::write(&key_file, "new-key\n").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || call("new-key").0 == 200),
        "the renewed key file was not picked up: {}",
        gw.stderr()
    );
    assert_eq!(call("old-key").0, 401);
    // Publishing version 2 is a config edit: the same path now goes to its backend.
    std::fs::write(gw.config_file(), config("2")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || call("new-key")
            == (200, Some("v2".into()))),
        "publishing version 2 did not take: {}",
        gw.stderr()
    );
    // A publish of a version that does not exist is refused; version 2 keeps serving.
    std::fs::write(gw.config_file(), config("3")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("publishes version '3'")),
        "no reload error: {}",
        gw.stderr()
    );
    assert_eq!(call("new-key"), (200, Some("v2".into())));
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}
