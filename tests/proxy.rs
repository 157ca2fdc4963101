//! End to end through the real binary: routing and rewriting, mocks, keep-alive and
//! pooling, pipelining, bodies both ways, 100-continue, HTTP/1.0 and path security.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{Backend, Config, Framing, Reply};

/// One echo backend `b`, reachable as `/api/(.*)` → `/v2/{#group[0]}`, plus the mock
/// `/health`.
fn api(b: &Backend) -> Config {
    Config::new()
        .endpoint("b", &b.url())
        .route("name = \"api\"\npath = { regex = \"/api/(.*)\" }\nto = \"{#endpoints['b']}/v2/{#group[0]}\"")
        .mock("health", "/health", 200, "ok\\n")
}

// ---------------------------------------------------------------------------------
// Routing

#[test]
fn regex_capture_is_rewritten_into_the_target_path() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/users/7/orders HTTP/1.1\r\nHost: client.example\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-backend"), Some("b"));
    assert_eq!(b.only_request().target, "/v2/users/7/orders");
}

#[test]
fn request_query_is_appended_to_the_targets_own_query() {
    let b = Backend::echo("b");
    let gw = api(&b)
        .route("name = \"search\"\npath = { exact = \"/search\" }\nto = \"{#endpoints['b']}/find?fixed=1\"")
        .start();
    let mut c = gw.client();
    assert_eq!(c.get("/api/x?q=1&r=2").header("x-target"), Some("/v2/x?q=1&r=2"));
    assert_eq!(
        c.get("/search?q=rust").header("x-target"),
        Some("/find?fixed=1&q=rust")
    );
    assert_eq!(c.get("/search").header("x-target"), Some("/find?fixed=1"));
}

#[test]
fn host_becomes_the_target_authority_and_forwarded_headers_are_added() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/a HTTP/1.1\r\nHost: client.example:8443\r\nX-Other: 1\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    let req = b.only_request();
    // The client gets the id the upstream got (issue 14: the same id everywhere).
    assert_eq!(r.head.header_all("x-request-id"), req.header_all("x-request-id"));
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(req.header_all("host"), [b.addr.to_string()]);
    assert_eq!(req.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(req.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(req.header_all("x-forwarded-host"), ["client.example:8443"]);
    assert_eq!(req.header("x-other"), Some("1"));
    let ids = req.header_all("x-request-id");
    assert_eq!(ids.len(), 1, "{:?}", req.head.raw);
    assert!(!ids[0].is_empty());
}

#[test]
fn client_request_id_and_forwarded_for_are_kept_and_extended() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(
        b"GET /api/a HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc-123\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.head.header_all("x-request-id"), ["abc-123"]);
    let req = b.only_request();
    assert_eq!(req.header_all("x-request-id"), ["abc-123"]);
    assert_eq!(req.header_all("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
}

#[test]
fn absolute_form_target_is_routed_by_its_path() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET http://it.test/api/abs?k=v HTTP/1.1\r\nHost: it.test\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(b.only_request().target, "/v2/abs?k=v");
}

#[test]
fn hop_by_hop_request_headers_are_not_forwarded() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(
        b"GET /api/h HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: foo/1\r\nProxy-Connection: keep-alive\r\n\
          X-Keep: yes\r\n\r\n",
    );
    assert_eq!(c.response().status, 200);
    let req = b.only_request();
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(
            req.header(name).is_none(),
            "{name} was forwarded:\n{}",
            req.head.raw
        );
    }
    assert_eq!(req.header("x-keep"), Some("yes"));
}

#[test]
fn hop_by_hop_response_headers_are_not_relayed() {
    let b = Backend::start(|_| {
        Reply::ok("x")
            .header("connection", "x-resp-secret")
            .header("x-resp-secret", "s")
            .header("keep-alive", "timeout=5")
            .header("x-resp-keep", "yes")
    });
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let mut c = gw.client();
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("x-resp-secret").is_none(), "{}", r.head.raw);
    assert!(r.header("keep-alive").is_none(), "{}", r.head.raw);
    assert_eq!(r.header("x-resp-keep"), Some("yes"));
    // The backend's Connection options are not the client's: it stays keep-alive.
    assert_eq!(c.get("/").status, 200);
}

