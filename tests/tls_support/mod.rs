//! Fixtures for the TLS integration tests (`tls_listeners.rs`, `tls_upstreams.rs`):
//! a test CA that signs certificates per test (rcgen), the real TLS clients (curl,
//! `openssl s_client`) with bounded waits, Python's `ssl` module as an HTTPS
//! backend, and the configs the tests start ringway with.

#![allow(dead_code)] // each test file uses a different part

pub use crate::common::admin_addr;
use crate::common::Gateway;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// Certificates

/// A test CA that signs leaf certificates into a directory.
pub struct Pki {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` with common name `cn`, written to `<file>.pem` and
    /// `<file>.key` (PKCS#8).
    pub fn leaf(&self, file: &str, cn: &str, names: &[&str]) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        write_atomically(&self.dir.join(format!("{file}.pem")), cert.pem().as_bytes());
        write_atomically(
            &self.dir.join(format!("{file}.key")),
            key.serialize_pem().as_bytes(),
        );
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// Writes a file as renewal tools do: a new file renamed over the old one.
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!("ringway-tls-{name}-{}-{nanos}", std::process::id()))
}

/// Starts ringway on `toml` (written into `dir`, beside the certificates); returns
/// it with its TLS listener's address (the first `(tls)` listening line). The
/// configs listen plain on 127.0.0.1:0 and TLS on 127.0.0.2:0 (an address is plain
/// or TLS, and port 0 written twice would be one address).
pub fn start(dir: &Path, toml: &str) -> (Gateway, SocketAddr) {
    let file = dir.join("ringway.toml");
    std::fs::write(&file, toml).unwrap();
    let gw = Gateway::start_file(dir.to_path_buf(), file);
    let line = gw
        .stdout_line("ringway listening on ", Duration::from_secs(5))
        .expect("a TLS listening line");
    let tls = line.trim_end_matches(" (tls)").parse().expect("a TLS address");
    (gw, tls)
}

// ---------------------------------------------------------------------------------
// Clients

/// Runs a command with a bounded time; its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let child = child.unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (does .ci/run install it?)"));
    child.wait_with_output().unwrap()
}

/// curl to `https://NAME:PORT/PATH` resolved to `addr`, trusting `ca`. Returns
/// (status, body, verbose stderr).
pub fn curl(addr: SocketAddr, name: &str, path: &str, ca: &str, extra: &[&str]) -> (u16, String, String) {
    let url = format!("https://{name}:{}{path}", addr.port());
    let out = run(Command::new("curl")
        .args(["-sS", "-v", "--max-time", "10", "--cacert", ca])
        .arg("--resolve")
        .arg(format!("{name}:{}:{}", addr.port(), addr.ip()))
        .args(extra)
        .args(["-w", "\n%{http_code}"])
        .arg(&url));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let status = code.trim().parse().unwrap_or(0);
    (
        status,
        body.to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl s_client` with `args`, sending `input`; its stdout and stderr.
pub fn s_client(addr: SocketAddr, args: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (does .ci/run install it?)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = wait_bounded(child, Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

pub fn wait_bounded(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// The subject CN of the certificate a server presents to `openssl s_client`.
pub fn subject_cn(out: &str) -> Option<String> {
    let line = out.lines().find(|l| l.starts_with("subject="))?;
    let cn = line.split("CN").nth(1)?;
    Some(cn.trim_start_matches([' ', '=']).trim().to_string())
}

/// A metric's value from the admin port (summed over label sets that contain all of
/// `labels`).
pub fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> u64 {
    crate::common::admin_metrics(admin)
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------
// An HTTPS backend: Python's http.server behind its ssl module.

pub const HTTPS_BACKEND: &str = r#"
import http.server, ssl, sys
cert, key, client_ca = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if client_ca != "-":
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
def on_sni(sock, name, _ctx):
    sock.sni_name = name
ctx.sni_callback = on_sni
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        sni = getattr(self.connection, "sni_name", None)
        peer = self.connection.getpeercert()
        who = dict(x[0] for x in peer["subject"]).get("commonName") if peer else "-"
        body = ("sni=%s client=%s path=%s conn=%d\n" % (sni, who, self.path, id(self.connection))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        if self.path.startswith("/early"):
            # A final answer before the body is read, then a pause before draining
            # it: the gateway is still sending when the answer arrives.
            body = b"too large\n"
            self.send_response(413)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            import time
            time.sleep(1.5)
            self.close_connection = True
            return
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// A running Python HTTPS backend, killed on drop.
pub struct HttpsBackend {
    child: Child,
    pub port: u16,
}

impl HttpsBackend {
    pub fn start(dir: &Path, cert: &str, key: &str, client_ca: Option<&str>) -> HttpsBackend {
        let script = dir.join("https_backend.py");
        std::fs::write(&script, HTTPS_BACKEND).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .args([cert, key, client_ca.unwrap_or("-")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let port = crate::common::printed_port(&mut child);
        HttpsBackend { child, port }
    }
}

impl Drop for HttpsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain GET through the gateway's plain listener.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_with(addr, path, &[])
}

/// [`get`] with extra header lines (`"Name: value"`).
pub fn get_with(addr: SocketAddr, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: gw\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// The request the backend received for `target`.
pub fn received(backend: &crate::common::Backend, target: &str) -> crate::common::Request {
    backend
        .requests()
        .into_iter()
        .find(|r| r.target == target)
        .unwrap_or_else(|| panic!("the backend got no request for {target}"))
}

// ---------------------------------------------------------------------------------
// Downstream

pub fn listener_config(pki: &Pki, extra: &str, backend: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shards = 2
[server.tls]
listen = ["127.0.0.2:0"]
certificates = [
  {{ cert = "default.pem", key = "default.key" }},
  {{ cert = "wildcard.pem", key = "wildcard.key" }},
  {{ cert = "api.pem", key = "api.key" }},
]
{extra}
[admin]
listen = "127.0.0.1:0"
[endpoints]
be = "{backend}"
[[groups]]
name = "g"
  [[groups.routes]]
  name = "all"
  path = {{ regex = "/(.*)" }}
  to = "{{#endpoints['be']}}/{{#group[0]}}"
"#
    )
    .replace("{dir}", &pki.dir.display().to_string())
}

pub fn three_certs(dir: &Path) -> Pki {
    let pki = Pki::new(dir, "edge");
    pki.leaf("default", "default-cert", &["default.test"]);
    pki.leaf("wildcard", "wildcard-cert", &["*.example.com"]);
    pki.leaf("api", "api-cert", &["api.example.com"]);
    pki
}

// ---------------------------------------------------------------------------------
// Upstream

pub fn upstream_config(endpoints: &str, routes: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshards = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n[endpoints]\n{endpoints}\n[[groups]]\nname = \"g\"\n"
    );
    for (name, to) in routes {
        s += &format!(
            "  [[groups.routes]]\n  name = \"{name}\"\n  path = {{ regex = \"/{name}/(.*)\" }}\n  to = \"{to}/{name}/{{#group[0]}}\"\n"
        );
    }
    s
}
