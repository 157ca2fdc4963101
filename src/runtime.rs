//! Process startup and the control thread: load the config, bind the listeners,
//! start one pinned shard per CPU, then handle signals (reload, drain, exit).
//!
//! ```text
//! main ─ load config ─▶ Snapshot v1 ─▶ bind SO_REUSEPORT listeners (one per shard per address)
//!   ├─ shard k: pinned thread, monoio runtime (io_uring, else epoll), accept loops,
//!   │           control task (install snapshot / drain), pool sweeper
//!   └─ control (this thread): SIGHUP → build Snapshot vN+1 off the data path → send to
//!                              every shard; SIGTERM/SIGINT → drain; second signal → exit
//! ```

use crate::config::{self, Config};
use crate::metrics::ShardStats;
use crate::shard::{Shard, ShardId};
use crate::snapshot::Snapshot;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages from the control thread to a shard.
#[derive(Debug)]
pub enum Control {
    /// Switch to this snapshot between requests.
    Install(Arc<Snapshot>),
    /// Stop accepting, finish in-flight requests until the deadline, then stop.
    Drain(Instant),
}

/// Which I/O driver a shard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

fn log(msg: std::fmt::Arguments<'_>) {
    eprintln!("ringway: {msg}");
}

/// Runs the gateway until it is told to stop. Returns the process exit code.
pub fn run(config_path: Option<PathBuf>) -> i32 {
    let loaded = match &config_path {
        Some(p) => config::load_file(p),
        None => config::load_default(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let snap = match Snapshot::build(config, 1) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log(format_args!("{e}"));
            return 1;
        }
    };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let shards = match snap.config.server.shards {
        0 => cores.len().max(1),
        n => n,
    };
    let listeners = match bind_all(&snap.config.server.listen, shards) {
        Ok(l) => l,
        Err(e) => {
            log(format_args!("cannot listen: {e}"));
            return 1;
        }
    };
    let forced = std::env::var("RINGWAY_DRIVER").ok();
    let prefix = std::process::id() ^ (Instant::now().elapsed().subsec_nanos() << 8);
    let mut controls = Vec::with_capacity(shards);
    let mut handles = Vec::with_capacity(shards);
    let mut all_stats = Vec::with_capacity(shards);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Driver, String>>();
    for (i, shard_listeners) in listeners.into_iter().enumerate() {
        let (tx, rx) = async_channel::unbounded();
        controls.push(tx);
        let stats = Arc::new(ShardStats::default());
        all_stats.push(stats.clone());
        let core = if cores.is_empty() {
            None
        } else {
            Some(cores[i % cores.len()])
        };
        let snap = snap.clone();
        let forced = forced.clone();
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringway-shard-{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let shard = move || Shard::new(ShardId(i), snap, stats, prefix);
                run_shard(shard, shard_listeners, rx, forced.as_deref(), ready);
            });
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                log(format_args!("cannot start shard {i}: {e}"));
                return 1;
            }
        }
    }
    drop(ready_tx);
    let mut drivers = Vec::new();
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(d)) => drivers.push(d),
            Ok(Err(e)) => {
                log(format_args!("{e}"));
                return 1;
            }
            Err(_) => return 1,
        }
    }
    let driver = if drivers.iter().all(|d| *d == Driver::IoUring) {
        "io_uring"
    } else {
        "epoll"
    };
    for addr in &bound_addrs() {
        println!("ringway listening on {addr}");
    }
    log(format_args!(
        "{} shard(s), {driver} driver, config {} (version 1, {} rules)",
        shards,
        config_path
            .as_ref()
            .map_or("<embedded default>".to_string(), |p| p.display().to_string()),
        snap.router().len()
    ));
    control_loop(config_path, snap, controls, handles, all_stats)
}

/// The actual addresses bound (port 0 resolved), in `listen` order.
static BOUND: std::sync::OnceLock<Vec<SocketAddr>> = std::sync::OnceLock::new();

fn bound_addrs() -> Vec<SocketAddr> {
    BOUND.get().cloned().unwrap_or_default()
}

/// Binds `shards` SO_REUSEPORT listeners per address. Port 0 is resolved by the first
/// bind so that every shard listens on the same port.
fn bind_all(addrs: &[SocketAddr], shards: usize) -> std::io::Result<Vec<Vec<std::net::TcpListener>>> {
    use socket2::{Domain, Socket, Type};
    let mut per_shard: Vec<Vec<std::net::TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in addrs {
        let mut actual = *addr;
        for listeners in per_shard.iter_mut() {
            let s = Socket::new(Domain::for_address(actual), Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            s.bind(&actual.into())?;
            s.listen(4096)?;
            let l: std::net::TcpListener = s.into();
            actual = l.local_addr()?;
            listeners.push(l);
        }
        bound.push(actual);
    }
    let _ = BOUND.set(bound);
    Ok(per_shard)
}

fn run_shard(
    shard: impl FnOnce() -> Shard,
    listeners: Vec<std::net::TcpListener>,
    rx: async_channel::Receiver<Control>,
    forced: Option<&str>,
    ready: std::sync::mpsc::Sender<Result<Driver, String>>,
) {
    let uring = if forced == Some("legacy") {
        None
    } else {
        let mut urb = io_uring::IoUring::builder();
        // Completion work runs when the thread next enters the kernel instead of
        // interrupting it: measured on this workload as the largest single win.
        urb.setup_coop_taskrun();
        let built = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .uring_builder(urb)
            .with_entries(4096)
            .build();
        match built {
            Ok(rt) => Some(rt),
            Err(e) if forced == Some("uring") => {
                let _ = ready.send(Err(format!("io_uring unavailable: {e}")));
                return;
            }
            Err(e) => {
                log(format_args!("io_uring unavailable ({e}); using the epoll driver"));
                None
            }
        }
    };
    match uring {
        Some(mut rt) => rt.block_on(shard_main(shard(), listeners, rx, Driver::IoUring, ready)),
        None => match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(mut rt) => rt.block_on(shard_main(shard(), listeners, rx, Driver::Legacy, ready)),
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
            }
        },
    }
}

