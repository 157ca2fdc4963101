//! Process start and the threads around the shards: [`Gateway::start`] binds every
//! listener, starts one pinned shard per CPU and the admin port, and hands back a
//! [`Handle`] with the bound addresses; the control thread then reloads, drains and
//! reopens logs when asked. The binary ([`run`]) asks through signals; tests and
//! benches ask through the handle, in-process.
//!
//! ```text
//! Gateway::start(config) ─▶ Snapshot v1 ─▶ bind SO_REUSEPORT listeners (one per shard
//!   │                                       per address) and the admin port, then:
//!   ├─ shard k: pinned thread, monoio runtime (io_uring, else epoll), accept loops,
//!   │           control task (install snapshot / listen / drain), sweeper
//!   ├─ admin (own thread, when `[admin]` is set): /healthz, /ready, /config, /metrics
//!   └─ control thread: Reload → build Snapshot vN+1 off the data path → send every
//!                     shard its prepared view; Drain → drain, exit 0 (twice: exit 1);
//!                     ReopenLog → every shard reopens its access log
//! run(path): signals (HUP → Reload, TERM/INT → Drain, USR1 → ReopenLog) → Handle
//! ```
//!
//! Files: `listeners.rs` (binding), `shard_thread.rs` (a shard's runtime and accept
//! loops), `control.rs` (the control thread), `watch.rs` (the config file watch).

mod control;
mod listeners;
mod shard_thread;
mod watch;

pub use control::Command;
pub use watch::ConfigWatcher;

use crate::admin::AdminState;
use crate::config::{self, Config};
use crate::observe::metrics::ShardStats;
use crate::shard::{instance_prefix, Shard, ShardId};
use crate::snapshot::Snapshot;
use control::ControlLoop;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Which I/O driver a shard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

/// The driver a shard would get on this kernel, as `--version` says it: `io_uring`,
/// or `epoll (io_uring unavailable: …)`; `RINGWAY_DRIVER=legacy|uring` is honoured.
pub fn probe_driver() -> String {
    if std::env::var("RINGWAY_DRIVER").as_deref() == Ok("legacy") {
        return "epoll (RINGWAY_DRIVER=legacy)".to_string();
    }
    let mut b = io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder();
    b.setup_coop_taskrun();
    match b.build(8) {
        Ok(_) => "io_uring".to_string(),
        Err(e) => format!("epoll (io_uring unavailable: {e})"),
    }
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "epoll",
        }
    }
}

pub(crate) use crate::observe::log;

/// Why the gateway could not start; the message names what failed (an address that
/// cannot be bound, a runtime that cannot be built).
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A gateway to start: a loaded config, and optionally a watch on its file (made
/// before the file was read, so that no edit after the read is missed).
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    watcher: Option<ConfigWatcher>,
    cache: config::LoadCache,
}

/// A running gateway.
#[derive(Debug)]
pub struct Handle {
    listen: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    shards: usize,
    driver: Driver,
    commands: mpsc::Sender<Command>,
    control: JoinHandle<i32>,
}

impl Gateway {
    /// A gateway serving `config`. A config loaded from a file reloads from it.
    pub fn new(config: Config) -> Gateway {
        Gateway {
            config,
            watcher: None,
            cache: config::LoadCache::default(),
        }
    }

    /// What loading `config` left ([`config::load_file_cached`]: its route tables'
    /// parses, its path regexes' analyses), for reloads to reuse: then even the
    /// first reload parses and compiles only what changed.
    pub fn load_cache(mut self, cache: config::LoadCache) -> Gateway {
        self.cache = cache;
        self
    }

    /// Reloads when the config file changes (see [`ConfigWatcher`]).
    pub fn watch(mut self, watcher: ConfigWatcher) -> Gateway {
        self.watcher = Some(watcher);
        self
    }

