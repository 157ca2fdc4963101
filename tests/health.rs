//! Upstream health through the real binary (issue 13): members that are Python
//! `http.server` processes (`tests/health_support/member.py`), killed for real;
//! outlier ejection under load, active health checks run once per process, the
//! answer when every member is down, and consistent hashing across shards, reloads,
//! membership changes and ejections.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;
mod tls_support;

use common::{Client, Gateway};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One member: a Python process answering with its name.
struct Member {
    child: Child,
    name: String,
    port: u16,
    status_file: PathBuf,
    probes: Arc<AtomicUsize>,
}

impl Member {
    fn start(name: &str) -> Member {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/health_support/member.py");
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let status_file = std::env::temp_dir().join(format!(
            "ringway-member-{}-{name}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&status_file);
        let mut child = Command::new("python3")
            .arg(script)
            .arg(name)
            .arg(&status_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (does .ci/run install it?)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a listening line").unwrap();
        let port = first.strip_prefix("listening ").unwrap().parse().unwrap();
        let probes = Arc::new(AtomicUsize::new(0));
        let count = probes.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                if l == "probe" {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Member {
            child,
            name: name.to_string(),
            port,
            status_file,
            probes,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What its `/health` answers from now on.
    fn set_health(&self, status: u16) {
        std::fs::write(&self.status_file, status.to_string()).unwrap();
    }

    fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.status_file);
    }
}

/// A config of two shards, an admin port, and one route to group `g` of `members`
/// with `group` lines added to its table.
fn config(members: &[&Member], group: &str) -> String {
    let list: Vec<String> = members.iter().map(|m| format!("\"{}\"", m.url())).collect();
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
shards = 2
[upstream]
connect_timeout = "500ms"
response_timeout = "2s"
[admin]
listen = "127.0.0.1:0"
[endpoint_groups.g]
endpoints = [{}]
{group}
[[groups]]
name = "it"
[[groups.routes]]
name = "all"
path = {{ regex = "/(.*)" }}
to = "{{#endpoints['g']}}/{{#group[0]}}"
"#,
        list.join(", ")
    )
}

fn start(toml: &str) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(toml);
    let admin = tls_support::admin_addr(&gw);
    (gw, admin)
}

fn member_up(admin: SocketAddr, m: &Member) -> u64 {
    tls_support::metric(
        admin,
        "ringway_upstream_member_up",
        &[&format!("member=\"{}\"", m.addr())],
    )
}

/// Who answered `path` on a fresh connection (so the kernel spreads them over the
/// shards), and the status.
fn ask(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = Client::connect(addr).get(path);
    (r.status, r.header("x-member").unwrap_or_default().to_string())
}

/// Waits (at most 5 s) until `n` reloads have succeeded and every shard serves the
/// new version (1 + n).
fn reloaded(admin: SocketAddr, n: u64) -> bool {
    eventually(Duration::from_secs(5), || {
        let text = common::admin_metrics(admin);
        let versions: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("ringway_shard_config_version{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        !versions.is_empty() && versions.iter().all(|&v| v == 1 + n)
    })
}

/// Waits (at most `within`) until `f` holds.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

// ---------------------------------------------------------------------------------
// Passive: outlier ejection

/// Four clients on keep-alive connections send 150 requests each to `addr`;
/// `victim` is killed after the first 200. The failed requests: (index, status), the
/// status `None` for a response cut short — the member died after its head was
/// relayed, and the only honest thing left is to close the client's connection.
fn load_and_kill(addr: SocketAddr, victim: &mut Member) -> Vec<(usize, Option<u16>)> {
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut failures = Vec::new();
                for i in 0..150 {
                    c.send(b"GET /work HTTP/1.1\r\nHost: it.test\r\n\r\n");
                    match c.try_response(false) {
                        Ok(r) => {
                            if r.status != 200 {
                                failures.push((i, Some(r.status)));
                            }
                            if r.closes() {
                                c = Client::connect(addr);
                            }
                        }
                        Err(_) => {
                            failures.push((i, None));
                            c = Client::connect(addr);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    assert!(eventually(Duration::from_secs(20), || done
        .load(Ordering::SeqCst)
        >= 200));
    victim.kill();
    clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
}

#[test]
fn a_member_killed_under_load_is_ejected_within_its_threshold() {
    let mut members = [Member::start("a"), Member::start("b"), Member::start("c")];
    let refs: Vec<&Member> = members.iter().collect();
    let (gw, admin) = start(&config(
        &refs,
        "outlier = { consecutive_failures = 3, max_ejection_percent = 50, base_ejection_time = \"30s\" }",
    ));
    let addr = gw.addr;
    let failures = load_and_kill(addr, &mut members[1]);
    // Three failures in a row eject b; requests already on their way to it when the
    // third failed may fail too: at most one more per other client.
    assert!(!failures.is_empty(), "b's death went unseen");
    assert!(failures.len() <= 3 + 3, "{failures:?}");
    assert!(
        failures.iter().all(|&(_, s)| s.is_none_or(|s| s == 502)),
        "{failures:?}"
    );
    assert_eq!(member_up(admin, &members[1]), 0);
    assert_eq!(member_up(admin, &members[0]), 1);
    assert_eq!(
        tls_support::metric(
            admin,
            "ringway_upstream_ejections_total",
            &[&format!("member=\"{}\"", members[1].addr())]
        ),
        1
    );
    // After the ejection, nothing fails: the rest went to a and c.
    for _ in 0..30 {
        let (status, who) = ask(addr, "/after");
        assert_eq!(status, 200);
        assert!(who == "a" || who == "c", "{who}");
    }
}

#[test]
fn an_ejected_member_returns_after_its_ejection_time() {
    let mut dead = Member::start("dead");
    let live = Member::start("live");
    let (gw, admin) = start(&config(
        &[&live, &dead],
        "outlier = { consecutive_failures = 2, base_ejection_time = \"1s\" }",
    ));
    dead.kill();
    let mut seen = 0;
    while member_up(admin, &dead) == 1 && seen < 20 {
        ask(gw.addr, "/");
        seen += 1;
    }
    assert!(seen <= 4, "ejected after {seen} requests");
    assert_eq!(member_up(admin, &dead), 0);
    // Its time over, it is tried again (and fails again: ejected for longer).
    std::thread::sleep(Duration::from_millis(1100));
    let statuses: Vec<u16> = (0..6).map(|_| ask(gw.addr, "/").0).collect();
    assert!(statuses.contains(&502), "tried again after 1 s: {statuses:?}");
    assert!(eventually(Duration::from_secs(2), || member_up(admin, &dead) == 0));
    assert_eq!(
        tls_support::metric(
            admin,
            "ringway_upstream_ejections_total",
            &[&format!("member=\"{}\"", dead.addr())]
        ),
        2
    );
}

// ---------------------------------------------------------------------------------
// Active health checks

const CHECK: &str = "health_check = { path = \"/health\", interval = \"200ms\", timeout = \"200ms\", healthy_threshold = 2, unhealthy_threshold = 2 }";

#[test]
fn health_checks_take_a_member_out_and_bring_it_back_once_per_process() {
    let a = Member::start("a");
    let b = Member::start("b");
    let (gw, admin) = start(&config(&[&a, &b], CHECK));
    // Two shards, one checker: about ten probes in two seconds per member, not twenty.
    let before = b.probes();
    std::thread::sleep(Duration::from_millis(2000));
    let probes = b.probes() - before;
    assert!(
        (5..=14).contains(&probes),
        "{probes} probes of b in 2 s at a 200 ms interval"
    );

    b.set_health(503);
    assert!(eventually(Duration::from_secs(2), || member_up(admin, &b) == 0));
    let who: Vec<String> = (0..20).map(|_| ask(gw.addr, "/").1).collect();
    assert!(who.iter().all(|w| w == "a"), "{who:?}");

    b.set_health(200);
    assert!(eventually(Duration::from_secs(2), || member_up(admin, &b) == 1));
    let who: Vec<String> = (0..20).map(|_| ask(gw.addr, "/").1).collect();
    assert!(who.iter().any(|w| w == "b"), "b is back: {who:?}");
    assert!(
        tls_support::metric(
            admin,
            "ringway_upstream_health_checks_total",
            &["result=\"failed\"", &format!("member=\"{}\"", b.addr())]
        ) >= 2
    );
}

#[test]
fn every_member_down_is_a_503_naming_the_group_or_tried_anyway() {
    let a = Member::start("a");
    let b = Member::start("b");
    a.set_health(500);
    b.set_health(500);
    let (gw, admin) = start(&config(&[&a, &b], CHECK));
    assert!(eventually(Duration::from_secs(2), || member_up(admin, &a)
        + member_up(admin, &b)
        == 0));
    let r = Client::connect(gw.addr).get("/");
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("every member of endpoint group 'g' is down"),
        "{}",
        r.text()
    );
    drop(gw);

    let (gw, admin) = start(&config(&[&a, &b], &format!("{CHECK}\nall_down = \"try\"")));
    assert!(eventually(Duration::from_secs(2), || member_up(admin, &a)
        + member_up(admin, &b)
        == 0));
    let (status, who) = ask(gw.addr, "/");
    assert_eq!(status, 200, "tried anyway");
    assert!(who == "a" || who == "b");
}

// ---------------------------------------------------------------------------------
// Consistent hashing

/// Which member each of `keys` lands on (`x-user: KEY`, a fresh connection each).
fn owners(addr: SocketAddr, keys: &[String]) -> HashMap<String, String> {
    keys.iter()
        .map(|k| {
            let mut c = Client::connect(addr);
            c.send(format!("GET /k HTTP/1.1\r\nHost: it.test\r\nx-user: {k}\r\n\r\n").as_bytes());
            let r = c.response();
            assert_eq!(r.status, 200);
            (k.clone(), r.header("x-member").unwrap_or_default().to_string())
        })
        .collect()
}

fn moved(before: &HashMap<String, String>, after: &HashMap<String, String>) -> usize {
    before.iter().filter(|(k, v)| after.get(*k) != Some(v)).count()
}

const HASH: &str = "lb = \"consistent_hash\"\nhash_on = \"header:x-user\"";

#[test]
fn a_key_keeps_its_member_across_shards_and_reloads_and_about_one_nth_move() {
    let members: Vec<Member> = ["a", "b", "c", "d"].iter().map(|n| Member::start(n)).collect();
    let refs: Vec<&Member> = members.iter().collect();
    let (gw, admin) = start(&config(&refs, HASH));
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let first = owners(gw.addr, &keys);
    // Fresh connections land on both shards: the same answer every time.
    assert_eq!(moved(&first, &owners(gw.addr, &keys)), 0);
    let per_member = |m: &HashMap<String, String>, n: &str| m.values().filter(|v| *v == n).count();
    for m in &members {
        let share = per_member(&first, &m.name);
        assert!((60..=140).contains(&share), "{} has {share} of 400 keys", m.name);
    }

    // A reload that keeps the members keeps every key where it was.
    let file = gw.config_file().to_path_buf();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("name = \"all\"", "name = \"every\"")).unwrap();
    gw.signal("HUP");
    assert!(reloaded(admin, 1), "the reload applied");
    assert_eq!(moved(&first, &owners(gw.addr, &keys)), 0);

    // Removing d moves d's keys, and (Maglev) almost no other.
    let without_d = config(&refs[..3], HASH).replace("name = \"all\"", "name = \"every\"");
    std::fs::write(&file, without_d).unwrap();
    gw.signal("HUP");
    assert!(reloaded(admin, 2), "the second reload applied");
    let after = owners(gw.addr, &keys);
    let of_d = per_member(&first, "d");
    let others_moved = first
        .iter()
        .filter(|(k, v)| *v != "d" && after[*k] != **v)
        .count();
    let share = moved(&first, &after) as f64 / keys.len() as f64;
    eprintln!(
        "removing 1 of 4: {:.3} of keys moved; d had {of_d}; {others_moved} of the rest moved",
        share
    );
    assert_eq!(moved(&first, &after), of_d + others_moved);
    assert!(
        others_moved <= keys.len() / 50,
        "{others_moved} keys of other members moved"
    );
    assert!((0.15..=0.35).contains(&share), "{share}");
}

#[test]
fn an_ejected_members_keys_move_and_no_other_key_does() {
    let mut members: Vec<Member> = ["a", "b", "c", "d"].iter().map(|n| Member::start(n)).collect();
    let refs: Vec<&Member> = members.iter().collect();
    let (gw, admin) = start(&config(
        &refs,
        &format!("{HASH}\noutlier = {{ consecutive_failures = 1, max_ejection_percent = 50 }}"),
    ));
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let first = owners(gw.addr, &keys);
    members[2].kill();
    // The first request to c fails and ejects it.
    let c_key = first
        .iter()
        .find(|(_, v)| *v == "c")
        .map(|(k, _)| k.clone())
        .unwrap();
    let mut cl = Client::connect(gw.addr);
    cl.send(format!("GET /k HTTP/1.1\r\nHost: it.test\r\nx-user: {c_key}\r\n\r\n").as_bytes());
    assert_eq!(cl.response().status, 502);
    assert_eq!(member_up(admin, &members[2]), 0);
    let after = owners(gw.addr, &keys);
    for (k, v) in &first {
        if v == "c" {
            assert_ne!(after[k], "c");
        } else {
            assert_eq!(&after[k], v, "key {k} of a live member moved");
        }
    }
    // c's keys spread over the others rather than all landing on one.
    let spread: std::collections::HashSet<&String> = first
        .iter()
        .filter(|(_, v)| *v == "c")
        .map(|(k, _)| &after[k])
        .collect();
    assert!(spread.len() >= 2, "{spread:?}");
    // A reload that changes the group's policy keeps what is known of its members.
    let file = gw.config_file().to_path_buf();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("max_ejection_percent = 50", "max_ejection_percent = 60"),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(reloaded(admin, 1));
    assert_eq!(
        member_up(admin, &members[2]),
        0,
        "c is still ejected after the reload"
    );
    assert_eq!(moved(&after, &owners(gw.addr, &keys)), 0);
}

#[test]
fn a_capture_cookie_or_parameter_is_the_key() {
    let members: Vec<Member> = ["a", "b", "c"].iter().map(|n| Member::start(n)).collect();
    let refs: Vec<&Member> = members.iter().collect();
    for (hash_on, request) in [
        ("capture:uid", "GET /u/{k}/x{i} HTTP/1.1\r\nHost: it.test\r\n\r\n"),
        (
            "cookie:sid",
            "GET /x{i} HTTP/1.1\r\nHost: it.test\r\nCookie: a=1; sid={k}; z=2\r\n\r\n",
        ),
        (
            "query:uid",
            "GET /x{i}?a=1&uid={k} HTTP/1.1\r\nHost: it.test\r\n\r\n",
        ),
    ] {
        let toml = config(&refs, &format!("lb = \"consistent_hash\"\nhash_on = \"{hash_on}\""))
            .replace(
                "name = \"all\"",
                "name = \"users\"\npath = { regex = \"/u/(?<uid>[0-9]+)/.*\" }\nto = \"{#endpoints['g']}/\"\n\n[[groups.routes]]\nname = \"all\"",
            );
        let (gw, _) = start(&toml);
        let mut seen = std::collections::HashSet::new();
        for k in 0..30 {
            let who: std::collections::HashSet<String> = (0..4)
                .map(|i| {
                    let mut c = Client::connect(gw.addr);
                    let req = request
                        .replace("{k}", &k.to_string())
                        .replace("{i}", &i.to_string());
                    c.send(req.as_bytes());
                    let r = c.response();
                    assert_eq!(r.status, 200, "{hash_on}");
                    r.header("x-member").unwrap_or_default().to_string()
                })
                .collect();
            assert_eq!(who.len(), 1, "{hash_on}: key {k} went to {who:?}");
            seen.extend(who);
        }
        assert_eq!(seen.len(), 3, "{hash_on}: 30 keys over three members");
    }
}

// ---------------------------------------------------------------------------------
// Retries

#[test]
fn with_a_retry_policy_a_killed_member_costs_no_request() {
    let mut members = [Member::start("a"), Member::start("b"), Member::start("c")];
    let refs: Vec<&Member> = members.iter().collect();
    let toml = config(
        &refs,
        "outlier = { consecutive_failures = 3, max_ejection_percent = 50 }",
    )
    .replace(
        "name = \"all\"",
        "name = \"all\"\nretry = { attempts = 3, on = [\"connect_failure\", \"reset\"] }",
    );
    let (gw, admin) = start(&toml);
    let failures = load_and_kill(gw.addr, &mut members[1]);
    // A response b had begun when it died is cut (one per client at most); every
    // other request that met the dead member went to another.
    let answered_5xx = failures.iter().filter(|(_, s)| s.is_some()).count();
    let cut = failures.len() - answered_5xx;
    assert!(cut <= 4, "{failures:?}");
    let failed = answered_5xx;
    assert_eq!(
        failed, 0,
        "every request that hit the dead member went to another"
    );
    assert_eq!(member_up(admin, &members[1]), 0, "and it was ejected");
}

/// Two members (`a`, `b`) without outlier ejection, and one route with `retry`.
fn retry_config(a: &str, b: &str, retry: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
shards = 1
[admin]
listen = "127.0.0.1:0"
[endpoint_groups.g]
endpoints = ["{a}", "{b}"]
outlier = {{ consecutive_5xx = 0, consecutive_failures = 0 }}
[[groups]]
name = "it"
[[groups.routes]]
name = "all"
path = {{ prefix = "/" }}
to = "{{#endpoints['g']}}"
retry = {retry}
"#
    )
}

/// Two members answering `status_a` and 200; a route with `retry`.
fn two_statuses(status_a: u16, retry: &str) -> (common::Backend, common::Backend, Gateway, SocketAddr) {
    let a = common::Backend::start(move |_| common::Reply::new(status_a, "a").header("x-member", "a"));
    let b = common::Backend::start(|_| common::Reply::ok("b").header("x-member", "b"));
    let (gw, admin) = start(&retry_config(&a.url(), &b.url(), retry));
    (a, b, gw, admin)
}

#[test]
fn a_503_goes_again_to_another_member_for_idempotent_requests_only() {
    let (a, b, gw, _) = two_statuses(503, "{ on = [\"503\"] }");
    let mut c = Client::connect(gw.addr);
    for _ in 0..10 {
        let r = c.get("/x");
        assert_eq!((r.status, r.header("x-member")), (200, Some("b")));
    }
    // Every request ended at b once; those whose first attempt went to a, twice in all.
    assert_eq!(b.requests().len(), 10);
    assert!(
        !a.requests().is_empty(),
        "round robin sent some first attempts to a"
    );
    // A POST is not idempotent: a's 503 is the answer, and it is not sent again.
    let (a_before, b_before) = (a.requests().len(), b.requests().len());
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            c.send(b"POST /x HTTP/1.1\r\nHost: it.test\r\nContent-Length: 2\r\n\r\nhi");
            c.response().status
        })
        .collect();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert!(refused >= 1, "{statuses:?}");
    assert_eq!(a.requests().len() - a_before, refused, "{statuses:?}");
    assert_eq!(b.requests().len() - b_before, 6 - refused, "{statuses:?}");
}

#[test]
fn the_retry_budget_caps_retries_in_an_outage() {
    // Both members fail slowly; ten clients at once. A budget of 10% of ten in flight
    // (at least one) lets one request retry at a time: the others take their 503.
    let slow = |name: &'static str| {
        common::Backend::start(move |_| {
            std::thread::sleep(Duration::from_millis(1000));
            common::Reply::new(503, name)
        })
    };
    let (a, b) = (slow("a"), slow("b"));
    let toml = retry_config(
        &a.url(),
        &b.url(),
        "{ attempts = 2, on = [\"503\"], budget_percent = 10, min_retry_concurrency = 1 }",
    );
    let (gw, admin) = start(&toml);
    let addr = gw.addr;
    let clients: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || Client::connect(addr).get("/x").status))
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    // One retry (min_retry_concurrency), nine refused: 11 upstream requests, not 20.
    let upstream_requests = a.requests().len() + b.requests().len();
    assert_eq!(upstream_requests, 11, "upstream requests for 10 client requests");
    assert_eq!(
        tls_support::metric(admin, "ringway_retry_budget_exhausted_total", &[]),
        9
    );
}