#[test]
fn mock_route_answers_locally_with_its_headers_and_body() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    let r = c.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    assert_eq!(r.header("x-mock"), Some("yes"));
    assert_eq!(r.header("content-length"), Some("3"));
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    // A local answer carries a Date (RFC 9110 §6.6.1), as an IMF-fixdate.
    let date = r.header("date").expect("a Date field");
    assert!(
        date.len() == 29 && date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "{date}"
    );
    c.send(b"HEAD /health HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.head_response();
    assert_eq!((r.status, r.header("content-length")), (200, Some("3")));
    // The HEAD answer carried no body: the next response starts right after it.
    assert_eq!(c.get("/health").text(), "ok\n");
    assert_eq!(b.requests().len(), 0);
}

#[test]
fn no_match_is_400_by_default() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    let r = c.get("/nowhere");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text().contains("no route"), "{}", r.text());
    let id = r.header("x-request-id").expect("a request id");
    assert!(r.text().contains(&format!("request-id: {id}")), "{}", r.text());
    // Not a framing error: the connection stays usable.
    assert_eq!(c.get("/health").status, 200);
}

/// Rooms issue: a client's usable x-request-id is the request's id everywhere — in
/// the error body and header of a local answer, and upstream.
#[test]
fn client_request_id_is_adopted_for_local_answers() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /nowhere HTTP/1.1\r\nHost: h\r\nX-Request-Id: trace-42.a\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("x-request-id"), Some("trace-42.a"));
    assert!(r.text().contains("request-id: trace-42.a\n"), "{}", r.text());
}

/// Rooms issue: an x-request-id that is not safe to adopt (here: a space and a
/// quote) is replaced by ringway's own id, upstream as in the answer.
#[test]
fn unusable_client_request_id_is_replaced_upstream() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/a HTTP/1.1\r\nHost: h\r\nX-Request-Id: bad \"id\"\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let req = b.only_request();
    let ids = req.header_all("x-request-id");
    assert_eq!(ids.len(), 1, "{:?}", req.head.raw);
    assert_ne!(ids[0], "bad \"id\"");
    assert!(ids[0].split('-').count() == 3, "a minted id: {}", ids[0]);
}

#[test]
fn no_match_status_404_is_honoured() {
    let b = Backend::echo("b");
    let gw = api(&b).server("no_match_status = 404").start();
    assert_eq!(gw.client().get("/nowhere").status, 404);
}

#[test]
fn literal_target_origin_is_proxied_to() {
    let b = Backend::echo("lit");
    let gw = Config::new()
        .route(&format!(
            "name = \"lit\"\npath = {{ exact = \"/lit\" }}\nto = \"http://{}/x\"",
            b.addr
        ))
        .start();
    let r = gw.client().get("/lit?a=1");
    assert_eq!(r.status, 200, "{r:?}");
    let req = b.only_request();
    assert_eq!(req.target, "/x?a=1");
    assert_eq!(req.header("host"), Some(b.addr.to_string().as_str()));
}

#[test]
fn endpoint_group_round_robins_across_two_backends() {
    let (a, b) = (Backend::echo("a"), Backend::echo("b"));
    let gw = Config::new()
        .endpoint_group("pool", &[a.url(), b.url()])
        .prefix_to("all", "/", "{#endpoints['pool']}/rr")
        .start();
    let mut c = gw.client();
    let seen: Vec<String> = (0..6)
        .map(|_| c.get("/").header("x-backend").unwrap_or_default().to_string())
        .collect();
    for w in seen.windows(2) {
        assert_ne!(w[0], w[1], "not round robin: {seen:?}");
    }
    assert_eq!((a.requests().len(), b.requests().len()), (3, 3), "{seen:?}");
}

// ---------------------------------------------------------------------------------
// Keep-alive and the upstream pool

#[test]
fn twenty_requests_on_one_client_connection_use_one_backend_connection() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    for i in 0..20 {
        let r = c.get(&format!("/api/{i}"));
        assert_eq!(
            (r.status, r.header("x-target")),
            (200, Some(format!("/v2/{i}").as_str()))
        );
        assert!(!r.closes());
    }
    assert_eq!(b.connections(), 1);
    assert_eq!(b.requests().len(), 20);
}

