//! The control thread: commands (reload, drain, reopen logs — from signals or a
//! [`super::Handle`]), the config file watch, reloads prepared off the shards, and
//! freeing what the shards retire.

use crate::admin::AdminState;
use crate::config::{self, ConfigSource};
use crate::runtime::listeners::bind_addr;
use crate::runtime::log;
use crate::runtime::shard_thread::Control;
use crate::runtime::watch::ConfigWatcher;
use crate::snapshot::{PreparedView, Snapshot};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the control thread is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Re-read the config file and switch to it if it changed and is valid.
    Reload,
    /// Stop accepting, finish what was accepted (up to `drain_timeout`), exit 0. A
    /// second drain exits 1 at once.
    Drain,
    /// Every shard writes out its access log and reopens the file.
    ReopenLog,
}

/// How long the config file must be quiet before a change is reloaded.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the control thread looks at the watch and the graveyard when no
/// command comes.
const TICK: Duration = Duration::from_millis(10);

/// Everything the control thread owns.
pub struct ControlLoop {
    pub commands: Receiver<Command>,
    pub watcher: Option<ConfigWatcher>,
    pub snap: Arc<Snapshot>,
    pub controls: Vec<async_channel::Sender<Control>>,
    pub shards: Vec<JoinHandle<()>>,
    pub admin: Arc<AdminState>,
    /// Configured listen address → address bound (port 0 resolved).
    pub listening: Vec<(SocketAddr, SocketAddr)>,
    /// What the shards retire, to be dropped here.
    pub graveyard: Receiver<Box<dyn Send>>,
    /// The settings the process started with that a reload cannot change.
    pub started: config::StartSettings,
    /// The node's rate-limit buckets: a reload binds its limits here.
    pub registry: Arc<crate::traffic::Registry>,
    /// The process's upstream health: a reload binds its endpoint groups here (the
    /// health checker holds it weakly and stops when this goes).
    pub health: Arc<crate::upstream::health::HealthRegistry>,
    /// What earlier loads left (route tables' parses, path regexes' analyses): a
    /// reload parses and analyses only what changed.
    pub cache: config::LoadCache,
}

