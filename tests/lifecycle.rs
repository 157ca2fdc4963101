//! Config lifecycle and process lifecycle, end to end with the real binary: reload on
//! file change (in place, rename over, symlink swap), a broken config keeps the old
//! one serving, SIGHUP, listener changes, graceful drain, and a zero-downtime handover
//! between two processes on the same port.
// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{Backend, Client, Gateway, Reply};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn temp_dir(tag: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "ringway-life-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The address of the next `ringway listening on ADDR` line.
fn next_listening(gw: &Gateway, within: Duration) -> SocketAddr {
    match gw.stdout_line("ringway listening on ", within) {
        Some(a) => a.trim().parse().expect("address"),
        None => panic!("no listening line within {within:?}; stderr:\n{}", gw.stderr()),
    }
}

fn config_with(listen: &[&str], body: &str) -> String {
    let listen: Vec<String> = listen.iter().map(|l| format!("\"{l}\"")).collect();
    format!(
        "[server]\nlisten = [{}]\nshards = 2\n\n[[groups]]\nname = \"g\"\n\n[[groups.routes]]\nname = \"r\"\npath = {{ exact = \"/which\" }}\nmock = {{ status = 200, body = \"{body}\" }}\n",
        listen.join(", ")
    )
}

fn mock_config(body: &str) -> String {
    config_with(&["127.0.0.1:0"], body)
}

fn get_body(addr: SocketAddr, path: &str) -> Option<String> {
    fetch(addr, path).ok()
}

/// The body of `GET path` on a new connection, or what went wrong (for a failure
/// message that says which step failed, and how).
fn fetch(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("read after {} bytes: {e}", out.len()))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or_else(|| format!("no head in {text:?}"))
}

/// Polls until `/which` answers `want`; how long that took.
fn wait_for_body(addr: SocketAddr, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if get_body(addr, "/which").as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "'/which' never answered {want:?} within {within:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Replaces a file the way editors do: write a new file, rename it over the old one.
fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn reload_on_in_place_write() {
    let p = Gateway::start(&mock_config("one"));
    wait_for_body(p.addr, "one", Duration::from_secs(2));
    std::fs::write(p.config_file(), mock_config("two")).unwrap();
    wait_for_body(p.addr, "two", Duration::from_secs(5));
    assert!(p.stderr().contains("reloaded: version 2"), "{}", p.stderr());
}

/// Issue 14: a setting only a restart applies is not silently ignored: the reload
/// applies the rest and says which settings wait for a restart.
#[test]
fn a_reload_says_which_settings_need_a_restart() {
    let p = Gateway::start(&mock_config("one"));
    wait_for_body(p.addr, "one", Duration::from_secs(2));
    let next = mock_config("two").replace("shards = 2", "shards = 3");
    std::fs::write(p.config_file(), next).unwrap();
    wait_for_body(p.addr, "two", Duration::from_secs(5));
    let start = Instant::now();
    while !p.stderr().contains("needs a restart") && start.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        p.stderr().contains("reloaded: version 2 (1 rules); needs a restart to take effect: server.shards (running 2, file 3)"),
        "{}",
        p.stderr()
    );
}

#[test]
fn reload_on_rename_over() {
    let p = Gateway::start(&mock_config("one"));
    rename_over(p.config_file(), &mock_config("two"));
    wait_for_body(p.addr, "two", Duration::from_secs(5));
    rename_over(p.config_file(), &mock_config("three"));
    wait_for_body(p.addr, "three", Duration::from_secs(5));
}

#[test]
fn reload_on_configmap_symlink_swap() {
    // Kubernetes ConfigMap layout: file -> ..data/file, ..data -> ..v1; an update
    // writes ..v2, points a new symlink at it and renames it over ..data.
    let dir = temp_dir("cm");
    std::fs::create_dir_all(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/ringway.toml"), mock_config("one")).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ringway.toml", dir.join("ringway.toml")).unwrap();
    let p = Gateway::start_file(dir.clone(), dir.join("ringway.toml"));
    wait_for_body(p.addr, "one", Duration::from_secs(2));
    std::fs::create_dir_all(dir.join("..v2")).unwrap();
    std::fs::write(dir.join("..v2/ringway.toml"), mock_config("two")).unwrap();
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    wait_for_body(p.addr, "two", Duration::from_secs(5));
}

