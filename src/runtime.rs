//! Process startup and the control thread: load the config, bind the listeners,
//! start one pinned shard per CPU, then handle signals (reload, drain, exit).
//!
//! ```text
//! main ─ load config ─▶ Snapshot v1 ─▶ bind SO_REUSEPORT listeners (one per shard per address)
//!   ├─ shard k: pinned thread, monoio runtime (io_uring, else epoll), accept loops,
//!   │           control task (install snapshot / drain), pool sweeper
//!   ├─ admin (own thread, when `[admin]` is set): /healthz, /ready, /config, /metrics
//!   └─ control (this thread): SIGHUP → build Snapshot vN+1 off the data path → send to
//!                              every shard; SIGTERM/SIGINT → drain; second signal → exit;
//!                              SIGUSR1 → every shard reopens its access log
//! ```

use crate::admin::AdminState;
use crate::config::{self, Config};
use crate::metrics::ShardStats;
use crate::shard::{Shard, ShardId};
use crate::snapshot::{PreparedView, Snapshot};
use crate::watch::ConfigWatcher;
use monoio::io::Canceller;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Messages from the control thread to a shard.
#[derive(Debug)]
pub enum Control {
    /// Switch to this snapshot between requests.
    Install(Box<PreparedView>),
    /// Stop accepting, finish in-flight requests until the deadline, then stop.
    Drain(Instant),
    /// Start accepting on this (already bound) listener for `addr`.
    Listen(SocketAddr, std::net::TcpListener),
    /// Stop accepting on the listener for `addr`; its connections carry on.
    Unlisten(SocketAddr),
    /// Write out the access log and reopen its file (after log rotation).
    ReopenLog,
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
    // Signals and the file watch are set up before the config is read, so that
    // neither a signal nor an edit that comes right after startup is missed.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]) {
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
    let admin = Arc::new(AdminState::new(snap.clone(), all_stats));
    if let Some(a) = &snap.config.admin {
        match crate::admin::spawn(a.listen, admin.clone()) {
            Ok(addr) => println!("ringway admin on {addr}"),
            Err(e) => {
                log(format_args!("cannot serve the admin port on {}: {e}", a.listen));
                return 1;
            }
        }
    }
    control_loop(signals, watcher, config_path, snap, controls, handles, admin)
}

/// The actual addresses bound (port 0 resolved), in `listen` order.
static BOUND: std::sync::OnceLock<Vec<SocketAddr>> = std::sync::OnceLock::new();

fn bound_addrs() -> Vec<SocketAddr> {
    BOUND.get().cloned().unwrap_or_default()
}

/// Binds `shards` SO_REUSEPORT listeners per address (see [`bind_addr`]).
fn bind_all(
    addrs: &[SocketAddr],
    shards: usize,
) -> std::io::Result<Vec<Vec<(SocketAddr, std::net::TcpListener)>>> {
    let mut per_shard: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in addrs {
        let (actual, listeners) = bind_addr(*addr, shards)?;
        for (shard, l) in per_shard.iter_mut().zip(listeners) {
            shard.push((*addr, l));
        }
        bound.push(actual);
    }
    let _ = BOUND.set(bound);
    Ok(per_shard)
}

/// Binds `n` SO_REUSEPORT listeners on `addr`. Port 0 is resolved by the first bind
/// so that every shard listens on the same port. Returns the address bound.
pub fn bind_addr(addr: SocketAddr, n: usize) -> std::io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    use socket2::{Domain, Socket, Type};
    let mut actual = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(actual), Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        s.bind(&actual.into())?;
        s.listen(4096)?;
        let l: std::net::TcpListener = s.into();
        actual = l.local_addr()?;
        out.push(l);
    }
    Ok((actual, out))
}

