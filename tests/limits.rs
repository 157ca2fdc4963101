//! Rate limits on one node, end to end with the real binary on 2 shards: offered
//! loads over keep-alive connections that SO_REUSEPORT spreads across the shards,
//! counted against what the limit allows (`L × seconds + burst`, ±2%); per key,
//! per client address (real source addresses on 127.0.0.0/8, and trusted proxies'
//! `X-Forwarded-For`); small limits exact; the `RateLimit` fields against the
//! draft's own examples; a client that waits `Retry-After` gets through; limits
//! kept across a reload that keeps them.
//!
//! Every load is bounded (10 s at a few hundred requests a second) and loopback only;
//! 16 connections each, so that both shards get some (all 16 on one shard: 1 in
//! 32,768).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod limits_support;

use common::{Backend, Client, Gateway, Reply};
use limits_support::{assert_near, connect_from, get, offer};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const SPAN: Duration = Duration::from_secs(10);

fn gateway(toml: &str) -> Gateway {
    Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n{toml}"
    ))
}

#[test]
fn a_node_limit_holds_across_shards_and_small_limits_are_exact() {
    let backend = Backend::start(|_| Reply::ok("ok\n"));
    let gw = gateway(&format!(
        r#"
[endpoints]
stores = "{}"

[[groups]]
name = "stores"
[[groups.routes]]
name = "store-info"
path = {{ prefix = "/info" }}
to = "{{#endpoints['stores']}}"
[[groups.routes]]
name = "one"
path = {{ exact = "/one" }}
mock = {{ status = 200, body = "one" }}
[[groups.routes]]
name = "five"
path = {{ exact = "/five" }}
mock = {{ status = 200, body = "five" }}

[[traffic.limits]]
name = "stores-total"
groups = ["stores"]
routes = ["stores/store-info"]
by = "all"
rate = 200
unit = "second"
burst = 20

[[traffic.limits]]
name = "one-a-second"
routes = ["stores/one"]
rate = 1

[[traffic.limits]]
name = "five-a-minute"
routes = ["stores/five"]
rate = 5
unit = "minute"
burst = 4
"#,
        backend.url()
    ));
    let addr = gw.addr;
    let (all, one, five) = std::thread::scope(|s| {
        let all = s.spawn(|| offer(addr, None, 16, 600, SPAN, &get("/info", "")));
        let one = s.spawn(|| offer(addr, None, 16, 100, SPAN, &get("/one", "")));
        let five = s.spawn(|| offer(addr, None, 16, 100, SPAN, &get("/five", "")));
        (all.join().unwrap(), one.join().unwrap(), five.join().unwrap())
    });
    for t in [&all, &one, &five] {
        assert_eq!(t.failed, 0, "{t:?}");
        assert_eq!(t.count(200) + t.count(429), t.sent, "only 200 and 429: {t:?}");
        assert_eq!(t.shards.len(), 2, "both shards answered: {t:?}");
    }
    assert!(
        all.sent >= 5_400 && one.sent >= 900 && five.sent >= 900,
        "the loads were offered"
    );
    // 200/s for 10 s, the burst of 20, and the first request's token.
    assert_near("stores-total", all.count(200), 200 * 10 + 20 + 1, 2, &all);
    assert_eq!(
        backend.requests().len() as u64,
        all.count(200),
        "refused requests never reach the backend"
    );
    // 1/s: the first request, then one a second (10 s, give or take the edge).
    assert!((10..=11).contains(&one.count(200)), "1/s over 10 s: {one:?}");
    // 5/min with a burst of 4: five at once, the sixth only after 12 s.
    assert_eq!(five.count(200), 5, "5/min, burst 4, over 10 s: {five:?}");
    // The counters say the same.
    let admin = gw
        .stdout_line("ringway admin on ", Duration::from_secs(2))
        .expect("admin address");
    let metrics = http_get(&admin, "/metrics");
    let allowed = format!(
        "ringway_limit_requests_total{{limit=\"stores-total\",outcome=\"allowed\"}} {}",
        all.count(200)
    );
    assert!(metrics.contains(&allowed), "{allowed}\n{metrics}");
}

