//! Regression tests of the hardening issue (issue 9), named after its items:
//! requests lost on pooled connections the backend closed, early final responses.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{admin_metrics, start_with_admin, Backend, Config, Gateway};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn api(url: &str) -> Config {
    Config::new()
        .endpoint("b", url)
        .route("name = \"api\"\npath = { regex = \"/api/(.*)\" }\nto = \"{#endpoints['b']}/{#group[0]}\"")
}

/// Issue 9.1: a backend closes idle keep-alive connections (gunicorn `--keep-alive
/// 2`, here 150 ms). A request with a body that comes after must not be sent on
/// the closed pooled connection (it could not be retried: 502) — it gets a fresh
/// one and the backend's answer. Both a small body and a 20,000-byte one (which
/// used to get no answer and a close after 60 s).
#[test]
fn issue9_body_request_after_the_backend_closed_the_idle_connection_is_served() {
    let b = Backend::echo_idle("b", Duration::from_millis(150));
    let gw = api(&b.url()).start();
    let mut c = gw.client();
    assert_eq!(c.get("/api/get").status, 200);
    std::thread::sleep(Duration::from_millis(400));
    c.send(b"POST /api/post HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nx=1");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "x=1");

    std::thread::sleep(Duration::from_millis(400));
    let body = vec![b'z'; 20_000];
    let mut req = b"POST /api/big HTTP/1.1\r\nHost: h\r\nContent-Length: 20000\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    let start = Instant::now();
    c.send(&req);
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.len(), 20_000);
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    assert!(
        b.connections() >= 3,
        "each request after an idle close needs a new connection"
    );
}