    /// Binds every listener and the admin port, starts the shards and the control
    /// thread, and returns once every shard accepts. Nothing is announced and no
    /// shard runs unless everything could be bound.
    pub fn start(self) -> Result<Handle, StartError> {
        // The node's rate-limit buckets, kept across reloads by definition.
        let registry = Arc::new(crate::traffic::Registry::default());
        let mut snap = Snapshot::build(self.config, 1).map_err(StartError)?;
        snap.bind_limits(&registry);
        // The process's upstream health, kept across reloads by group; one checker.
        let health = Arc::new(crate::upstream::health::HealthRegistry::default());
        snap.bind_health(&health);
        crate::upstream::check::spawn(Arc::downgrade(&health))
            .map_err(|e| StartError(format!("cannot start the health checker: {e}")))?;
        let snap = Arc::new(snap);
        // Reloads replace this config: what its load left is kept for them.
        let mut cache = self.cache;
        cache.commit();
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let shards = match snap.config.server.shards {
            0 => cores.len().max(1),
            n => n,
        };
        let bound = listeners::bind_all(&snap.config.listen_all(), shards).map_err(StartError)?;
        let all_stats: Vec<Arc<ShardStats>> = (0..shards).map(|_| Arc::default()).collect();
        let admin = Arc::new(AdminState::new(snap.clone(), all_stats.clone()));
        let admin_addr = match &snap.config.admin {
            Some(a) => Some(
                crate::admin::spawn(a.listen, admin.clone())
                    .map_err(|e| StartError(format!("cannot serve the admin port on {}: {e}", a.listen)))?,
            ),
            None => None,
        };
        let listening: Vec<(SocketAddr, SocketAddr)> =
            bound.iter().map(|b| (b.configured, b.actual)).collect();
        // Listeners per shard: the k-th socket of every address.
        let mut per_shard: Vec<Vec<(SocketAddr, std::net::TcpListener)>> =
            (0..shards).map(|_| Vec::new()).collect();
        for b in bound {
            for (shard, l) in per_shard.iter_mut().zip(b.sockets) {
                shard.push((b.configured, l));
            }
        }
        let forced = std::env::var("RINGWAY_DRIVER").ok();
        let prefix = instance_prefix();
        let (retire, graveyard) = mpsc::channel::<Box<dyn Send>>();
        // One nonce store for the process, whatever reloads do (a smaller or larger
        // `nonce_capacity` applies at the next start).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let nonces = Arc::new(crate::access::nonce::NonceStore::new(
            snap.config.access.nonce_capacity,
            now,
        ));
        // Allocated now when the config signs requests, on first use otherwise.
        if snap
            .config
            .groups
            .iter()
            .any(|g| g.auth == crate::config::access::Auth::Signature)
        {
            nonces.allocate();
        }
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Driver, String>>();
        let mut controls = Vec::with_capacity(shards);
        let mut handles = Vec::with_capacity(shards);
        for (i, (listeners, stats)) in per_shard.into_iter().zip(&all_stats).enumerate() {
            let (tx, rx) = async_channel::unbounded();
            controls.push(tx);
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let (snap, stats, retire, nonces) = (snap.clone(), stats.clone(), retire.clone(), nonces.clone());
            let (forced, ready) = (forced.clone(), ready_tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("ringway-shard-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let shard = move || Shard::new(ShardId(i), snap, stats, prefix, retire, nonces);
                    shard_thread::run(shard, listeners, rx, forced.as_deref(), ready);
                })
                .map_err(|e| StartError(format!("cannot start shard {i}: {e}")))?;
            handles.push(handle);
        }
        drop(ready_tx);
        let mut drivers = Vec::with_capacity(shards);
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(d)) => drivers.push(d),
                Ok(Err(e)) => return Err(StartError(e)),
                Err(_) => return Err(StartError("a shard exited while starting".into())),
            }
        }
        let driver = if drivers.iter().all(|d| *d == Driver::IoUring) {
            Driver::IoUring
        } else {
            Driver::Legacy
        };
        let tls = listening
            .iter()
            .filter(|(configured, _)| snap.config.is_tls_listener(*configured))
            .map(|(_, actual)| *actual)
            .collect();
        let (commands, commands_rx) = mpsc::channel();
        let mut watcher = self.watcher;
        if let Some(w) = &mut watcher {
            w.watch_files(&snap.config.files);
        }
        let started = crate::config::StartSettings::of(&snap.config);
        let control = ControlLoop {
            commands: commands_rx,
            watcher,
            snap,
            controls,
            shards: handles,
            admin,
            listening: listening.clone(),
            graveyard,
            started,
            registry,
            health,
            cache,
        };
        // A reload's compile is tens of milliseconds of CPU for a large config: on a
        // shard's CPU it delays that shard's requests. When the shards leave CPUs
        // free, the control thread (and what it spawns) runs there.
        let spare: Vec<usize> = cores.iter().skip(shards).map(|c| c.id).collect();
        let control = std::thread::Builder::new()
            .name("ringway-control".into())
            .spawn(move || {
                if !spare.is_empty() {
                    if let Err(e) = confine_to(&spare) {
                        log(format_args!("control thread stays on every CPU: {e}"));
                    }
                }
                control.run()
            })
            .map_err(|e| StartError(format!("cannot start the control thread: {e}")))?;
        Ok(Handle {
            tls,
            listen: listening.into_iter().map(|(_, actual)| actual).collect(),
            admin: admin_addr,
            shards,
            driver,
            commands,
            control,
        })
    }
}