async fn shard_main(
    shard: Shard,
    listeners: Vec<std::net::TcpListener>,
    rx: async_channel::Receiver<Control>,
    driver: Driver,
    ready: std::sync::mpsc::Sender<Result<Driver, String>>,
) {
    let shard = Rc::new(shard);
    shard.stats.set_version(shard.view().snap.version);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    for l in listeners {
        match monoio::net::TcpListener::from_std(l) {
            Ok(l) => {
                monoio::spawn(accept_loop(shard.clone(), l, stop_rx.clone()));
            }
            Err(e) => {
                let _ = ready.send(Err(format!("shard {}: cannot use listener: {e}", shard.id.0)));
                return;
            }
        }
    }
    monoio::spawn(sweep_pools(shard.clone(), stop_rx.clone()));
    let _ = ready.send(Ok(driver));
    drop(ready);
    while let Ok(msg) = rx.recv().await {
        match msg {
            Control::Install(snap) => shard.install(snap),
            Control::Drain(deadline) => {
                shard.draining.set(true);
                drop(stop_tx);
                while shard.in_flight.get() > 0 && Instant::now() < deadline {
                    monoio::time::sleep(Duration::from_millis(5)).await;
                }
                return;
            }
        }
    }
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: monoio::net::TcpListener,
    stop: async_channel::Receiver<()>,
) {
    loop {
        monoio::select! {
            r = listener.accept() => match r {
                Ok((io, peer)) => {
                    monoio::spawn(crate::conn::serve(shard.clone(), io, peer));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => monoio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = stop.recv() => return,
        }
    }
}

async fn sweep_pools(shard: Rc<Shard>, stop: async_channel::Receiver<()>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.recv() => return,
        }
        let view = shard.view();
        let idle = view.snap.config.upstream.idle_timeout;
        let alive = |k: &crate::pool::PoolKey| view.snap.upstreams.iter().any(|u| u.addr == k.addr);
        shard.pool.borrow_mut().sweep(idle, alive);
    }
}

fn control_loop(
    config_path: Option<PathBuf>,
    mut snap: Arc<Snapshot>,
    controls: Vec<async_channel::Sender<Control>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    _stats: Vec<Arc<ShardStats>>,
) -> i32 {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            log(format_args!("cannot install signal handlers: {e}"));
            return 1;
        }
    };
    let mut draining = false;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let mut handles = Some(handles);
    loop {
        if done_rx.try_recv().is_ok() {
            log(format_args!("drained; exiting"));
            return 0;
        }
        for sig in signals.pending() {
            match sig {
                SIGHUP if !draining => {
                    if let Some(next) = reload(config_path.as_ref(), &snap) {
                        snap = next;
                        for c in &controls {
                            let _ = c.try_send(Control::Install(snap.clone()));
                        }
                    }
                }
                SIGTERM | SIGINT if draining => {
                    log(format_args!("second signal: exiting now"));
                    return 1;
                }
                SIGTERM | SIGINT => {
                    draining = true;
                    let deadline = Instant::now() + snap.config.server.drain_timeout;
                    log(format_args!(
                        "draining (up to {:?})",
                        snap.config.server.drain_timeout
                    ));
                    for c in &controls {
                        let _ = c.try_send(Control::Drain(deadline));
                    }
                    let hs = handles.take().unwrap_or_default();
                    let tx = done_tx.clone();
                    std::thread::spawn(move || {
                        for h in hs {
                            let _ = h.join();
                        }
                        let _ = tx.send(());
                    });
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads, validates and compiles the config file off the data path. On any error the
/// running snapshot stays and the error is logged with FILE:LINE:COL.
fn reload(path: Option<&PathBuf>, current: &Arc<Snapshot>) -> Option<Arc<Snapshot>> {
    let path = path?;
    let config: Config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            log(format_args!(
                "reload failed, still serving version {}: {e}",
                current.version
            ));
            return None;
        }
    };
    if config.source.hash() == current.config.source.hash() {
        return None;
    }
    match Snapshot::build(config, current.version + 1) {
        Ok(s) => {
            log(format_args!(
                "reloaded: version {} ({} rules)",
                s.version,
                s.router().len()
            ));
            Some(Arc::new(s))
        }
        Err(e) => {
            log(format_args!(
                "reload failed, still serving version {}: {e}",
                current.version
            ));
            None
        }
    }
}