/// Issue 9.1: closed idle connections leave the pool by themselves (the sweep), and
/// say so in the metrics.
#[test]
fn issue9_idle_connections_closed_by_the_backend_are_counted_and_dropped() {
    let b = Backend::echo_idle("b", Duration::from_millis(100));
    let (gw, admin) = start_with_admin(&api(&b.url()));
    let mut c = gw.client();
    assert_eq!(c.get("/api/a").status, 200);
    // The sweep runs once a second; the backend closed the connection after 100 ms.
    let start = Instant::now();
    loop {
        let m = admin_metrics(admin);
        let closed = m
            .lines()
            .find(|l| l.starts_with("ringway_upstream_closed_idle_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let idle = m
            .lines()
            .find(|l| l.starts_with("ringway_upstream_idle_connections{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok());
        if closed >= 1 && idle == Some(0) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 9.2: a backend answers 413 right after the head without reading the body,
/// and closes. The client gets the 413 (RFC 9112 §9.5), not a 502, and the
/// connection closes after it (the rest of the body was never read).
#[test]
fn issue9_early_final_response_is_relayed_while_the_body_is_sent() {
    let bad = common::Scripted::custom(|mut s, _| {
        if !common::read_request(&mut s) {
            return;
        }
        let _ = s.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large",
        );
        // Dropped with the body unread: the kernel resets the connection.
    });
    let gw = api(&bad.url()).start();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body_len = 4 << 20;
    let head = format!("POST /api/upload HTTP/1.1\r\nHost: h\r\nContent-Length: {body_len}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'u'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            if w.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !got.windows(9).any(|w| w == b"too large") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "read failed after {:?}: {e}; got {:?}",
                start.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    drop(s);
    let _ = writer.join();
}

/// A backend that records every byte it receives on its first connection and answers
/// `200 ok` once it has seen the end of a chunked body.
struct Recorder {
    url: String,
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

fn recorder() -> Recorder {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = bytes.clone();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 4096];
        let mut answered = false;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut all = sink.lock().unwrap();
            all.extend_from_slice(&buf[..n]);
            if !answered && all.ends_with(b"0\r\n\r\n") {
                answered = true;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            }
        }
    });
    Recorder { url, bytes }
}

/// Issue 9.3: a request line hidden in the trailer section (after the last chunk)
/// is refused with 400 and the connection closed; not a byte of it reaches the
/// backend.
#[test]
fn issue9_request_smuggled_in_trailers_is_refused_and_never_forwarded() {
    let rec = recorder();
    let gw = api(&rec.url).start();
    let mut c = gw.client();
    c.send(
        b"POST /api/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text().contains("trailer"), "{}", r.text());
    assert!(c.is_closed());
    std::thread::sleep(Duration::from_millis(100));
    let got = rec.bytes.lock().unwrap().clone();
    assert!(
        !String::from_utf8_lossy(&got).contains("/admin"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// Issue 9.3: well-formed request trailers are validated and dropped: the backend
/// gets the chunks and an empty trailer section (trailers carrying framing or
/// routing fields included).
#[test]
fn issue9_request_trailers_are_not_forwarded() {
    let rec = recorder();
    let gw = api(&rec.url).start();
    let mut c = gw.client();
    c.send(
        b"POST /api/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nx-sum: 1\r\nContent-Length: 99\r\nHost: evil\r\n\r\n",
    );
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    let got = String::from_utf8_lossy(&rec.bytes.lock().unwrap()).into_owned();
    assert!(got.ends_with("\r\n\r\n3;e=1\r\nabc\r\n0\r\n\r\n"), "{got:?}");
    assert!(!got.contains("x-sum") && !got.contains("evil"), "{got:?}");
}

/// Issue 9.3: response trailers reach only a client that asked for them with
/// `TE: trailers`, and never carry framing or routing fields.
#[test]
fn issue9_response_trailers_only_to_clients_that_ask() {
    let b = common::Scripted::custom(|s, _| {
        let mut w = common::Wire::new(s);
        while let Ok(Some(_)) = w.head() {
            let _ = w
                .stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-digest\r\n\r\n2\r\nhi\r\n0\r\nx-digest: abc\r\nContent-Length: 5\r\nHost: evil\r\n\r\n");
        }
    });
    let gw = api(&b.url()).start();
    let raw = |te: &str| {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /api/t HTTP/1.1\r\nHost: h\r\n{te}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let plain = raw("");
    assert!(plain.ends_with("\r\n\r\n2\r\nhi\r\n0\r\n\r\n"), "{plain:?}");
    let asked = raw("TE: trailers\r\n");
    assert!(asked.ends_with("\r\n0\r\nx-digest: abc\r\n\r\n"), "{asked:?}");
}

/// Issue 9.4: path spellings that common backends resolve to a protected path are
/// refused with 400 by default, before any backend sees them.
#[test]
fn issue9_backend_resolved_path_spellings_are_refused() {
    let b = Backend::echo("b");
    let gw = Config::new()
        .endpoint("b", &b.url())
        .route("name = \"public\"\npath = { prefix = \"/public\" }\nto = \"{#endpoints['b']}/public\"")
        .route("name = \"all\"\npath = { regex = \"/(.*)\" }\nto = \"{#endpoints['b']}/{#group[0]}\"")
        .start();
    let mut c = gw.client();
    for (path, why) in [
        ("/public\\..\\admin", "backslash"),
        ("/public/..%5Cadmin", "backslash"),
        ("/admin;x=1", "path parameter"),
        ("/public/..;/admin", "path parameter"),
        ("/admin%00.json", "control"),
    ] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert!(r.text().contains(why), "{path}: {}", r.text());
    }
    assert_eq!(b.requests().len(), 0, "no spelling reached the backend");
}

/// Issue 9.4: where the backends need those spellings, the config says how to read
/// them: backslashes as slashes, `;` parameters stripped — and rules see what the
/// backend will.
#[test]
fn issue9_path_spellings_can_be_normalized_instead() {
    let b = Backend::echo("b");
    let gw = Config::new()
        .server("normalize = { backslash = \"slash\", semicolon = \"strip\" }")
        .endpoint("b", &b.url())
        .mock("admin", "/admin", 403, "admin")
        .route("name = \"all\"\npath = { regex = \"/(.*)\" }\nto = \"{#endpoints['b']}/{#group[0]}\"")
        .start();
    let mut c = gw.client();
    for path in ["/public\\..\\admin", "/admin;x=1", "/public/..;/admin"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (403, "admin"), "{path}: {r:?}");
    }
    let r = c.get("/files/a;v=1/b");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-target"), Some("/files/a/b"));
}

/// Issue 9.5: a declared body over `max_body_bytes` (default 10 MiB) is refused with
/// 413 before anything is forwarded, and the connection is closed (the body is not
/// read). No backend connection is even made.
#[test]
fn issue9_declared_body_over_the_limit_is_413_before_forwarding() {
    let b = Backend::echo("b");
    let gw = api(&b.url()).start();
    let mut c = gw.client();
    let start = Instant::now();
    c.send(b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1073741824\r\n\r\nsome");
    let r = c.response();
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.text().contains("max_body_bytes"), "{}", r.text());
    assert!(r.closes(), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(b.connections(), 0, "nothing was forwarded");
}

/// Issue 9.5: a route's own limit wins over the server's, and a chunked body is
/// refused when its running total passes the limit.
#[test]
fn issue9_route_body_limit_and_chunked_running_total() {
    let b = Backend::echo("b");
    let gw = Config::new()
        .endpoint("b", &b.url())
        .route("name = \"small\"\npath = { prefix = \"/small\" }\nto = \"{#endpoints['b']}/small\"\nmax_body_bytes = 100")
        .start();
    let mut c = gw.client();
    let mut ok = b"POST /small HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'a'; 100]);
    c.send(&ok);
    assert_eq!(c.response().status, 200);
    let mut over = b"POST /small HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n".to_vec();
    over.extend_from_slice(&[b'a'; 101]);
    c.send(&over);
    assert_eq!(c.response().status, 413);

    let mut c = gw.client();
    let mut chunked = b"POST /small HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend_from_slice(b"20\r\n");
        chunked.extend_from_slice(&[b'c'; 32]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.send(&chunked);
    let r = c.response();
    assert_eq!(r.status, 413, "{r:?}");
    assert!(c.is_closed());
    assert_eq!(b.requests().len(), 1, "only the first POST reached the backend");
}

/// Issue 9.7: upstream response heads have their own limits (`[upstream]
/// max_response_headers`, `max_response_header_bytes`); over them is a 502 whose
/// body says which limit.
#[test]
fn issue9_response_head_limits_are_their_own_and_named() {
    let b = common::Scripted::custom(|s, _| {
        let mut w = common::Wire::new(s);
        while let Ok(Some(head)) = w.head() {
            // The target is `/N`: answer with N extra fields.
            let n: usize = head
                .start
                .split(' ')
                .nth(1)
                .and_then(|t| t.trim_start_matches('/').parse().ok())
                .unwrap_or(1);
            let mut resp = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
            for i in 0..n {
                resp.push_str(&format!("x-f{i}: v\r\n"));
            }
            resp.push_str("\r\nok");
            let _ = w.stream.write_all(resp.as_bytes());
        }
    });
    let gw = api(&b.url())
        .upstream("max_response_headers = 10")
        .limits("max_headers = 5")
        .start();
    let mut c = gw.client();
    // 9 response fields: over the client limit (5), under the upstream one (10).
    assert_eq!(c.get("/api/8").status, 200);
    let r = gw.client().get("/api/20");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("max_response_headers"), "{}", r.text());
}

/// Issue 9.6c: the admin port serves connections concurrently: idle connections
/// and a client that never reads `/metrics` do not delay a health check.
#[test]
fn issue9_admin_health_check_is_not_starved_by_idle_or_slow_clients() {
    let b = Backend::echo("b");
    let (_gw, admin) = start_with_admin(&api(&b.url()));
    let idle: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(admin).unwrap()).collect();
    let mut slow = TcpStream::connect(admin).unwrap();
    write!(slow, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    drop((idle, slow));
}

/// The gateway's open descriptors (`/proc/PID/fd`).
fn open_fds(gw: &Gateway) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", gw.pid())).map_or(0, |d| d.count())
}

/// Issue 9.6: clients that request a large response and never read it are closed
/// after `send_timeout`, and their upstream connections with them: the gateway's
/// descriptors return to where they were.
#[test]
fn issue9_clients_that_never_read_are_closed_after_send_timeout() {
    const CLIENTS: usize = 10;
    // 6 MiB: more than the gateway's send buffer (tcp_wmem's 4 MiB at most) and the
    // client's pinned 8 KiB receive buffer can hold, so the response cannot complete.
    let b = Backend::start(|_| common::Reply::ok(vec![b'x'; 6 << 20]));
    let gw = api(&b.url()).limits("send_timeout = \"1s\"").start();
    let baseline = open_fds(&gw);
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            // A small receive buffer, so that the response cannot end up wholly in
            // the kernel's buffers (tcp_rmem autotuning goes to 32 MiB here).
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.set_recv_buffer_size(8 * 1024).unwrap();
            sock.connect(&gw.addr.into()).unwrap();
            let mut s: TcpStream = sock.into();
            write!(s, "GET /api/big{i} HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
            s
        })
        .collect();
    // Every request reached the backend; its response is stuck on a client that
    // does not read. (Under load the first may time out before the last arrives, so
    // the descriptors are looked at as they peak, not at one moment.)
    let start = Instant::now();
    let mut peak = 0;
    while b.requests().len() < CLIENTS {
        peak = peak.max(open_fds(&gw));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} requests",
            b.requests().len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        peak >= baseline + CLIENTS,
        "client and upstream sockets were open: peak {peak}, baseline {baseline}"
    );
    // After the send timeout (1 s, kept to within 100 ms; a write may have made
    // progress just before) the gateway has let go of both sides.
    loop {
        let now = open_fds(&gw);
        if now <= baseline {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{now} fds, baseline {baseline}: {:?}",
            std::fs::read_dir(format!("/proc/{}/fd", gw.pid())).map(|d| d
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(clients);
}

/// Issue 9.6b: a request body that stops arriving gets 408 after
/// `client_body_timeout` (its own setting, not the keep-alive timeout), and a small
/// body is read whole before an upstream connection is taken: the slow client holds
/// no backend connection meanwhile.
#[test]
fn issue9_stalled_small_body_is_408_and_holds_no_upstream() {
    let b = Backend::echo("b");
    let gw = api(&b.url()).limits("client_body_timeout = \"500ms\"").start();
    let mut c = gw.client();
    let start = Instant::now();
    c.send(b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        b.connections(),
        0,
        "no upstream connection while the body trickles"
    );
    let r = c.response();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.text().contains("not received in time"), "{}", r.text());
    assert!(r.closes());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(b.connections(), 0);

    // A small body that does complete goes up in one piece.
    let mut c = gw.client();
    c.send(b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(b.connections(), 0);
    c.send(b"def");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "abcdef"));
}

/// Issue 9.6b: a large body trickled in faster than the read timeout but slower than
/// `client_body_min_rate` is cut off with 408 once the grace period (5 s) is over.
#[test]
fn issue9_body_slower_than_the_minimum_rate_is_408() {
    let b = Backend::echo("b");
    let gw = api(&b.url()).limits("client_body_min_rate = 1000").start();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    s.write_all(b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < Duration::from_secs(9) {
        // 50 bytes a second: far below 1000.
        if s.write_all(b"z").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408 "),
        "{text:?} after {:?}",
        start.elapsed()
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(8),
        "{took:?}"
    );
}
