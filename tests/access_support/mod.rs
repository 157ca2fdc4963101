//! Fixtures of the access tests (`tests/access.rs`, `tests/signatures.rs`): JD
//! Cloud's SDK signer (`jd_sign.py`, run by the venv's python), the configs, a
//! raw client, and a Python backend that verifies ringway's backend signature with
//! the verifier copied out of `docs/access.md`.

#![allow(dead_code)] // each test file uses a different part

use crate::common::{self, Backend, Client, Gateway, Response};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A venv python that can import JD's SDK, if there is one.
pub fn python() -> Option<PathBuf> {
    common::venv_python("jdcloud_sdk.core.signer", "JD's SDK (jdcloud_sdk_core)")
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The headers JD's SDK signer sets for a request (`tests/access_support/jd_sign.py`).
pub struct Signed(pub Vec<(String, String)>);

#[allow(clippy::too_many_arguments)]
pub fn jd_sign(
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
pub fn send(
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

pub fn json(r: &Response) -> serde_json::Value {
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// The status and, for a refusal, its `code` (and that the body names the request id
/// of the response).
pub fn outcome(r: &Response) -> (u16, String) {
    if r.status < 400 {
        return (r.status, String::new());
    }
    let v = json(r);
    assert_eq!(v["request_id"].as_str(), r.header("x-request-id"), "{}", r.text());
    (r.status, v["code"].as_str().unwrap_or_default().to_string())
}

pub fn start_with_admin(toml: &str) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(&format!("{toml}\n[admin]\nlisten = \"127.0.0.1:0\"\n"));
    let admin = gw
        .stdout_line("ringway admin on ", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no admin line; stderr:\n{}", gw.stderr()));
    (gw, admin.trim().parse().unwrap())
}

pub fn admin_get(addr: SocketAddr, path: &str) -> String {
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
pub fn group(name: &str, settings: &str, prefix: &str, to: &str) -> String {
    format!(
        "\n[[groups]]\nname = \"{name}\"\n{settings}\n[[groups.routes]]\nname = \"{name}\"\npath = {{ prefix = \"{prefix}\" }}\nto = \"{to}\"\n"
    )
}

pub const KEY_STORES: &str = "3f1c9a7e5b-stores";
pub const KEY_ORDERS: &str = "9d2b-orders-from-a-file";
pub const KEY_ENV: &str = "k-from-the-environment";

pub fn key_config(backend: &Backend, dir: &std::path::Path) -> String {
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

pub const AK: &str = "AKIDEXAMPLE01";
pub const SK: &str = "s3cr3tEXAMPLE";
pub const AK_ORDERS: &str = "AKIDORDERS02";

pub fn signature_config(backend: &Backend) -> String {
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

pub fn sha256_hex(b: &[u8]) -> String {
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
pub struct VerifyingBackend {
    pub child: Child,
    pub url: String,
}

impl Drop for VerifyingBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn documented_verifier() -> String {
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

pub fn verifying_backend(secret: &str) -> VerifyingBackend {
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
    let port = common::printed_port(&mut child);
    VerifyingBackend {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// Polls `probe` until it returns true, for at most `within`.
pub fn eventually(within: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}
