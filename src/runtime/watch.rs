//! Watching the config file for changes.
//!
//! The watch is on the file's *directory*, not the file: editors save by writing a
//! new file and renaming it over the old one (the watched inode is gone), and a
//! Kubernetes ConfigMap swaps a `..data` symlink in the directory. An event for the
//! file's name, or for a `..`-prefixed name, marks the config as possibly changed;
//! the control thread debounces, re-reads the file and reloads only when its bytes
//! changed.
//!
//! The files the config refers to (certificates and keys) are watched the same way,
//! by directory and name: certbot and other ACME clients renew by writing new files
//! and swapping symlinks, and a renewed certificate is a changed config.

use crate::config::tls::FileSet;
use inotify::{Inotify, WatchMask};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Not MODIFY: an in-place write truncates first, and a reload between the truncate
/// and the write would read a partial (or empty, hence valid) file. CLOSE_WRITE
/// comes once the writer is done.
const EVENTS: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE);

/// A non-blocking watcher of one config file and the files it refers to.
pub struct ConfigWatcher {
    inotify: Inotify,
    name: OsString,
    /// Names of the referred files, and the directories watched for them.
    files: Vec<OsString>,
    dirs: Vec<PathBuf>,
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
        inotify.watches().add(&dir, EVENTS)?;
        Ok(ConfigWatcher {
            inotify,
            name,
            files: Vec::new(),
            dirs: vec![dir],
            buf: vec![0; 4096],
        })
    }

    /// Also watches `files` (added to those watched before; a directory that cannot
    /// be watched is skipped: the file is still re-read on every reload).
    pub fn watch_files(&mut self, files: &FileSet) {
        for (path, _) in &files.0 {
            if let Some(n) = path.file_name() {
                if !self.files.iter().any(|f| f == n) {
                    self.files.push(n.to_os_string());
                }
            }
        }
        for dir in files.dirs() {
            if !self.dirs.contains(&dir) && self.inotify.watches().add(&dir, EVENTS).is_ok() {
                self.dirs.push(dir);
            }
        }
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
                            hit |= n == self.name
                                || n.as_encoded_bytes().starts_with(b"..")
                                || self.files.iter().any(|f| f == n);
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
