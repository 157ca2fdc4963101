//! A shard's thread: pinned to its core, one monoio runtime (io_uring, else epoll),
//! its accept loops, a sweeper, and the control task that takes messages from the
//! control thread (install a snapshot, add or remove a listener, reopen the log,
//! drain).

use crate::downstream;
use crate::io::Conn;
use crate::runtime::{log, Driver};
use crate::shard::Shard;
use crate::snapshot::PreparedView;
use monoio::io::Canceller;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
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

/// Builds the shard's runtime and runs it until the shard drains. Reports the
/// driver (or why none could start) on `ready` once its listeners accept.
pub fn run(
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
    shard.splice.set(driver == Driver::Legacy);
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
    monoio::spawn(watch_writes(tasks_stopped.clone()));
    monoio::spawn(sweep_leases(shard.clone(), tasks_stopped.clone()));
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
                    // The sweep task has stopped: parked reads still expire.
                    shard.parked.sweep(Instant::now());
                }
                // Time is up: tunnels still open are ended, so that each is counted
                // and logged (their reads are cancelled at once).
                shard.tunnels_stop.fire();
                let grace = Instant::now() + TUNNEL_GRACE;
                while shard.in_flight.get() > 0 && Instant::now() < grace {
                    monoio::time::sleep(Duration::from_millis(5)).await;
                }
                shard.access_log.borrow_mut().flush();
                return;
            }
        }
    }
}

/// Growth of the parked-connection count since the last sweep that makes it ask the
/// allocator to give freed memory back (each parked connection let go of a few KiB:
/// its read buffer, its request state).
const TRIM_AFTER_PARKED: u64 = 256;

/// mimalloc returns freed pages to the OS a second after they are freed, but only
/// when it is next asked for memory in a way that reaches its arenas; a shard that
/// has just parked thousands of connections is quiet, so the pages they let go of
/// would stay resident. A huge allocation, freed at once and never touched, is
/// such a request (the workspace forbids `unsafe`, so `mi_collect` is out of
/// reach); it commits nothing.
fn nudge_allocator() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(8 << 20)));
}

/// How long, after `drain_timeout`, the tunnels still open have to end and be logged
/// (a close_notify is bounded by 1 s; a TCP shutdown is at once).
const TUNNEL_GRACE: Duration = Duration::from_millis(1200);

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
    let done = monoio::spawn(accept_loop(shard.clone(), addr, l, stopped));
    stops.insert(addr, AcceptLoop { stop, done });
    Ok(())
}

/// Accepts on `listener` (configured as `addr`) until stopped. Whether a
/// connection gets TLS is decided per connection, by the snapshot current when it is
/// accepted (`addr` among `[server.tls] listen`): a reload that renews a
/// certificate applies to the next handshake.
async fn accept_loop(
    shard: Rc<Shard>,
    addr: SocketAddr,
    listener: monoio::net::TcpListener,
    stop: async_channel::Receiver<()>,
) {
    let label = listener.local_addr().unwrap_or(addr).to_string();
    let mut tls_stats = None;
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
                let _ = io.set_nodelay(true);
                let view = shard.view();
                let send_timeout = view.snap.config.limits.send_timeout;
                let tls = view
                    .snap
                    .config
                    .tls
                    .as_ref()
                    .filter(|t| t.listen.contains(&addr))
                    .cloned();
                drop(view);
                match tls {
                    None => {
                        monoio::spawn(downstream::serve(
                            shard.clone(),
                            Conn::client(io, send_timeout),
                            peer,
                        ));
                    }
                    Some(settings) => {
                        let stats = tls_stats
                            .get_or_insert_with(|| shard.stats.tls_listener(&label))
                            .clone();
                        monoio::spawn(downstream::serve_tls(shard.clone(), io, peer, settings, stats));
                    }
                }
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

/// Every [`io::watch::TICK`]: cancel the writes whose deadline passed.
async fn watch_writes(stop: async_channel::Receiver<()>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(crate::io::watch::TICK) => {}
            _ = stop.recv() => return,
        }
        crate::io::watch::expire(Instant::now());
    }
}

/// Every 10 ms while the view has rate limits: return leases unused for 20 ms to
/// the node (so another shard can spend them) and forget idle keys. Without limits
/// it looks again twice a second.
async fn sweep_leases(shard: Rc<Shard>, stop: async_channel::Receiver<()>) {
    loop {
        let view = shard.view();
        let period = if view.limits.borrow().is_empty() {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(10)
        };
        drop(view);
        monoio::select! {
            _ = monoio::time::sleep(period) => {}
            _ = stop.recv() => return,
        }
        let view = shard.view();
        let now = crate::traffic::now();
        for l in view.limits.borrow_mut().iter_mut() {
            l.sweep(now);
        }
    }
}

/// Once a second: hand retired views to the control thread, close expired and
/// orphaned pooled connections, write out the access log.
async fn sweep_pools(shard: Rc<Shard>, stop: async_channel::Receiver<()>) {
    let (mut parked_before, mut trims_left) = (0, 0);
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.recv() => return,
        }
        shard.release_retired();
        shard.parked.sweep(Instant::now());
        // mimalloc gives pages back a second after they are freed: nudge it on the
        // sweeps that follow a wave of parking too.
        let parked = shard.stats.parked_connections.get();
        if parked >= parked_before + TRIM_AFTER_PARKED {
            trims_left = 3;
        }
        parked_before = parked;
        if trims_left > 0 {
            trims_left -= 1;
            nudge_allocator();
        }
        let view = shard.view();
        let idle = view.snap.config.upstream.idle_timeout;
        let alive = |k: &crate::upstream::PoolKey| {
            view.snap
                .upstreams
                .iter()
                .any(|u| u.addr == k.addr && u.tls.as_ref().map(|t| &t.id) == k.tls.as_ref())
        };
        shard.pool.borrow_mut().sweep(idle, alive);
        shard.access_log.borrow_mut().flush();
    }
}