fn run_shard(
    shard: impl FnOnce() -> Shard,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
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
                // Said once for the process, not once per shard.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| log(format_args!("io_uring unavailable ({e}); using the epoll driver")));
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
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    rx: async_channel::Receiver<Control>,
    driver: Driver,
    ready: std::sync::mpsc::Sender<Result<Driver, String>>,
) {
    let shard = Rc::new(shard);
    shard.stats.set_version(shard.view().snap.version);
    // One stop channel per listen address (closing the sender stops its accept loop)
    // and one for the shard's other tasks.
    let mut stops: HashMap<SocketAddr, AcceptLoop> = HashMap::new();
    let (tasks_stop, tasks_stopped) = async_channel::bounded::<()>(1);
    for (addr, l) in listeners {
        if let Err(e) = listen(&shard, &mut stops, addr, l) {
            let _ = ready.send(Err(format!("shard {}: cannot use listener: {e}", shard.id.0)));
            return;
        }
    }
    monoio::spawn(sweep_pools(shard.clone(), tasks_stopped));
    let _ = ready.send(Ok(driver));
    drop(ready);
    while let Ok(msg) = rx.recv().await {
        match msg {
            Control::Install(prepared) => shard.install(*prepared),
            Control::Listen(addr, l) => {
                if let Err(e) = listen(&shard, &mut stops, addr, l) {
                    log(format_args!("shard {}: cannot listen on {addr}: {e}", shard.id.0));
                }
            }
            Control::Unlisten(addr) => {
                stops.remove(&addr);
            }
            Control::ReopenLog => shard.access_log.borrow_mut().reopen(),
            Control::Drain(deadline) => {
                shard.draining.set(true);
                // Stop every accept loop and wait until each has finished: a loop
                // whose cancelled accept still took a connection has spawned its
                // task (counted in flight) by then, so nothing accepted is dropped.
                let loops: Vec<AcceptLoop> = stops.drain().map(|(_, l)| l).collect();
                for l in loops {
                    drop(l.stop);
                    l.done.await;
                }
                drop(tasks_stop);
                while shard.in_flight.get() > 0 && Instant::now() < deadline {
                    monoio::time::sleep(Duration::from_millis(5)).await;
                }
                shard.access_log.borrow_mut().flush();
                return;
            }
        }
    }
}

/// A running accept loop: dropping `stop` ends it; `done` completes when it has.
struct AcceptLoop {
    stop: async_channel::Sender<()>,
    done: monoio::task::JoinHandle<()>,
}

/// Starts an accept loop for `l`, stopped by dropping its entry in `stops`.
fn listen(
    shard: &Rc<Shard>,
    stops: &mut HashMap<SocketAddr, AcceptLoop>,
    addr: SocketAddr,
    l: std::net::TcpListener,
) -> std::io::Result<()> {
    let l = monoio::net::TcpListener::from_std(l)?;
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let done = monoio::spawn(accept_loop(shard.clone(), l, stopped));
    stops.insert(addr, AcceptLoop { stop, done });
    Ok(())
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: monoio::net::TcpListener,
    stop: async_channel::Receiver<()>,
) {
    loop {
        // The accept is cancelled and awaited when told to stop, never dropped in
        // flight: an in-flight accept would keep the socket open (and could take a
        // connection nobody serves). Once the listener is closed, the kernel moves
        // its queued connections to the group's other sockets (tcp_migrate_req).
        let canceller = Canceller::new();
        let mut accept = pin!(listener.cancelable_accept(canceller.handle()));
        let mut stopped = pin!(stop.recv());
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = accept.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        let (result, last) = match first {
            Some(r) => (r, false),
            None => {
                let _ = canceller.cancel();
                (accept.await, true)
            }
        };
        match result {
            Ok((io, peer)) => {
                monoio::spawn(crate::conn::serve(shard.clone(), io, peer));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) if !last => monoio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => {}
        }
        if last {
            return;
        }
    }
}

async fn sweep_pools(shard: Rc<Shard>, stop: async_channel::Receiver<()>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.recv() => return,
        }
        shard.release_retired();
        let view = shard.view();
        let idle = view.snap.config.upstream.idle_timeout;
        let alive = |k: &crate::pool::PoolKey| view.snap.upstreams.iter().any(|u| u.addr == k.addr);
        shard.pool.borrow_mut().sweep(idle, alive);
        shard.access_log.borrow_mut().flush();
    }
}

