//! Fixtures for the gateway's integration tests: the real `ringway` binary on port 0,
//! backends on port 0 written with std (a recording keep-alive HTTP/1.1 server and raw
//! scripted ones), and a raw client that reads one response at a time.
//!
//! Every wait is bounded: a test that hangs fails with a message instead.

#![allow(dead_code)] // each test file uses a different part of the fixtures

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the gateway may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read timeout of the raw client.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout of backend connections (idle pooled connections wait this long).
const BACKEND_READ_TIMEOUT: Duration = Duration::from_secs(20);

mod backend;
mod wire;
// Each test file uses a different part of the fixtures (some none of a module).
#[allow(unused_imports)]
pub use backend::*;
#[allow(unused_imports)]
pub use wire::*;

// ---------------------------------------------------------------------------------
// Third-party software from PyPI

/// The venv's python (`RINGWAY_PYTHON`, else `.venv/bin/python` beside the
/// checkout) if it can `import` what a test needs. Without it the test says it is
/// skipped — except under `CI=true`, where `.ci/run` installs it and a missing one
/// fails the test.
pub fn venv_python(import: &str, what: &str) -> Option<PathBuf> {
    let py = std::env::var_os("RINGWAY_PYTHON").map(PathBuf::from).or_else(|| {
        let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        local.exists().then_some(local)
    });
    let usable = py.filter(|p| {
        Command::new(p)
            .args(["-c", &format!("import {import}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if usable.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is missing in CI: .ci/run installs it and sets RINGWAY_PYTHON"
        );
        eprintln!("SKIPPED: {what} not installed (.ci/run installs it; or set RINGWAY_PYTHON)");
    }
    usable
}

// ---------------------------------------------------------------------------------
// The gateway

/// A running `ringway` process, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    file: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Stdout lines after the first listening line.
    stdout: mpsc::Receiver<String>,
}

fn unique_dir(prefix: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Gateway {
    /// Writes `toml` to a temp file and runs `ringway -c FILE`, waiting (at most 10 s)
    /// for `ringway listening on ADDR`. The config should listen on `127.0.0.1:0`.
    pub fn start(toml: &str) -> Gateway {
        let dir = unique_dir("ringway-it");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let file = dir.join("ringway.toml");
        std::fs::write(&file, toml).expect("write config");
        Gateway::start_file(dir, file)
    }

    /// Runs `ringway -c FILE` on a config file already in place (owned by `dir`,
    /// which is removed on drop), waiting for its first listening line.
    pub fn start_file(dir: PathBuf, file: PathBuf) -> Gateway {
        Gateway::start_file_env(dir, file, &[])
    }

    /// [`Gateway::start`] with environment variables set for the process (e.g.
    /// `RINGWAY_DRIVER=legacy`).
    pub fn start_env(toml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = unique_dir("ringway-it");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let file = dir.join("ringway.toml");
        std::fs::write(&file, toml).expect("write config");
        Gateway::start_file_env(dir, file, env)
    }

    fn start_file_env(dir: PathBuf, file: PathBuf, env: &[(&str, &str)]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
            .envs(env.iter().copied())
            .arg("-c")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let mut err = child.stderr.take().expect("stderr");
            let sink = stderr.clone();
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        {
            let out = child.stdout.take().expect("stdout");
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    // Once nobody listens, keep draining so the child never blocks.
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut gw = Gateway {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            dir,
            file,
            stderr,
            stdout: rx,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match gw.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("ringway listening on ") {
                        gw.addr = a.trim().parse().expect("listening address");
                        return gw;
                    }
                }
                Err(_) => {
                    let status = gw.child.try_wait().ok().flatten();
                    thread::sleep(Duration::from_millis(50));
                    let toml = std::fs::read_to_string(&gw.file).unwrap_or_default();
                    panic!(
                        "ringway did not start within {START_TIMEOUT:?} (exit: {status:?})\nconfig:\n{toml}\nstderr:\n{}",
                        gw.stderr()
                    );
                }
            }
        }
    }

    /// What the gateway wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many sockets the gateway holds open now.
    pub fn open_sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
    }

    /// A new raw client connected to the gateway.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The config file it was started with.
    pub fn config_file(&self) -> &std::path::Path {
        &self.file
    }

    /// Sends signal `sig` (`"HUP"`, `"USR1"`, …) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// Waits for the process to exit; its exit code, or None if it is still running
    /// after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The rest of the next stdout line that starts with `prefix`, skipping others;
    /// None if none comes within `within`.
    pub fn stdout_line(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).ok()?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.to_string());
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test config, built section by section. `listen = "127.0.0.1:0"` and one shard
/// (so that every client connection shares one upstream pool) are always set;
/// timeouts are short so failures show quickly.
#[derive(Clone, Debug)]
pub struct Config {
    server: Vec<String>,
    limits: Vec<String>,
    upstream: Vec<String>,
    endpoints: Vec<String>,
    groups: Vec<String>,
    routes: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    pub fn new() -> Config {
        Config {
            server: vec![],
            limits: vec![],
            upstream: vec![],
            endpoints: vec![],
            groups: vec![],
            routes: vec![],
        }
    }

    /// A `key = value` line in `[server]`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// A `key = value` line in `[limits]`.
    pub fn limits(mut self, line: &str) -> Self {
        self.limits.push(line.to_string());
        self
    }

    /// A `key = value` line in `[upstream]` (overrides the short defaults).
    pub fn upstream(mut self, line: &str) -> Self {
        self.upstream.push(line.to_string());
        self
    }

    /// `[endpoints] name = "url"`.
    pub fn endpoint(mut self, name: &str, url: &str) -> Self {
        self.endpoints.push(format!("{name} = \"{url}\""));
        self
    }

    /// `[endpoint_groups.name]` with `lb = "round_robin"`.
    pub fn endpoint_group(mut self, name: &str, urls: &[String]) -> Self {
        let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
        self.groups.push(format!(
            "[endpoint_groups.{name}]\nendpoints = [{}]\nlb = \"round_robin\"\n",
            list.join(", ")
        ));
        self
    }

    /// A route of the single group, as the lines of its `[[groups.routes]]` table.
    pub fn route(mut self, lines: &str) -> Self {
        self.routes.push(lines.to_string());
        self
    }

    /// A proxy route: `path = { prefix = PREFIX }`, `to = TO`.
    pub fn prefix_to(self, name: &str, prefix: &str, to: &str) -> Self {
        self.route(&format!(
            "name = \"{name}\"\npath = {{ prefix = \"{prefix}\" }}\nto = \"{to}\""
        ))
    }

    /// A mock route on an exact path: `status`, `body`, and an `x-mock: yes` header.
    pub fn mock(self, name: &str, exact: &str, status: u16, body: &str) -> Self {
        self.route(&format!(
            "name = \"{name}\"\npath = {{ exact = \"{exact}\" }}\nmock = {{ status = {status}, body = \"{body}\", headers = {{ \"x-mock\" = \"yes\" }} }}"
        ))
    }

    pub fn render(&self) -> String {
        let mut s = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\n");
        if !self.server.iter().any(|l| l.trim_start().starts_with("shards")) {
            s += "shards = 1\n";
        }
        for l in &self.server {
            s += &format!("{l}\n");
        }
        s += "\n[limits]\n";
        for l in &self.limits {
            s += &format!("{l}\n");
        }
        s += "\n[upstream]\n";
        for (key, default) in [
            ("connect_timeout", "\"300ms\""),
            ("response_timeout", "\"500ms\""),
        ] {
            if !self.upstream.iter().any(|l| l.trim_start().starts_with(key)) {
                s += &format!("{key} = {default}\n");
            }
        }
        for l in &self.upstream {
            s += &format!("{l}\n");
        }
        if !self.endpoints.is_empty() {
            s += "\n[endpoints]\n";
            for l in &self.endpoints {
                s += &format!("{l}\n");
            }
        }
        for g in &self.groups {
            s += &format!("\n{g}");
        }
        s += "\n[[groups]]\nname = \"it\"\n";
        for r in &self.routes {
            s += &format!("\n[[groups.routes]]\n{r}\n");
        }
        s
    }

    pub fn start(&self) -> Gateway {
        Gateway::start(&self.render())
    }
}

/// The gateway of `config` with an admin port: (gateway, admin address).
pub fn start_with_admin(config: &Config) -> (Gateway, SocketAddr) {
    let toml = format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", config.render());
    let gw = Gateway::start(&toml);
    let admin = admin_addr(&gw);
    (gw, admin)
}

/// The admin address a gateway with `[admin]` printed.
pub fn admin_addr(gw: &Gateway) -> SocketAddr {
    let line = gw
        .stdout_line("ringway admin on ", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no admin line; stderr:\n{}", gw.stderr()));
    line.trim().parse().expect("admin address")
}

/// The port a helper process (a Python backend) prints as the first line of its
/// piped standard output.
pub fn printed_port(child: &mut Child) -> u16 {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the port line");
    line.trim().parse().expect("the backend's port")
}

/// The admin port's `/metrics` response, head and text.
pub fn admin_metrics(admin: SocketAddr) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read admin response");
    String::from_utf8_lossy(&raw).into_owned()
}
