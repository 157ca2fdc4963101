//! TLS listeners with real clients: curl and `openssl s_client` against ringway,
//! certificates made per test (`tls_support`). Covered: SNI selection (exact,
//! one-label wildcard, default without SNI or without a match), ALPN, a TLS
//! 1.2-only client and `min_version`, `X-Forwarded-Proto` from the connection,
//! resumption on a second connection across two shards (tickets and session ids)
//! and not past a newly required client certificate, the handshake timeout and the
//! limit on handshakes in flight, certificate renewal under load with no failed
//! request, a mismatched key refused, mTLS, `check`'s expiry warning; and
//! adversarial clients (an oversized fragmented ClientHello, a record dripped a
//! byte at a time).
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod tls_support;

use common::Backend;
use rcgen::KeyPair;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tls_support::*;

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
    let find = |target: &str| received(&backend, target);
    assert_eq!(find("/claims-http").header_all("x-forwarded-proto"), ["https"]);

    // The plain listener beside it stays plain, whatever the client says.
    let (status, body) = get_with(gw.addr, "/plain", &["X-Forwarded-Proto: https"]);
    assert_eq!(status, 200, "{body}");
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
    let (gw, tls) = start(&dir, &listener_config(&pki, &extra, &backend.url()));
    let ca = pki.path("edge-ca.pem");
    // The verified subject goes upstream as x-forwarded-client-cert (Envoy's XFCC);
    // a client's own is dropped.
    let forged = "X-Forwarded-Client-Cert: Subject=\"CN=admin\"";
    let cert = [
        "--cert",
        &clients.path("alice.pem"),
        "--key",
        &clients.path("alice.key"),
        "-H",
        forged,
    ];
    let (status, _, verbose) = curl(tls, "api.example.com", "/alice", &ca, &cert);
    assert_eq!(status, 200, "{verbose}");
    let find = |target: &str| received(&backend, target);
    assert_eq!(
        find("/alice").header_all("x-forwarded-client-cert"),
        ["Subject=\"CN=alice\""]
    );
    let (status, _, _) = curl(tls, "api.example.com", "/", &ca, &[]);
    assert_eq!(status, 0, "no client certificate, no handshake");
    // Nor can a plain-HTTP client forge one.
    let (status, body) = get_with(gw.addr, "/plain", &[forged]);
    assert_eq!(status, 200, "{body}");
    assert!(find("/plain").header_all("x-forwarded-client-cert").is_empty());
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
// Adversarial peers (regressions of the TLS review)

/// A ClientHello that declares 65,530 bytes and comes in five full records fills
/// rustls' handshake buffer before it is whole. The connection is refused and
/// closed, and the shard goes on serving: it must not spin on a buffer that cannot
/// take more.
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