impl Handle {
    /// The addresses listened on, in `listen` order (port 0 resolved).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// The TLS listeners among [`Handle::listen_addrs`] (port 0 resolved).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls
    }

    /// The admin port's address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// How many shards run.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The I/O driver the shards run (epoll if any shard could not get io_uring).
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Asks the control thread to do `command`.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// A sender of commands that outlives borrows of the handle (for a signal thread).
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    /// Waits until the gateway stops; its exit code (0 after a drain).
    pub fn wait(self) -> i32 {
        self.control.join().unwrap_or(1)
    }

    /// Drains and waits: the gateway's exit code.
    pub fn shutdown(self) -> i32 {
        self.send(Command::Drain);
        self.wait()
    }
}

/// The binary's `run`: loads the config (the embedded default without a path),
/// starts the gateway, announces its addresses on stdout, and turns signals into
/// commands until it stops. Returns the process exit code.
/// Restricts the calling thread to `cpus`.
fn confine_to(cpus: &[usize]) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

pub fn run(config_path: Option<PathBuf>) -> i32 {
    // Signals and the file watch are set up before the config is read, so that
    // neither a signal nor an edit that comes right after startup is missed.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]) {
        Ok(s) => s,
        Err(e) => {
            log(format_args!("cannot install signal handlers: {e}"));
            return 1;
        }
    };
    let watcher = config_path.as_deref().and_then(|p| match ConfigWatcher::new(p) {
        Ok(w) => Some(w),
        Err(e) => {
            log(format_args!(
                "not watching {} for changes ({e}); reload with SIGHUP",
                p.display()
            ));
            None
        }
    });
    let mut cache = config::LoadCache::default();
    let loaded = match &config_path {
        Some(p) => config::load_file_cached(p, &mut cache),
        None => config::load_default(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let rules = config.compiled.len();
    let mut gateway = Gateway::new(config).load_cache(cache);
    if let Some(w) = watcher {
        gateway = gateway.watch(w);
    }
    let handle = match gateway.start() {
        Ok(h) => h,
        Err(e) => {
            log(format_args!("{e}"));
            return 1;
        }
    };
    for addr in handle.listen_addrs() {
        let tls = if handle.tls_addrs().contains(addr) {
            " (tls)"
        } else {
            ""
        };
        println!("ringway listening on {addr}{tls}");
    }
    if let Some(addr) = handle.admin_addr() {
        println!("ringway admin on {addr}");
    }
    log(format_args!(
        "{} shard(s), {} driver, config {} (version 1, {rules} rules)",
        handle.shards(),
        handle.driver().as_str(),
        config_path
            .as_ref()
            .map_or("<embedded default>".to_string(), |p| p.display().to_string()),
    ));
    let commands = handle.commands();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let command = match sig {
                SIGHUP => Command::Reload,
                SIGUSR1 => Command::ReopenLog,
                _ => Command::Drain,
            };
            if commands.send(command).is_err() {
                return;
            }
        }
    });
    handle.wait()
}