#[test]
fn per_key_limits_and_overrides() {
    let gw = gateway(
        r#"
[[access.subscription_keys]]
id = "mobile-app"
key = "k-mobile"
groups = ["api"]

[[access.subscription_keys]]
id = "web"
key = "k-web"
groups = ["api"]

[[groups]]
name = "api"
auth = "subscription_key"
[[groups.routes]]
name = "items"
path = { prefix = "/items" }
mock = { status = 200, body = "items" }

[[traffic.limits]]
name = "per-caller"
groups = ["api"]
by = "key"
rate = 100
unit = "second"
burst = 10
overrides = [{ key = "mobile-app", rate = 300 }]   # burst 10 too: the limit's
"#,
    );
    let addr = gw.addr;
    let key = |k: &str| get("/items", &format!("jdcloud-apim-subscription-key: {k}\r\n"));
    let (mobile, web) = std::thread::scope(|s| {
        let m = s.spawn(|| offer(addr, None, 16, 450, SPAN, &key("k-mobile")));
        let w = s.spawn(|| offer(addr, None, 16, 300, SPAN, &key("k-web")));
        (m.join().unwrap(), w.join().unwrap())
    });
    for t in [&mobile, &web] {
        assert_eq!((t.failed, t.count(200) + t.count(429)), (0, t.sent), "{t:?}");
        assert_eq!(t.shards.len(), 2, "both shards answered: {t:?}");
    }
    assert_near(
        "mobile-app (override 300/s)",
        mobile.count(200),
        300 * 10 + 10 + 1,
        2,
        &mobile,
    );
    assert_near("web (100/s)", web.count(200), 100 * 10 + 10 + 1, 2, &web);
    // An unknown key is refused by auth, and spends nobody's budget.
    let mut c = gw.client();
    c.send(&key("k-nobody"));
    assert_eq!(c.response().status, 401);
}

