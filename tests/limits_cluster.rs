//! Cluster limits through a real `redis-server` (Debian's package, installed by
//! `.ci/run`) started by the test on 127.0.0.1: two ringway instances of 2 shards
//! share a limit within 2% of it under offered load; a limit that never refuses
//! costs Redis at most one command per 100 requests; Redis killed → `allow` falls
//! back to the node's own bucket at the cluster rate (never unlimited), `deny`
//! answers 503; Redis back → shared again.
//!
//! Without `redis-server` on the PATH the tests say so and pass, except in CI
//! (`CI=true`), where it must be there.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod limits_support;

use common::Gateway;
use limits_support::{assert_near, get, offer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a port of its own, killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start() -> Option<Redis> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is missing in CI: .ci/run installs Debian's redis-server"
            );
            eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { child: None, port };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.command("PING").as_deref() != Some("+PONG\r\n") {
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An inline command's raw reply.
    fn command(&self, cmd: &str) -> Option<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).ok()?;
            out.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&out);
            // A simple reply is one line; a bulk one says its length first.
            let complete = match text.split_once("\r\n") {
                Some((first, rest)) if first.starts_with('$') => {
                    first[1..].parse::<usize>().is_ok_and(|len| rest.len() >= len + 2)
                }
                Some(_) => true,
                None => false,
            };
            if n == 0 || complete {
                return Some(text.into_owned());
            }
        }
    }

    /// EVALSHA calls so far (`INFO commandstats`).
    fn evalsha_calls(&self) -> u64 {
        let info = self.command("INFO commandstats").unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn instance(redis: &Redis, on_error: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
shards = 2

[[groups]]
name = "api"
[[groups.routes]]
name = "shared"
path = {{ exact = "/shared" }}
mock = {{ status = 200, body = "shared" }}
[[groups.routes]]
name = "roomy"
path = {{ exact = "/roomy" }}
mock = {{ status = 200, body = "roomy" }}

[[traffic.limits]]
name = "shared-{on_error}"
routes = ["api/shared"]
rate = 200
burst = 20
scope = "cluster"

[[traffic.limits]]
name = "roomy"
routes = ["api/roomy"]
rate = 1000000
scope = "cluster"

[traffic.redis]
address = "127.0.0.1:{}"
on_redis_error = "{on_error}"
timeout = "100ms"
"#,
        redis.port
    ))
}

#[test]
fn two_instances_share_a_cluster_limit_and_outlive_redis() {
    let Some(mut redis) = Redis::start() else { return };
    let a = instance(&redis, "allow");
    let b = instance(&redis, "allow");
    let span = Duration::from_secs(10);
    let (ta, tb) = std::thread::scope(|s| {
        let ta = s.spawn(|| offer(a.addr, None, 16, 300, span, &get("/shared", "")));
        let tb = s.spawn(|| offer(b.addr, None, 16, 300, span, &get("/shared", "")));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for t in [&ta, &tb] {
        assert_eq!((t.failed, t.count(200) + t.count(429)), (0, t.sent), "{t:?}");
        assert_eq!(t.shards.len(), 2, "both shards of each instance answered: {t:?}");
        assert!(t.count(200) > 500, "each instance got a share: {t:?}");
    }
    let admitted = ta.count(200) + tb.count(200);
    eprintln!(
        "cluster: {} + {} = {admitted} admitted of {} offered (limit 200/s, burst 20, 10 s)",
        ta.count(200),
        tb.count(200),
        ta.sent + tb.sent
    );
    assert_near("cluster-wide", admitted, 200 * 10 + 20 + 1, 2, &ta);

    // A limit that never refuses: leases grow until Redis sees few commands.
    let before = redis.evalsha_calls();
    let (ra, rb) = std::thread::scope(|s| {
        let ra = s.spawn(|| offer(a.addr, None, 4, 1_000, Duration::from_secs(5), &get("/roomy", "")));
        let rb = s.spawn(|| offer(b.addr, None, 4, 1_000, Duration::from_secs(5), &get("/roomy", "")));
        (ra.join().unwrap(), rb.join().unwrap())
    });
    let commands = redis.evalsha_calls() - before;
    let requests = ra.count(200) + rb.count(200);
    assert_eq!(requests, ra.sent + rb.sent, "nothing refused: {ra:?} {rb:?}");
    eprintln!("never-refusing cluster limit: {commands} EVALSHA for {requests} requests");
    assert!(
        commands * 100 <= requests,
        "{commands} EVALSHA for {requests} requests: more than one per 100"
    );

    // Redis gone: each instance limits alone at the cluster rate (the floor).
    redis.kill();
    // An instance that must deny while Redis is down (started now: down from the start).
    let deny = instance(&redis, "deny");
    std::thread::sleep(Duration::from_millis(300));
    let alone = offer(a.addr, None, 4, 300, Duration::from_secs(3), &get("/shared", ""));
    assert_eq!(
        (alone.failed, alone.count(200) + alone.count(429)),
        (0, alone.sent),
        "{alone:?}"
    );
    assert!(alone.count(429) > 0, "still limited without Redis: {alone:?}");
    eprintln!(
        "without Redis: {} admitted in 3 s at the node floor (200/s, burst 20)",
        alone.count(200)
    );
    assert_near(
        "node floor without Redis",
        alone.count(200),
        200 * 3 + 21,
        8,
        &alone,
    );
    let mut c = deny.client();
    let refused = c.get("/shared");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("\"code\":\"rate_limit_unavailable\""),
        "{}",
        refused.text()
    );

    // Redis back: shared again (the agent reconnects within a second).
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = deny.client().get("/shared").status;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deny instance still {status} after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The refill that follows reaches the new Redis.
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis.evalsha_calls() == 0 {
        assert!(Instant::now() < deadline, "no lease reached the new Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
}