#[test]
fn twenty_client_connections_reuse_pooled_backend_connections() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    for i in 0..20 {
        let mut c = gw.client();
        assert_eq!(c.get(&format!("/api/{i}")).status, 200);
    }
    assert!(
        b.connections() <= 2,
        "{} backend connections for 20 requests",
        b.connections()
    );
}

// ---------------------------------------------------------------------------------
// Pipelining

#[test]
fn two_pipelined_requests_are_answered_in_order() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/first HTTP/1.1\r\nHost: h\r\n\r\nGET /api/second HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().header("x-target"), Some("/v2/first"));
    assert_eq!(c.response().header("x-target"), Some("/v2/second"));
}

#[test]
fn ten_pipelined_requests_mixing_mock_proxy_and_bodies_are_answered_in_order() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    let mut all = Vec::new();
    for i in 0..10 {
        match i % 3 {
            0 => all.extend(format!("GET /api/{i} HTTP/1.1\r\nHost: h\r\n\r\n").bytes()),
            1 => all.extend(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n"),
            _ => all.extend(
                format!("POST /api/{i} HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nbody-{i}").bytes(),
            ),
        }
    }
    c.send(&all);
    for i in 0..10 {
        let r = c.response();
        assert_eq!(r.status, 200, "response {i}: {r:?}");
        match i % 3 {
            0 => assert_eq!(r.header("x-target"), Some(format!("/v2/{i}").as_str())),
            1 => assert_eq!(r.text(), "ok\n"),
            _ => assert_eq!(r.text(), format!("body-{i}")),
        }
    }
}

// ---------------------------------------------------------------------------------
// Bodies

#[test]
fn content_length_request_body_split_at_every_offset() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    let head = b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    let req = [&head[..], b"hello world"].concat();
    for cut in head.len()..req.len() {
        c.send_split(&req, &[cut]);
        let r = c.response();
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello world"),
            "cut at {cut}"
        );
    }
    assert_eq!(b.connections(), 1);
}

#[test]
fn request_head_split_at_every_offset() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    let head = b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    let req = [&head[..], b"hello world"].concat();
    for cut in 1..head.len() {
        c.send_split(&req, &[cut]);
        let r = c.response();
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello world"),
            "cut at {cut}"
        );
    }
    let methods: Vec<String> = b.requests().into_iter().map(|r| r.method).collect();
    assert!(methods.iter().all(|m| m == "POST"), "{methods:?}");
}

#[test]
fn pipelined_second_head_completed_by_a_later_read() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/first HTTP/1.1\r\nHost: h\r\n\r\nGET /api/sec");
    assert_eq!(c.response().header("x-target"), Some("/v2/first"));
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b"ond HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().header("x-target"), Some("/v2/second"));
}