#[test]
fn broken_config_keeps_the_running_one_and_says_where() {
    let p = Gateway::start(&mock_config("one"));
    std::fs::write(
        p.config_file(),
        "[server]\nlisten = [\"127.0.0.1:0\"]\nbogus_key = 1\n",
    )
    .unwrap();
    let start = Instant::now();
    while !p.stderr().contains("reload failed") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no reload error logged:\n{}",
            p.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let err = p.stderr();
    let file = p.config_file().display().to_string();
    assert!(
        err.contains(&format!("{file}:3:")),
        "error must name FILE:LINE: {err}"
    );
    // Still serving the old config.
    assert_eq!(get_body(p.addr, "/which").as_deref(), Some("one"));
    // A fixed config is picked up again.
    std::fs::write(p.config_file(), mock_config("fixed")).unwrap();
    wait_for_body(p.addr, "fixed", Duration::from_secs(5));
}

#[test]
fn sighup_reloads_and_unchanged_bytes_do_not() {
    let p = Gateway::start(&mock_config("one"));
    p.signal("HUP");
    thread::sleep(Duration::from_millis(200));
    assert!(
        !p.stderr().contains("reloaded"),
        "an unchanged file must not make a new version"
    );
    std::fs::write(p.config_file(), mock_config("two")).unwrap();
    p.signal("HUP");
    wait_for_body(p.addr, "two", Duration::from_secs(5));
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn listeners_are_added_and_removed_without_touching_the_others() {
    let p = Gateway::start(&mock_config("one"));
    let extra = free_port();
    let both = config_with(&["127.0.0.1:0", &extra.to_string()], "two");
    // Keep the original address: rewrite with the bound port instead of 0.
    let first = p.addr.to_string();
    std::fs::write(p.config_file(), both.replacen("127.0.0.1:0", &first, 1)).unwrap();
    let added = next_listening(&p, Duration::from_secs(5));
    assert_eq!(added, extra);
    wait_for_body(extra, "two", Duration::from_secs(5));
    assert_eq!(get_body(p.addr, "/which").as_deref(), Some("two"));
    // Remove the original one; the extra keeps serving.
    std::fs::write(p.config_file(), config_with(&[&extra.to_string()], "three")).unwrap();
    wait_for_body(extra, "three", Duration::from_secs(5));
    let start = Instant::now();
    while TcpStream::connect(p.addr).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "removed listener still accepts"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn drain_answers_accepted_requests_then_exits_zero() {
    let slow = Backend::start(|_| {
        thread::sleep(Duration::from_millis(400));
        Reply::ok("slow")
    });
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 1\ndrain_timeout = \"5s\"\n[endpoints]\nb = \"{}\"\n[[groups]]\nname = \"g\"\n[[groups.routes]]\nname = \"all\"\npath = {{ prefix = \"/\" }}\nto = \"{{#endpoints['b']}}\"\n",
        slow.url()
    );
    let mut p = Gateway::start(&config);
    let addr = p.addr;
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.set_read_timeout(Duration::from_secs(5));
                c.send(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n");
                c.response()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(150));
    p.signal("TERM");
    for t in inflight {
        let r = t.join().expect("client thread");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"slow");
        assert!(r.closes(), "a response during drain says connection: close");
    }
    assert_eq!(p.wait_exit(Duration::from_secs(5)), Some(0), "{}", p.stderr());
}

/// A parked keep-alive connection (idle past 1 s) whose client starts a request
/// during a drain has that request answered, even when its head arrives in pieces
/// and the last busy request ends in between: the wake counts it in flight.
#[test]
fn drain_answers_a_request_that_wakes_a_parked_connection() {
    let slow = Backend::start(|r| {
        if r.head.header("x-slow").is_some() {
            thread::sleep(Duration::from_millis(400));
        }
        Reply::ok("done")
    });
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 1\ndrain_timeout = \"5s\"\n[endpoints]\nb = \"{}\"\n[[groups]]\nname = \"g\"\n[[groups.routes]]\nname = \"all\"\npath = {{ prefix = \"/\" }}\nto = \"{{#endpoints['b']}}\"\n",
        slow.url()
    );
    let mut p = Gateway::start(&config);
    let mut idle = Client::connect(p.addr);
    idle.set_read_timeout(Duration::from_secs(5));
    assert_eq!(idle.get("/first").status, 200);
    // Past PARK_AFTER: parked.
    thread::sleep(Duration::from_millis(1500));
    let addr = p.addr;
    let busy = thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.set_read_timeout(Duration::from_secs(5));
        c.send(b"GET /slow HTTP/1.1\r\nhost: t\r\nx-slow: 1\r\n\r\n");
        c.response()
    });
    thread::sleep(Duration::from_millis(100));
    p.signal("TERM");
    thread::sleep(Duration::from_millis(100));
    // The first piece wakes the parked read; the busy request ends before the rest.
    idle.send(b"GET /woken HTTP/1.1\r\nhost: t\r\n");
    thread::sleep(Duration::from_millis(600));
    let rest = format!("x-filler: {}\r\n\r\n", "v".repeat(100));
    if let Err(e) = idle.wire.stream.write_all(rest.as_bytes()) {
        panic!(
            "the woken connection was closed ({e}); gateway stderr:\n{}",
            p.stderr()
        );
    }
    let r = idle.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.closes(), "a response during drain says connection: close");
    assert_eq!(busy.join().expect("busy client").status, 200);
    assert_eq!(p.wait_exit(Duration::from_secs(5)), Some(0), "{}", p.stderr());
}

