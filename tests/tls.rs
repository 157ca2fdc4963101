//! TLS on both sides, with real clients and servers: curl and `openssl s_client`
//! against ringway's TLS listeners, and Python's `ssl` module as an HTTPS backend
//! with its own CA. Certificates are generated per test (rcgen) into the test's
//! directory; nothing is mocked.
//!
//! Covered: SNI selection (exact, one-label wildcard, default without SNI or without
//! a match), ALPN, a TLS 1.2-only client, `X-Forwarded-Proto: https`, session
//! resumption on a second connection (tickets and session ids, across two shards),
//! the handshake timeout and the limit on handshakes in flight, certificate reload
//! under load with no failed handshake, a broken certificate refused at reload, mTLS
//! on a listener; upstream HTTPS with a configured CA, verification failures (502
//! naming the problem, counted), `insecure_skip_verify`, a client certificate to the
//! backend, and SNI isolation of pooled connections.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{Backend, Gateway};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// Certificates

/// A test CA that signs leaf certificates into a directory.
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    fn new(dir: &Path, name: &str) -> Pki {
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
    fn leaf(&self, file: &str, cn: &str, names: &[&str]) {
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

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// Writes a file as renewal tools do: a new file renamed over the old one.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
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
fn start(dir: &Path, toml: &str) -> (Gateway, SocketAddr) {
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
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let child = child.unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (does .ci/run install it?)"));
    child.wait_with_output().unwrap()
}

/// curl to `https://NAME:PORT/PATH` resolved to `addr`, trusting `ca`. Returns
/// (status, body, verbose stderr).
fn curl(addr: SocketAddr, name: &str, path: &str, ca: &str, extra: &[&str]) -> (u16, String, String) {
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
fn s_client(addr: SocketAddr, args: &[&str], input: &str) -> String {
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

fn wait_bounded(mut child: Child, within: Duration) -> Output {
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
fn subject_cn(out: &str) -> Option<String> {
    let line = out.lines().find(|l| l.starts_with("subject="))?;
    let cn = line.split("CN").nth(1)?;
    Some(cn.trim_start_matches([' ', '=']).trim().to_string())
}

/// A metric's value from the admin port (summed over label sets that contain all of
/// `labels`).
fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> u64 {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn admin_addr(gw: &Gateway) -> SocketAddr {
    let line = gw
        .stdout_line("ringway admin on ", Duration::from_secs(5))
        .expect("an admin line");
    line.trim().parse().unwrap()
}

// ---------------------------------------------------------------------------------
// An HTTPS backend: Python's http.server behind its ssl module.

const HTTPS_BACKEND: &str = r#"
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
struct HttpsBackend {
    child: Child,
    port: u16,
}

impl HttpsBackend {
    fn start(dir: &Path, cert: &str, key: &str, client_ca: Option<&str>) -> HttpsBackend {
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
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the backend's port");
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
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

// ---------------------------------------------------------------------------------
// Downstream

fn listener_config(pki: &Pki, extra: &str, backend: &str) -> String {
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

fn three_certs(dir: &Path) -> Pki {
    let pki = Pki::new(dir, "edge");
    pki.leaf("default", "default-cert", &["default.test"]);
    pki.leaf("wildcard", "wildcard-cert", &["*.example.com"]);
    pki.leaf("api", "api-cert", &["api.example.com"]);
    pki
}

#[test]
fn sni_picks_exact_wildcard_and_default_certificates() {
    let dir = temp_dir("sni");
    let pki = three_certs(&dir);
    let backend = Backend::echo("be");
    let (gw, tls) = start(&dir, &listener_config(&pki, "", &backend.url()));
    let ca = pki.path("edge-ca.pem");

    let cn = |args: &[&str]| subject_cn(&s_client(tls, args, "")).unwrap_or_default();
    assert_eq!(cn(&["-servername", "api.example.com"]), "api-cert");
    assert_eq!(cn(&["-servername", "API.Example.COM"]), "api-cert");
    assert_eq!(cn(&["-servername", "shop.example.com"]), "wildcard-cert");
    assert_eq!(
        cn(&["-servername", "a.b.example.com"]),
        "default-cert",
        "a wildcard covers one label"
    );
    assert_eq!(cn(&["-servername", "other.test"]), "default-cert");
    assert_eq!(cn(&["-noservername"]), "default-cert");

    // curl verifies the chain and the name, negotiates ALPN, and the backend sees
    // the scheme the client used.
    let (status, _, verbose) = curl(tls, "api.example.com", "/x", &ca, &[]);
    assert_eq!(status, 200, "{verbose}");
    assert!(verbose.contains("ALPN: server accepted http/1.1"), "{verbose}");
    assert_eq!(backend.only_request().header("x-forwarded-proto"), Some("https"));
    let (status, _, verbose) = curl(tls, "shop.example.com", "/y", &ca, &[]);
    assert_eq!(status, 200, "{verbose}");

    // A client cannot claim the other scheme: its own X-Forwarded-Proto is replaced.
    let claim = ["-H", "X-Forwarded-Proto: http"];
    let (status, _, verbose) = curl(tls, "api.example.com", "/claims-http", &ca, &claim);
    assert_eq!(status, 200, "{verbose}");
    let find = |target: &str| {
        backend
            .requests()
            .into_iter()
            .find(|r| r.target == target)
            .unwrap()
    };
    assert_eq!(find("/claims-http").header_all("x-forwarded-proto"), ["https"]);

    // The plain listener beside it stays plain, whatever the client says.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /plain HTTP/1.1\r\nHost: gw\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(find("/plain").header_all("x-forwarded-proto"), ["http"]);
    let admin = admin_addr(&gw);
    assert!(metric(admin, "ringway_tls_handshakes_total", &[]) >= 8);
    assert!(metric(admin, "ringway_tls_alpn_total", &["http/1.1"]) >= 2);
}

#[test]
fn tls12_only_clients_and_min_version() {
    let dir = temp_dir("versions");
    let pki = three_certs(&dir);
    let backend = Backend::echo("be");
    let (_gw, tls) = start(&dir, &listener_config(&pki, "", &backend.url()));
    let ca = pki.path("edge-ca.pem");
    let (status, _, verbose) = curl(
        tls,
        "api.example.com",
        "/",
        &ca,
        &["--tlsv1.2", "--tls-max", "1.2"],
    );
    assert_eq!(status, 200, "{verbose}");
    assert!(verbose.contains("TLSv1.2"), "{verbose}");
    drop(_gw);

    let dir = temp_dir("versions13");
    let pki = three_certs(&dir);
    let (_gw, tls) = start(
        &dir,
        &listener_config(&pki, "min_version = \"1.3\"", &backend.url()),
    );
    let out = s_client(tls, &["-tls1_2", "-servername", "api.example.com"], "");
    assert!(
        !out.contains("Cipher is ECDHE"),
        "a TLS 1.2 client is refused: {out}"
    );
    let out = s_client(tls, &["-tls1_3", "-servername", "api.example.com"], "");
    assert!(out.contains("TLSv1.3"), "{out}");
}

/// A client resumes on its second connection, whichever of the two shards accepts
/// it: tickets (TLS 1.3 and 1.2) come from one ticketer, session ids from one cache.
#[test]
fn sessions_resume_across_shards() {
    let dir = temp_dir("resume");
    let pki = three_certs(&dir);
    let backend = Backend::echo("be");
    let (gw, tls) = start(&dir, &listener_config(&pki, "", &backend.url()));
    let sess = dir.join("session.pem").display().to_string();
    // A request with `Connection: close` keeps the client until the gateway closes:
    // by then the TLS 1.3 tickets sent after the handshake have arrived.
    let request = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut resumed = [0; 3];
    let rounds = 8;
    let kinds: [&[&str]; 3] = [&["-tls1_3"], &["-tls1_2"], &["-tls1_2", "-no_ticket"]];
    for (kind, args) in kinds.iter().enumerate() {
        for _ in 0..rounds {
            let with = |more: &[&str]| {
                let base = ["-ign_eof", "-servername", "api.example.com"];
                s_client(tls, &[&base[..], args, more].concat(), request)
            };
            let first = with(&["-sess_out", &sess]);
            assert!(
                first.contains("New, TLS") && first.contains("HTTP/1.1 200"),
                "{first}"
            );
            let second = with(&["-sess_in", &sess]);
            assert!(second.contains("HTTP/1.1 200"), "{second}");
            if second.contains("Reused, TLS") {
                resumed[kind] += 1;
            }
        }
    }
    // Every second connection resumes: tickets (TLS 1.3, 1.2), the session-id cache.
    assert_eq!(resumed, [rounds; 3]);
    let resumed = resumed.iter().sum::<usize>();
    let admin = admin_addr(&gw);
    assert_eq!(metric(admin, "ringway_tls_resumed_total", &[]), resumed as u64);
}

/// A client that opens TCP and sends nothing, or half a ClientHello, is closed at
/// the handshake timeout; beyond `max_handshakes` in flight a connection is closed
/// at once; and none of it stops a real client from being served.
#[test]
fn silent_and_slow_handshakes_are_bounded() {
    let dir = temp_dir("hs-timeout");
    let pki = three_certs(&dir);
    let backend = Backend::echo("be");
    let extra = "handshake_timeout = \"1s\"\nmax_handshakes = 4";
    let toml = listener_config(&pki, extra, &backend.url()).replace("shards = 2", "shards = 1");
    let (gw, tls) = start(&dir, &toml);
    let ca = pki.path("edge-ca.pem");

    let closed_within = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 512];
        let r = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        (r, t.elapsed())
    };
    // Silent.
    let s = TcpStream::connect(tls).unwrap();
    let (r, took) = closed_within(s);
    assert!(
        r.is_ok() && took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{r:?} {took:?}"
    );
    // Half a ClientHello: a record header promising 512 bytes, and 10 of them.
    let mut s = TcpStream::connect(tls).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .unwrap();
    let (r, took) = closed_within(s);
    assert!(r.is_ok() && took < Duration::from_secs(3), "{r:?} {took:?}");

    // Four silent connections fill the shard's handshake slots; the fifth is closed
    // at once, and once the four time out a real client is served.
    let hold: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(tls).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let fifth = TcpStream::connect(tls).unwrap();
    let (r, took) = closed_within(fifth);
    assert!(r.is_ok() && took < Duration::from_millis(700), "{r:?} {took:?}");
    drop(hold);
    std::thread::sleep(Duration::from_millis(1200));
    let (status, _, verbose) = curl(tls, "api.example.com", "/", &ca, &[]);
    assert_eq!(status, 200, "{verbose}");
    let admin = admin_addr(&gw);
    assert!(
        metric(
            admin,
            "ringway_tls_handshake_failures_total",
            &["reason=\"overload\""]
        ) >= 1
    );
    assert!(
        metric(
            admin,
            "ringway_tls_handshake_failures_total",
            &["reason=\"timeout\""]
        ) >= 2
    );
}

/// Renewed certificate files are picked up without a restart (the file watch), while
/// clients keep connecting: none fails. A broken pair is refused and the running
/// certificate keeps serving.
#[test]
fn certificates_reload_under_load_without_failed_handshakes() {
    let dir = temp_dir("reload");
    let pki = three_certs(&dir);
    let backend = Backend::echo("be");
    let (gw, tls) = start(&dir, &listener_config(&pki, "", &backend.url()));
    let ca = pki.path("edge-ca.pem");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ca) = (stop.clone(), ca.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, _, verbose) = curl(tls, "api.example.com", "/load", &ca, &[]);
                    if status == 200 {
                        ok += 1;
                    } else {
                        failed.push(verbose);
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    pki.leaf("api", "api-cert-renewed", &["api.example.com"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = String::new();
    while Instant::now() < deadline {
        served = subject_cn(&s_client(tls, &["-servername", "api.example.com"], "")).unwrap_or_default();
        if served == "api-cert-renewed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(served, "api-cert-renewed", "{}", gw.stderr());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        let (ok, failed) = t.join().unwrap();
        assert!(ok > 0);
        assert!(failed.is_empty(), "{} failed: {}", failed.len(), failed[0]);
    }

    // A key that is not the certificate's: refused, named, the renewed one serves.
    let before = gw.stderr().len();
    let other = KeyPair::generate().unwrap();
    write_atomically(&dir.join("api.key"), other.serialize_pem().as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !gw.stderr()[before..].contains("do not make a certificate") {
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = gw.stderr()[before..].to_string();
    assert!(err.contains("reload failed") && err.contains("api.key"), "{err}");
    let served = subject_cn(&s_client(tls, &["-servername", "api.example.com"], "")).unwrap_or_default();
    assert_eq!(served, "api-cert-renewed");
}

#[test]
fn client_certificates_on_a_listener() {
    let dir = temp_dir("mtls");
    let pki = three_certs(&dir);
    let clients = Pki::new(&dir, "clients");
    clients.leaf("alice", "alice", &["alice.test"]);
    let backend = Backend::echo("be");
    let extra = format!("client_ca = \"{}\"", clients.path("clients-ca.pem"));
    let (_gw, tls) = start(&dir, &listener_config(&pki, &extra, &backend.url()));
    let ca = pki.path("edge-ca.pem");
    let cert = [
        "--cert",
        &clients.path("alice.pem"),
        "--key",
        &clients.path("alice.key"),
    ];
    let (status, _, verbose) = curl(tls, "api.example.com", "/", &ca, &cert);
    assert_eq!(status, 200, "{verbose}");
    let (status, _, _) = curl(tls, "api.example.com", "/", &ca, &[]);
    assert_eq!(status, 0, "no client certificate, no handshake");
}

#[test]
fn check_names_a_mismatched_key_and_warns_of_expiry() {
    let dir = temp_dir("check");
    let pki = three_certs(&dir);
    // A certificate that expires in 10 days, from openssl.
    let out = run(Command::new("openssl").current_dir(&dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "soon.key",
        "-out",
        "soon.pem",
        "-days",
        "10",
        "-subj",
        "/CN=soon",
        "-addext",
        "subjectAltName=DNS:soon.test",
    ]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = listener_config(&pki, "", "http://127.0.0.1:9").replace(
        "{ cert = \"api.pem\", key = \"api.key\" },",
        "{ cert = \"api.pem\", key = \"api.key\" },\n  { cert = \"soon.pem\", key = \"soon.key\" },",
    );
    let file = dir.join("ringway.toml");
    std::fs::write(&file, &toml).unwrap();
    let check = |file: &Path| {
        let out = run(Command::new(env!("CARGO_BIN_EXE_ringway"))
            .arg("check")
            .arg("-c")
            .arg(file));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = check(&file);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("soon.pem") && out.contains("expires"), "{out}");

    std::fs::copy(dir.join("default.key"), dir.join("api.key")).unwrap();
    let (code, out) = check(&file);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("api.pem") && out.contains("api.key"), "{out}");
    let line = toml.lines().position(|l| l.contains("api.pem")).unwrap() + 1;
    assert!(
        out.contains(&format!("ringway.toml:{line}:")),
        "FILE:LINE:COL of the pair: {out}"
    );
}

// ---------------------------------------------------------------------------------
// Upstream

fn upstream_config(endpoints: &str, routes: &[(&str, &str)]) -> String {
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

// ---------------------------------------------------------------------------------
// Adversarial peers (regressions of the TLS review)

/// A ClientHello that declares 65,530 bytes and comes in five full records fills
/// rustls' handshake buffer before it is whole. The connection is refused and
/// closed, and the shard goes on serving: it must not spin on a buffer that cannot
/// take more.
#[test]
fn an_oversized_fragmented_client_hello_is_refused_without_stalling_the_shard() {
    let dir = temp_dir("bighello");
    let pki = three_certs(&dir);
    let backend = Backend::echo("be");
    let toml = listener_config(&pki, "", &backend.url()).replace("shards = 2", "shards = 1");
    let (gw, tls) = start(&dir, &toml);
    let ca = pki.path("edge-ca.pem");
    let mut s = TcpStream::connect(tls).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
        let mut payload = vec![0x41u8; 0x4000];
        if i == 0 {
            payload[..4].copy_from_slice(&[0x01, 0x00, 0xff, 0xfa]);
        }
        bytes.extend_from_slice(&payload);
    }
    let started = Instant::now();
    let _ = s.write_all(&bytes);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed in {:?}",
        started.elapsed()
    );
    let (status, _, verbose) = curl(tls, "api.example.com", "/after", &ca, &["--max-time", "3"]);
    assert_eq!(status, 200, "the shard still serves: {verbose}\n{}", gw.stderr());
}

/// A request head dripped one byte at a time inside one TLS record is still bound by
/// `client_header_timeout`: reads of a record's pieces share the deadline.
#[test]
fn a_tls_record_dripped_byte_by_byte_is_bound_by_the_header_timeout() {
    let dir = temp_dir("drip");
    let pki = three_certs(&dir);
    let backend = Backend::echo("be");
    let toml = listener_config(&pki, "", &backend.url()).replace(
        "shards = 2",
        "shards = 1\n[limits]\nclient_header_timeout = \"1s\"",
    );
    // `[limits]` must not split `[server]` from `[server.tls]`: put it last.
    let toml = {
        let (head, rest) = toml
            .split_once("[limits]\nclient_header_timeout = \"1s\"")
            .unwrap();
        format!("{head}{rest}\n[limits]\nclient_header_timeout = \"1s\"\n")
    };
    let (_gw, tls) = start(&dir, &toml);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_file_iter(pki.path("edge-ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("api.example.com").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(tls).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    // The whole request as one record, written out a byte every 300 ms.
    conn.writer()
        .write_all(b"GET /drip HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut record = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut record).unwrap();
    }
    let started = Instant::now();
    let mut closed = false;
    for b in &record {
        if sock.write_all(std::slice::from_ref(b)).is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 64];
        match sock.read(&mut probe) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let took = started.elapsed();
    assert!(
        closed,
        "the connection is closed before the record is whole ({} bytes)",
        record.len()
    );
    assert!(
        took < Duration::from_secs(4),
        "closed after {took:?}, not within client_header_timeout"
    );
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

/// A session made before a reload that starts requiring client certificates does
/// not resume past the new requirement: resumption state is per client-certificate
/// policy.
#[test]
fn sessions_do_not_resume_past_a_new_client_certificate_requirement() {
    let dir = temp_dir("resume-mtls");
    let pki = three_certs(&dir);
    let clients = Pki::new(&dir, "clients");
    clients.leaf("alice", "alice", &["alice.test"]);
    let backend = Backend::echo("be");
    let (gw, tls) = start(&dir, &listener_config(&pki, "", &backend.url()));
    let sess = dir.join("session.pem").display().to_string();
    let request = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let args = ["-ign_eof", "-tls1_3", "-servername", "api.example.com"];
    let first = s_client(tls, &[&args[..], &["-sess_out", &sess]].concat(), request);
    assert!(first.contains("HTTP/1.1 200"), "{first}");

    let required = format!("client_ca = \"{}\"", clients.path("clients-ca.pem"));
    let before = gw.stderr().len();
    std::fs::write(gw.config_file(), listener_config(&pki, &required, &backend.url())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !gw.stderr()[before..].contains("reloaded") {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.stderr()[before..].contains("reloaded"), "{}", gw.stderr());
    let second = s_client(tls, &[&args[..], &["-sess_in", &sess]].concat(), request);
    assert!(
        !second.contains("Reused, TLS"),
        "resumed without a client certificate: {second}"
    );
    assert!(
        !second.contains("HTTP/1.1 200"),
        "served without a client certificate: {second}"
    );
}