#[test]
fn upstream_response_head_split_across_reads() {
    let b = common::Scripted::custom(|mut s, _| {
        use std::io::Write;
        loop {
            if !common::read_request(&mut s) {
                return;
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nx-split: ");
            std::thread::sleep(std::time::Duration::from_millis(30));
            let _ = s.write_all(b"yes\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let mut c = gw.client();
    let r = c.get("/");
    assert_eq!(
        (r.status, r.header("x-split"), r.text().as_str()),
        (200, Some("yes"), "ok"),
        "{r:?}"
    );
}

#[test]
fn chunked_request_body_split_inside_size_line_crlf_and_data() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    let head = b"POST /api/chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = b"1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n5\r\nHELLO\r\n0\r\nx-trailer: t\r\n\r\n";
    let req = [&head[..], &body[..]].concat();
    // Every offset of the body, and pairs of cuts around the CR/LF pairs.
    for cut in head.len()..req.len() {
        c.send_split(&req, &[cut]);
        let r = c.response();
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "abcdefghijklmnopqrstuvwxyzHELLO"),
            "cut at {cut} ({:?} | {:?})",
            String::from_utf8_lossy(&req[head.len()..cut]),
            String::from_utf8_lossy(&req[cut..])
        );
    }
    let crs: Vec<usize> = (head.len()..req.len()).filter(|&i| req[i] == b'\r').collect();
    for w in crs.windows(2) {
        c.send_split(&req, &[w[0] + 1, w[1] + 1]);
        assert_eq!(
            c.response().text(),
            "abcdefghijklmnopqrstuvwxyzHELLO",
            "cuts {w:?}"
        );
    }
    assert_eq!(b.connections(), 1);
}

#[test]
fn chunked_response_is_relayed_chunked() {
    let body: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let expected = body.clone();
    let b = Backend::start(move |_| Reply::ok(body.clone()).chunked(777));
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let mut c = gw.client();
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert!(matches!(r.framing, Framing::Chunked(_)), "{:?}", r.head.raw);
    assert_eq!(r.body, expected);
    assert!(r.header("content-length").is_none());
    // And the connection is still in step.
    assert_eq!(c.get("/").body, expected);
}

#[test]
fn content_length_response_is_relayed_with_its_length() {
    let b = Backend::start(|_| Reply::ok("exactly this"));
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let r = gw.client().get("/");
    assert_eq!(r.framing, Framing::Length);
    assert_eq!(r.header("content-length"), Some("12"));
    assert_eq!(r.text(), "exactly this");
}

fn mebibyte() -> Vec<u8> {
    (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

#[test]
fn one_mebibyte_content_length_body_each_way() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    let data = mebibyte();
    let mut req = format!(
        "POST /api/big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    req.extend_from_slice(&data);
    // Write from a thread: the echo comes back while we are still sending.
    let mut writer = c.wire.stream.try_clone().unwrap();
    let t = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &req));
    let r = c.response();
    t.join().unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "echoed body differs");
    assert_eq!(b.only_request().body.len(), data.len());
    assert_eq!(c.get("/health").status, 200);
}

#[test]
fn one_mebibyte_chunked_body_each_way() {
    let b = Backend::start(|r| Reply::ok(r.body.clone()).chunked(10_000));
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let mut c = gw.client();
    let data = mebibyte();
    let mut req = b"PUT /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in data.chunks(65_000) {
        req.extend(format!("{:x}\r\n", piece.len()).bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut writer = c.wire.stream.try_clone().unwrap();
    let t = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &req));
    let r = c.response();
    t.join().unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert!(matches!(r.framing, Framing::Chunked(_)));
    assert!(r.body == data, "echoed body differs (len {})", r.body.len());
    assert!(b.only_request().body == data);
}

#[test]
fn head_response_relays_no_body() {
    let b = Backend::start(|r| Reply::ok("hello").header("x-method", &r.method));
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let mut c = gw.client();
    c.send(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.head_response();
    assert_eq!((r.status, r.header("x-method")), (200, Some("HEAD")));
    assert_eq!(r.header("content-length"), Some("5"));
    // No body bytes followed the head: the next response parses cleanly.
    let r = c.get("/g");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(b.connections(), 1);
}

#[test]
fn response_until_close_reaches_the_client_then_the_connection_closes() {
    let body: Vec<u8> = (0..100_000u32).map(|i| b'0' + (i % 10) as u8).collect();
    let expected = body.clone();
    let b = Backend::start(move |_| Reply::ok(body.clone()).until_close());
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let mut c = gw.client();
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::UntilClose, "{}", r.head.raw);
    assert!(
        r.body == expected,
        "got {} of {} bytes",
        r.body.len(),
        expected.len()
    );
    assert!(c.is_closed());
}

// ---------------------------------------------------------------------------------
// Expect: 100-continue

#[test]
fn expect_100_continue_gets_continue_then_the_response() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"POST /api/up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.response();
    assert_eq!(r.head.start, "HTTP/1.1 100 Continue");
    c.send(b"hello");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let req = b.only_request();
    assert_eq!(req.body, b"hello");
    // The connection goes on.
    assert_eq!(c.get("/api/next").header("x-target"), Some("/v2/next"));
}

// ---------------------------------------------------------------------------------
// HTTP/1.0