#[allow(clippy::too_many_arguments)]
fn control_loop(
    mut signals: signal_hook::iterator::Signals,
    mut watcher: Option<ConfigWatcher>,
    config_path: Option<PathBuf>,
    mut snap: Arc<Snapshot>,
    controls: Vec<async_channel::Sender<Control>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    admin: Arc<AdminState>,
) -> i32 {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    // Configured listen address → address bound (port 0 resolved).
    let mut listening: Vec<(SocketAddr, SocketAddr)> = snap
        .config
        .server
        .listen
        .iter()
        .copied()
        .zip(bound_addrs())
        .collect();
    let (graveyard, buried) = std::sync::mpsc::channel::<Box<dyn Send>>();
    let _ = GRAVEYARD.set(graveyard);
    let mut draining = false;
    let mut reload_at: Option<Instant> = None;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let mut handles = Some(handles);
    loop {
        if done_rx.try_recv().is_ok() {
            log(format_args!("drained; exiting"));
            return 0;
        }
        let mut reload_now = false;
        for sig in signals.pending() {
            match sig {
                SIGHUP => reload_now = true,
                SIGUSR1 => {
                    for c in &controls {
                        let _ = c.try_send(Control::ReopenLog);
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
        // File changes are debounced: editors write in several steps.
        if watcher.as_mut().is_some_and(ConfigWatcher::changed) {
            reload_at = Some(Instant::now() + RELOAD_DEBOUNCE);
        }
        if reload_at.is_some_and(|t| Instant::now() >= t) {
            reload_at = None;
            reload_now = true;
        }
        if reload_now && !draining {
            if let Some(next) = reload(config_path.as_ref(), &snap, &admin) {
                if apply_listeners(&next, &mut listening, &controls) {
                    snap = next;
                    admin.reload_succeeded(snap.clone());
                    // Each shard's router clone and counters are made here, off
                    // the shards, so installing costs them nothing per rule.
                    for (c, stats) in controls.iter().zip(admin.shard_stats()) {
                        let prepared = PreparedView::new(snap.clone(), stats);
                        let _ = c.try_send(Control::Install(Box::new(prepared)));
                    }
                } else {
                    admin.reload_failed(format!(
                        "version {} refused: a new listen address could not be bound",
                        next.version
                    ));
                }
            }
        }
        while let Ok(garbage) = buried.try_recv() {
            drop(garbage);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where shards send what is expensive to free (old snapshot views); the control
/// thread drops it.
static GRAVEYARD: std::sync::OnceLock<std::sync::mpsc::Sender<Box<dyn Send>>> = std::sync::OnceLock::new();

/// Frees `garbage` on the control thread (or here, when there is none).
pub fn retire(garbage: Box<dyn Send>) {
    if let Some(g) = GRAVEYARD.get() {
        let _ = g.send(garbage);
    }
}

/// How long the config file must be quiet before a change is reloaded.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(50);

/// Binds the listen addresses `next` adds and stops the ones it removes, on every
/// shard, leaving the others untouched. Returns false (and changes nothing) when a
/// new address cannot be bound: the reload is then refused as a whole.
fn apply_listeners(
    next: &Snapshot,
    listening: &mut Vec<(SocketAddr, SocketAddr)>,
    controls: &[async_channel::Sender<Control>],
) -> bool {
    // A wanted address is already served when it is how it was written before, or the
    // address that was bound for it (`:0` written, the chosen port written now).
    let served = |a: &SocketAddr, l: &(SocketAddr, SocketAddr)| l.0 == *a || l.1 == *a;
    let wanted = &next.config.server.listen;
    let mut bound = Vec::new();
    for addr in wanted.iter().filter(|a| !listening.iter().any(|l| served(a, l))) {
        match bind_addr(*addr, controls.len()) {
            Ok((actual, ls)) => bound.push((*addr, actual, ls)),
            Err(e) => {
                log(format_args!(
                    "reload refused, still serving version {}: cannot listen on {addr}: {e}",
                    next.version - 1
                ));
                return false;
            }
        }
    }
    let (keep, removed): (Vec<_>, Vec<_>) = listening
        .drain(..)
        .partition(|l| wanted.iter().any(|a| served(a, l)));
    *listening = keep;
    for (configured, actual) in removed {
        for c in controls {
            let _ = c.try_send(Control::Unlisten(configured));
        }
        log(format_args!("stopped listening on {actual}"));
    }
    for (addr, actual, ls) in bound {
        for (c, l) in controls.iter().zip(ls) {
            let _ = c.try_send(Control::Listen(addr, l));
        }
        println!("ringway listening on {actual}");
        listening.push((addr, actual));
    }
    true
}

/// Reads, validates and compiles the config file off the data path. On any error the
/// running snapshot stays and the error is logged with FILE:LINE:COL.
fn reload(path: Option<&PathBuf>, current: &Arc<Snapshot>, admin: &AdminState) -> Option<Arc<Snapshot>> {
    let path = path?;
    let config: Config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            log(format_args!(
                "reload failed, still serving version {}: {e}",
                current.version
            ));
            admin.reload_failed(e.to_string());
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
            admin.reload_failed(e);
            None
        }
    }
}