#[test]
fn second_signal_exits_at_once() {
    let hang = Backend::start(|_| {
        thread::sleep(Duration::from_secs(5));
        Reply::ok("late")
    });
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 1\ndrain_timeout = \"30s\"\n[upstream]\nresponse_timeout = \"30s\"\n[endpoints]\nb = \"{}\"\n[[groups]]\nname = \"g\"\n[[groups.routes]]\nname = \"all\"\npath = {{ prefix = \"/\" }}\nto = \"{{#endpoints['b']}}\"\n",
        hang.url()
    );
    let mut p = Gateway::start(&config);
    let mut c = Client::connect(p.addr);
    c.send(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n");
    thread::sleep(Duration::from_millis(150));
    p.signal("TERM");
    thread::sleep(Duration::from_millis(100));
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(2)), Some(1));
}

/// Connections queued on a closing SO_REUSEPORT socket move to the other sockets
/// of its group only with `net.ipv4.tcp_migrate_req = 1` (Linux ≥ 5.14); without
/// it the kernel resets them. docs/operations.md asks for it; the test sets it.
fn enable_tcp_migrate_req() -> bool {
    let path = "/proc/sys/net/ipv4/tcp_migrate_req";
    std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") || std::fs::write(path, "1").is_ok()
}

#[test]
fn handover_between_two_processes_drops_nothing() {
    assert!(
        enable_tcp_migrate_req(),
        "net.ipv4.tcp_migrate_req must be settable (root) for a zero-downtime handover"
    );
    let port = free_port();
    // One config for both processes, admin port included (issue 14: the upgrade
    // procedure of docs/operations.md, two processes of one user).
    let admin = free_port();
    let config = format!(
        "{}\n[admin]\nlisten = \"{admin}\"\n",
        config_with(&[&port.to_string()], "ok")
    );
    let dir = temp_dir("handover");
    let file = dir.join("ringway.toml");
    std::fs::write(&file, &config).unwrap();
    let mut old = Gateway::start_file(dir.clone(), file.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                // Bounded: at most 20,000 requests or until told to stop.
                while !stop.load(Ordering::Relaxed) && ok < 20_000 {
                    match fetch(port, "/which") {
                        Ok(b) if b == "ok" => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let new_dir = temp_dir("handover-new");
    let new = Gateway::start_file(new_dir, file.clone());
    assert_eq!(new.addr, port);
    assert_eq!(
        get_body(admin, "/healthz").as_deref(),
        Some("ok\n"),
        "the shared admin port answers"
    );
    thread::sleep(Duration::from_millis(300));
    old.signal("TERM");
    assert_eq!(old.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        get_body(admin, "/healthz").as_deref(),
        Some("ok\n"),
        "the new process's admin port"
    );
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (mut total, mut failures) = (0, Vec::new());
    for c in clients {
        let (ok, failed) = c.join().unwrap();
        total += ok;
        failures.extend(failed);
    }
    assert!(total > 100, "too few requests to tell ({total})");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        total,
        &failures[..failures.len().min(5)]
    );
    drop(new);
}

/// Rooms issue: reload compares the file's bytes before parsing, and says so. A typo
/// that is undone (the file back to the running version's bytes) leaves no stale
/// reload error behind.
#[test]
fn an_undone_typo_reloads_as_unchanged_and_clears_the_error() {
    let p = Gateway::start(&mock_config("one"));
    let original = std::fs::read(p.config_file()).unwrap();
    std::fs::write(p.config_file(), b"[server\nlisten = \n").unwrap();
    let start = Instant::now();
    while !p.stderr().contains("reload failed") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", p.stderr());
        thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(p.config_file(), &original).unwrap();
    while !p.stderr().contains("unchanged, version 1 still serving") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", p.stderr());
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!p.stderr().contains("reloaded"), "{}", p.stderr());
    assert_eq!(get_body(p.addr, "/which").as_deref(), Some("one"));
}

/// Runs `ringway -c FILE` on `toml` to its exit (at most 10 s): (code, stdout, stderr).
fn run_to_exit(tag: &str, toml: &str) -> (Option<i32>, String, String) {
    let dir = temp_dir(tag);
    let file = dir.join("ringway.toml");
    std::fs::write(&file, toml).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("-c")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 14, bug 3: a port another program holds fails the start with its address
/// named, and nothing is announced as listening first — the data port or the admin
/// port alike (everything is bound, then announced).
#[test]
fn a_taken_port_fails_the_start_naming_it_and_announces_nothing() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap(); // no SO_REUSEPORT: not shareable
    let taken = held.local_addr().unwrap();
    let (code, out, err) = run_to_exit("taken-data", &config_with(&[&taken.to_string()], "x"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {taken}")), "{err}");
    assert!(!out.contains("listening"), "{out}");
    let data = free_port();
    let toml = format!(
        "{}\n[admin]\nlisten = \"{taken}\"\n",
        config_with(&[&data.to_string()], "x")
    );
    let (code, out, err) = run_to_exit("taken-admin", &toml);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot serve the admin port on {taken}")),
        "{err}"
    );
    assert!(
        !out.contains("listening"),
        "the data port is not announced: {out}"
    );
}

/// Issue 14, bug 2: a reload refused because a new address cannot be bound is
/// logged once, as refused, with the address — never first as reloaded.
#[test]
fn a_reload_refused_for_a_taken_address_says_so_once_with_it() {
    let p = Gateway::start(&mock_config("one"));
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    std::fs::write(
        p.config_file(),
        config_with(&["127.0.0.1:0", &taken.to_string()], "two"),
    )
    .unwrap();
    let start = Instant::now();
    while !p.stderr().contains("reload refused") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", p.stderr());
        thread::sleep(Duration::from_millis(20));
    }
    let err = p.stderr();
    assert!(err.contains(&format!("cannot listen on {taken}")), "{err}");
    assert!(!err.contains("reloaded: version 2"), "{err}");
    assert_eq!(err.matches("reload refused").count(), 1, "{err}");
    assert_eq!(
        get_body(p.addr, "/which").as_deref(),
        Some("one"),
        "the running version serves"
    );
}

/// The CPUs a thread of process `pid` named `name` may run on (its
/// `Cpus_allowed_list`, "0-2,5" read as 0, 1, 2, 5); `name` `None` is the process's
/// main thread.
fn cpus_allowed(pid: u32, name: Option<&str>) -> Option<Vec<usize>> {
    let dir = match name {
        None => PathBuf::from(format!("/proc/{pid}")),
        Some(name) => std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(|t| t.ok().map(|t| t.path()))
            .find(|d| std::fs::read_to_string(d.join("comm")).is_ok_and(|c| c.trim() == name))?,
    };
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?);
    }
    Some(cpus)
}