impl ControlLoop {
    /// Runs until the gateway has drained (0) or is told to stop at once (1).
    pub fn run(mut self) -> i32 {
        let path = match &self.snap.config.source {
            ConfigSource::File { path, .. } => Some(path.clone()),
            ConfigSource::Embedded { .. } => None,
        };
        let mut draining = false;
        let mut reload_at: Option<Instant> = None;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let mut shards = Some(std::mem::take(&mut self.shards));
        loop {
            if done_rx.try_recv().is_ok() {
                log(format_args!("drained; exiting"));
                return 0;
            }
            let mut reload_now = false;
            match self.commands.recv_timeout(TICK) {
                Ok(Command::Reload) => reload_now = true,
                Ok(Command::ReopenLog) => {
                    for c in &self.controls {
                        let _ = c.try_send(Control::ReopenLog);
                    }
                }
                Ok(Command::Drain) if draining => {
                    log(format_args!("second signal: exiting now"));
                    return 1;
                }
                Ok(Command::Drain) => {
                    draining = true;
                    let drain_timeout = self.snap.config.server.drain_timeout;
                    log(format_args!("draining (up to {drain_timeout:?})"));
                    let deadline = Instant::now() + drain_timeout;
                    for c in &self.controls {
                        let _ = c.try_send(Control::Drain(deadline));
                    }
                    let hs = shards.take().unwrap_or_default();
                    let tx = done_tx.clone();
                    std::thread::spawn(move || {
                        for h in hs {
                            let _ = h.join();
                        }
                        let _ = tx.send(());
                    });
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every handle is gone: nobody can ask for anything any more, but
                // the gateway serves on (the binary keeps a sender for its signals).
                #[allow(clippy::disallowed_methods)] // the control thread, not a shard
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
            // File changes are debounced: editors write in several steps.
            if self.watcher.as_mut().is_some_and(ConfigWatcher::changed) {
                reload_at = Some(Instant::now() + RELOAD_DEBOUNCE);
            }
            if reload_at.is_some_and(|t| Instant::now() >= t) {
                reload_at = None;
                reload_now = true;
            }
            if reload_now && !draining {
                if let Some(path) = &path {
                    self.reload(path);
                }
            }
            while let Ok(garbage) = self.graveyard.try_recv() {
                drop(garbage);
            }
        }
    }

    /// Reads the file, and when its bytes changed validates and compiles it off the
    /// data path, binds new listeners, and sends every shard its prepared view. On
    /// any error the running snapshot stays and the error is logged with
    /// FILE:LINE:COL.
    fn reload(&mut self, path: &Path) {
        let current = self.snap.version;
        let config = match config::load_file_if_changed(
            path,
            self.snap.config.source.hash(),
            &self.snap.config.files,
            &mut self.cache,
        ) {
            Ok(Some(c)) => c,
            Ok(None) => {
                log(format_args!(
                    "reload: {} unchanged, version {current} still serving",
                    path.display()
                ));
                self.admin.reload_unchanged();
                return;
            }
            Err(e) => {
                log(format_args!(
                    "reload failed, still serving version {current}: {e}"
                ));
                self.admin.reload_failed(e.to_string());
                return;
            }
        };
        let next = match Snapshot::build(config, current + 1) {
            Ok(mut s) => {
                s.bind_limits(&self.registry);
                s.bind_health(&self.health);
                Arc::new(s)
            }
            Err(e) => {
                log(format_args!(
                    "reload failed, still serving version {current}: {e}"
                ));
                self.admin.reload_failed(e);
                return;
            }
        };
        if let Err(e) = self.apply_listeners(&next) {
            log(format_args!(
                "reload refused, still serving version {current}: {e}"
            ));
            self.admin
                .reload_failed(format!("version {} refused: {e}", next.version));
            return;
        }
        let restart = self.started.changed_by(&next.config);
        if restart.is_empty() {
            log(format_args!(
                "reloaded: version {} ({} rules)",
                next.version,
                next.router().len()
            ));
        } else {
            log(format_args!(
                "reloaded: version {} ({} rules); needs a restart to take effect: {}",
                next.version,
                next.router().len(),
                restart.join(", ")
            ));
        }
        self.admin.set_restart_needed(restart);
        self.snap = next;
        self.cache.commit();
        if let Some(w) = &mut self.watcher {
            w.watch_files(&self.snap.config.files);
        }
        self.admin.reload_succeeded(self.snap.clone());
        // Each shard's router clone and counters are made here, off the shards, so
        // installing costs them nothing per rule.
        for (c, stats) in self.controls.iter().zip(self.admin.shard_stats()) {
            let prepared = PreparedView::new(self.snap.clone(), stats);
            let _ = c.try_send(Control::Install(Box::new(prepared)));
        }
    }

    /// Binds the listen addresses `next` adds and stops the ones it removes, on every
    /// shard, leaving the others untouched. Changes nothing when a new address cannot
    /// be bound (the reload is then refused as a whole); the error names it.
    fn apply_listeners(&mut self, next: &Snapshot) -> Result<(), String> {
        // A wanted address is already served when it is how it was written before, or
        // the address that was bound for it (`:0` written, the chosen port written now).
        let served = |a: &SocketAddr, l: &(SocketAddr, SocketAddr)| l.0 == *a || l.1 == *a;
        let wanted = &next.config.listen_all();
        let mut bound = Vec::new();
        for addr in wanted
            .iter()
            .filter(|a| !self.listening.iter().any(|l| served(a, l)))
        {
            match bind_addr(*addr, self.controls.len()) {
                Ok(b) => bound.push(b),
                Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
            }
        }
        let (keep, removed): (Vec<_>, Vec<_>) = self
            .listening
            .drain(..)
            .partition(|l| wanted.iter().any(|a| served(a, l)));
        self.listening = keep;
        for (configured, actual) in removed {
            for c in &self.controls {
                let _ = c.try_send(Control::Unlisten(configured));
            }
            log(format_args!("stopped listening on {actual}"));
        }
        for b in bound {
            for (c, l) in self.controls.iter().zip(b.sockets) {
                let _ = c.try_send(Control::Listen(b.configured, l));
            }
            let tls = if next.config.is_tls_listener(b.configured) {
                " (tls)"
            } else {
                ""
            };
            println!("ringway listening on {}{tls}", b.actual);
            self.listening.push((b.configured, b.actual));
        }
        Ok(())
    }
}
