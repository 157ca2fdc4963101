//! Watching the config file for changes.
//!
//! The watch is on the file's *directory*, not the file: editors save by writing a
//! new file and renaming it over the old one (the watched inode is gone), and a
//! Kubernetes ConfigMap swaps a `..data` symlink in the directory. An event for the
//! file's name, or for a `..`-prefixed name, marks the config as possibly changed;
//! the control thread debounces, re-reads the file and reloads only when its bytes
//! changed.

use inotify::{Inotify, WatchMask};
use std::ffi::OsString;
use std::path::Path;

/// A non-blocking watcher of one config file.
pub struct ConfigWatcher {
    inotify: Inotify,
    name: OsString,
    buf: Vec<u8>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher").field("name", &self.name).finish()
    }
}

impl ConfigWatcher {
    pub fn new(path: &Path) -> std::io::Result<ConfigWatcher> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let inotify = Inotify::init()?;
        inotify.watches().add(
            &dir,
            // Not MODIFY: an in-place write truncates first, and a reload between the
            // truncate and the write would read a partial (or empty, hence valid) file.
            // CLOSE_WRITE comes once the writer is done.
            WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE | WatchMask::DELETE,
        )?;
        Ok(ConfigWatcher {
            inotify,
            name,
            buf: vec![0; 4096],
        })
    }

    /// Drains pending events; true when one may concern the config file.
    pub fn changed(&mut self) -> bool {
        let mut hit = false;
        loop {
            match self.inotify.read_events(&mut self.buf) {
                Ok(events) => {
                    let mut any = false;
                    for e in events {
                        any = true;
                        if let Some(n) = e.name {
                            hit |= n == self.name || n.as_encoded_bytes().starts_with(b"..");
                        }
                    }
                    if !any {
                        return hit;
                    }
                }
                Err(_) => return hit,
            }
        }
    }
}