/// With fewer shards than CPUs, the control thread (a reload's compile) runs on
/// the CPUs no shard is pinned to; with a shard on every CPU it may run anywhere.
#[test]
fn the_control_thread_keeps_off_the_shards_cpus() {
    let ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    if ids.len() < 2 {
        eprintln!("skipped: one CPU, nothing to keep off");
        return;
    }
    // The control thread names and confines itself once it runs, which may be
    // after the first request is answered.
    let settled = |pid: u32, name: &str, want: &dyn Fn(&[usize]) -> bool| {
        let start = Instant::now();
        loop {
            let now = cpus_allowed(pid, Some(name));
            if now.as_deref().is_some_and(want) || start.elapsed() > Duration::from_secs(3) {
                return now;
            }
            thread::sleep(Duration::from_millis(10));
        }
    };
    let one = Gateway::start(&mock_config("one").replace("shards = 2", "shards = 1"));
    wait_for_body(one.addr, "one", Duration::from_secs(2));
    assert_eq!(
        cpus_allowed(one.pid(), Some("ringway-shard-0")),
        Some(vec![ids[0]])
    );
    let spare = &ids[1..];
    assert_eq!(
        settled(one.pid(), "ringway-control", &|c| c == spare).as_deref(),
        Some(spare)
    );
    drop(one);
    let every = Gateway::start(&mock_config("all").replace("shards = 2", &format!("shards = {}", ids.len())));
    wait_for_body(every.addr, "all", Duration::from_secs(2));
    let all = cpus_allowed(every.pid(), None);
    let control = settled(every.pid(), "ringway-control", &|c| Some(c) == all.as_deref());
    assert!(all.is_some() && control == all, "{control:?} vs {all:?}");
}