#[test]
fn per_client_address_limits() {
    let gw = gateway(
        r#"
[[groups]]
name = "api"
[[groups.routes]]
name = "items"
path = { prefix = "/items" }
mock = { status = 200, body = "items" }

[[traffic.limits]]
name = "per-ip"
by = "client_ip"
rate = 100
burst = 10
"#,
    );
    let addr = gw.addr;
    let a: IpAddr = "127.0.0.2".parse().unwrap();
    let b: IpAddr = "127.0.0.3".parse().unwrap();
    let (ta, tb) = std::thread::scope(|s| {
        let ta = s.spawn(|| offer(addr, Some(a), 16, 300, SPAN, &get("/items", "")));
        // A client that lies in X-Forwarded-For is still its TCP address: no proxy is trusted.
        let tb = s.spawn(|| {
            offer(
                addr,
                Some(b),
                16,
                300,
                SPAN,
                &get("/items", "X-Forwarded-For: 10.9.9.9\r\n"),
            )
        });
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for t in [&ta, &tb] {
        assert_eq!((t.failed, t.count(200) + t.count(429)), (0, t.sent), "{t:?}");
        assert_eq!(t.shards.len(), 2, "both shards answered: {t:?}");
        assert_near("per client", t.count(200), 100 * 10 + 10 + 1, 2, t);
    }
}

#[test]
fn trusted_proxies_say_who_the_client_is() {
    let gw = gateway(
        r#"
[[groups]]
name = "api"
[[groups.routes]]
name = "items"
path = { prefix = "/items" }
mock = { status = 200, body = "items" }

[traffic]
trusted_proxies = ["127.0.0.1/32"]

[[traffic.limits]]
name = "per-ip"
by = "client_ip"
rate = 2
unit = "minute"
burst = 1
"#,
    );
    let status = |source: &str, xff: &str| {
        let mut c = connect_from(gw.addr, Some(source.parse().unwrap()));
        let extra = if xff.is_empty() {
            String::new()
        } else {
            format!("X-Forwarded-For: {xff}\r\n")
        };
        c.send(&get("/items", &extra));
        c.response().status
    };
    // Two a client (rate 2/min, burst 1: two at once), counted by the address the
    // trusted proxy appended, whatever the client prepended.
    assert_eq!(status("127.0.0.1", "6.6.6.6, 198.51.100.7"), 200);
    assert_eq!(status("127.0.0.1", "7.7.7.7, 198.51.100.7"), 200);
    assert_eq!(status("127.0.0.1", "198.51.100.7"), 429);
    assert_eq!(
        status("127.0.0.1", "198.51.100.8"),
        200,
        "another client behind the proxy"
    );
    // From an untrusted peer, the header is ignored: the peer is the client.
    assert_eq!(status("127.0.0.9", "198.51.100.7"), 200);
    assert_eq!(status("127.0.0.9", "198.51.100.7"), 200);
    assert_eq!(status("127.0.0.9", "198.51.100.8"), 429);
}

#[test]
fn ratelimit_fields_match_the_draft_and_retry_after_is_honoured() {
    let gw = gateway(
        r#"
[[groups]]
name = "api"
[[groups.routes]]
name = "items"
path = { prefix = "/items" }
mock = { status = 200, body = "items" }
[[groups.routes]]
name = "slow"
path = { prefix = "/slow" }
mock = { status = 200, body = "slow" }

[traffic]
headers = "always"

[[traffic.limits]]
name = "burst"
routes = ["api/items"]
rate = 100
unit = "minute"

[[traffic.limits]]
name = "daily"
routes = ["api/items"]
rate = 1000
unit = "day"

[[traffic.limits]]
name = "per-second"
routes = ["api/slow"]
rate = 1
"#,
    );
    let mut c = gw.client();
    let first = c.get("/items");
    assert_eq!(first.status, 200);
    // The draft's multi-policy example, exactly (§3.2).
    assert_eq!(
        first.header("ratelimit-policy"),
        Some(r#""burst";q=100;w=60,"daily";q=1000;w=86400"#)
    );
    // Nothing left at once (no burst): the next in 0.6 s and in 86.4 s, rounded up.
    assert_eq!(
        first.header("ratelimit"),
        Some(r#""burst";r=0;t=1,"daily";r=0;t=87"#)
    );
    let second = c.get("/items");
    assert_eq!(second.status, 429);
    assert_eq!(second.header("retry-after"), Some("1"));
    assert_eq!(second.header("ratelimit-policy"), Some(r#""burst";q=100;w=60"#));
    assert_eq!(second.header("ratelimit"), Some(r#""burst";r=0;t=1"#));
    let body: serde_json::Value = serde_json::from_slice(&second.body).expect("JSON body");
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["limit"], "burst");
    assert_eq!(body["request_id"], second.header("x-request-id").unwrap());
    assert!(!second.closes(), "a refused GET keeps its connection");

    // A client that waits Retry-After gets through.
    assert_eq!(c.get("/slow").status, 200);
    let refused = c.get("/slow");
    assert_eq!(refused.status, 429);
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(wait, 1);
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(c.get("/slow").status, 200, "after Retry-After");
}

#[test]
fn proxied_responses_carry_the_fields_with_headers_always() {
    let backend = Backend::start(|_| Reply::ok("up\n").header("x-from", "backend"));
    let log = std::env::temp_dir().join(format!("ringway-limits-log-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let gw = gateway(&format!(
        r#"
[log]
access = "{}"

[endpoints]
up = "{}"

[[groups]]
name = "api"
[[groups.routes]]
name = "up"
path = {{ prefix = "/up" }}
to = "{{#endpoints['up']}}"

[traffic]
headers = "always"

[[traffic.limits]]
name = "five"
rate = 5
burst = 4
"#,
        log.display(),
        backend.url()
    ));
    let mut c = gw.client();
    // 5/s with a burst of 4: five at once, each answer saying how many are left.
    for left in [4, 3, 2, 1] {
        let r = c.get("/up");
        assert_eq!((r.status, r.header("x-from")), (200, Some("backend")));
        assert_eq!(
            r.header("ratelimit-policy"),
            Some(r#""five";q=5;w=1;ringway-burst=4"#)
        );
        assert_eq!(
            r.header("ratelimit"),
            Some(format!(r#""five";r={left}"#).as_str())
        );
    }
    let last = c.get("/up");
    assert_eq!(last.status, 200);
    assert_eq!(
        last.header("ratelimit"),
        Some(r#""five";r=0;t=1"#),
        "none left: the next in 200 ms"
    );
    let refused = c.get("/up");
    assert_eq!(refused.status, 429);
    assert_eq!(backend.requests().len(), 5);
    // The access log names the limit that refused (lines are written out each second).
    let id = refused.header("x-request-id").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(&id)) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no log line for {id}: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["limit"].as_str()),
        (Some(429), Some("five"))
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn limits_survive_a_reload_that_keeps_them() {
    let config = |rate: u32, extra_route: bool| {
        let extra = if extra_route {
            "[[groups.routes]]\nname = \"new\"\npath = { exact = \"/new\" }\nmock = { status = 200, body = \"new\" }\n"
        } else {
            ""
        };
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 2\n\n[[groups]]\nname = \"api\"\n[[groups.routes]]\nname = \"items\"\npath = {{ prefix = \"/items\" }}\nmock = {{ status = 200, body = \"items\" }}\n{extra}\n[[traffic.limits]]\nname = \"slow\"\nroutes = [\"api/items\"]\nrate = {rate}\nunit = \"minute\"\n"
        )
    };
    let gw = Gateway::start(&config(1, false));
    let status = || Client::connect(gw.addr).get("/items").status;
    assert_eq!(status(), 200);
    assert_eq!(status(), 429);
    let reload = |toml: String, version: &str| {
        std::fs::write(gw.config_file(), toml).unwrap();
        gw.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gw.stderr().contains(&format!("reloaded: version {version}")) {
            assert!(Instant::now() < deadline, "no reload: {}", gw.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Shards install a reload between requests: poll until they serve it.
    let until = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Another route added: the limit's definition is the same, and so is its budget.
    reload(config(1, true), "2");
    until("the new route is served", &|| {
        (0..4).all(|_| Client::connect(gw.addr).get("/new").status == 200)
    });
    for _ in 0..8 {
        assert_eq!(status(), 429, "the limit kept its state");
    }
    // The limit changed: a new budget.
    reload(config(2, false), "3");
    until("the changed limit admits", &|| status() == 200);
}

#[test]
fn the_issues_config_block_is_accepted_as_written() {
    let dir = std::env::temp_dir().join(format!("ringway-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ringway.toml");
    std::fs::write(
        &file,
        r#"
[[access.subscription_keys]]
id = "mobile-app"
key = "k-mobile"
groups = ["stores"]

[[groups]]
name = "stores"
auth = "subscription_key"
[[groups.routes]]
name = "store-info"
path = { prefix = "/stores" }
mock = { status = 200, body = "stores" }

[[traffic.limits]]
name = "stores-total"
groups = ["stores"]            # omit = every group
routes = ["stores/store-info"] # "group/route"; omit = every route of those groups
by = "all"                     # "all" (one budget for everything matched) | "key" | "client_ip"
rate = 100
unit = "second"                # second | minute | hour | day
burst = 20                     # default 0
scope = "node"                 # "node" (default) | "cluster"

[[traffic.limits]]
name = "per-caller"
groups = ["stores"]
by = "key"                     # the subscription key / access key that authenticated
rate = 1000
unit = "minute"
overrides = [{ key = "mobile-app", rate = 5000 }]   # by key id / access key

[traffic.redis]
address = "127.0.0.1:6379"
on_redis_error = "allow"       # or "deny"; the node limit still applies
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("check")
        .arg(&file)
        .output()
        .expect("run ringway check");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET `path` on `addr` (`host:port`), the body as text.
fn http_get(addr: &str, path: &str) -> String {
    let mut c = Client::connect(addr.trim().parse().expect("address"));
    c.get(path).text()
}