#[test]
fn http10_request_is_answered_then_closed() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/old HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.header("x-target")), (200, Some("/v2/old")));
    assert!(c.is_closed());
    // Upstream, it is an HTTP/1.1 request with a Host.
    let req = b.only_request();
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(req.header("host"), Some(b.addr.to_string().as_str()));
}

#[test]
fn http10_keep_alive_proxied_response_says_keep_alive_and_the_connection_goes_on() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("keep-alive"), "{}", r.head.raw);
    c.send(b"GET /api/two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().header("x-target"), Some("/v2/two"));
}

#[test]
fn http10_keep_alive_mock_response_says_keep_alive() {
    let b = Backend::echo("b");
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("keep-alive"), "{}", r.head.raw);
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().text(), "ok\n");
}

#[test]
fn chunked_upstream_response_reaches_an_http10_client_dechunked() {
    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let expected = body.clone();
    let b = Backend::start(move |_| Reply::ok(body.clone()).chunked(999));
    let gw = Config::new()
        .endpoint("b", &b.url())
        .prefix_to("all", "/", "{#endpoints['b']}/")
        .start();
    let mut c = gw.client();
    c.send(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head.raw);
    assert_eq!(r.framing, Framing::UntilClose, "{}", r.head.raw);
    assert!(r.body == expected, "got {} bytes", r.body.len());
    assert!(c.is_closed());
}

// ---------------------------------------------------------------------------------
// Path security

fn admin_gateway(b: &Backend) -> common::Gateway {
    Config::new()
        .endpoint("b", &b.url())
        .mock("admin", "/admin", 403, "forbidden\\n")
        .route("name = \"public\"\npath = { regex = \"/(.*)\" }\nto = \"{#endpoints['b']}/{#group[0]}\"")
        .start()
}

#[test]
fn encoded_slash_dot_dot_is_rejected_with_400() {
    let b = Backend::echo("b");
    let gw = admin_gateway(&b);
    let r = gw.client().get("/public/..%2Fadmin");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(b.requests().is_empty(), "{:?}", b.requests());
}

#[test]
fn admin_path_spellings_all_reach_the_admin_rule() {
    let b = Backend::echo("b");
    let gw = admin_gateway(&b);
    for path in [
        "/admin",
        "//admin",
        "/%61dmin",
        "/public/../admin",
        "/./admin",
        "/public/%2e%2e/admin",
    ] {
        let r = gw.client().get(path);
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    assert!(b.requests().is_empty(), "{:?}", b.requests());
    // And the catch-all does proxy.
    assert_eq!(gw.client().get("/public/x").status, 200);
}

/// Issue 14: an upstream that answers with its own `x-request-id` keeps it; the
/// gateway adds one only when the response has none.
#[test]
fn an_upstream_request_id_in_the_response_is_not_doubled() {
    let b = Backend::start(|_| Reply::ok("x").header("x-request-id", "upstream-7"));
    let gw = api(&b).start();
    let mut c = gw.client();
    c.send(b"GET /api/a HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response();
    assert_eq!(r.head.header_all("x-request-id"), ["upstream-7"]);
}

/// Issue 14: `{#request.pathRest}` carries the rest of the path after a prefix
/// route's prefix (nginx's `proxy_pass http://b/orders;`, Kong's `strip_path`).
#[test]
fn the_rest_of_a_prefix_routes_path_can_be_sent_on() {
    let b = Backend::echo("b");
    let url = b.url();
    let gw = Config::new()
        .prefix_to(
            "orders",
            "/v1/orders",
            &format!("{url}/orders{{#request.pathRest}}"),
        )
        .prefix_to("strip", "/api", &format!("{url}{{#request.pathRest}}"))
        .start();
    let mut c = gw.client();
    for (path, want) in [
        ("/v1/orders/77?x=1", "/orders/77?x=1"),
        ("/v1/orders", "/orders"),
        ("/api/users/7", "/users/7"),
        ("/api", "/"),
        ("/api//a/%2e/b", "/a/b"),
    ] {
        let r = c.get(path);
        assert_eq!(r.header("x-target"), Some(want), "{path}");
    }
}
