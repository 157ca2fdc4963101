//! Active health checks: one thread per process probes every member of every group
//! that has a `health_check`, and the verdicts land in the groups' shared health
//! (`health.rs`), which every shard's balancer reads. Not once per shard: every
//! worker probing on its own multiplies the probes and lets the workers disagree
//! about a member (nginx-upsync #56, APISIX #13888).
//!
//! A probe is `GET path HTTP/1.1` with `Connection: close`, over TLS for an `https`
//! member (its own verification settings, as requests use), and passes when the
//! status line arrives within `timeout` with a status the check expects. Probes run
//! on short-lived threads of their own, so a member that hangs delays no other; a
//! member is probed again `interval` after its last probe started, never twice at
//! once.

use crate::config::health::HealthCheck;
use crate::config::UpstreamAddr;
use crate::upstream::health::{now_ns, GroupHealth, HealthRegistry};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the checker looks for probes that are due.
const TICK: Duration = Duration::from_millis(50);

/// The longest status line read.
const MAX_STATUS_LINE: usize = 1024;

/// Starts the checker. It ends once the registry is gone (the gateway stopped).
pub fn spawn(registry: Weak<HealthRegistry>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringway-health".into())
        .spawn(move || {
            loop {
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                for group in registry.checked() {
                    start_due(&group);
                }
                drop(registry);
                // The checker's own thread, never a shard's.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(TICK);
            }
        })
        .map(|_| ())
}

/// Starts the probes of `group` that are due.
fn start_due(group: &Arc<GroupHealth>) {
    let Some(check) = &group.policy.health_check else {
        return;
    };
    let now = now_ns();
    for (i, m) in group.members.iter().enumerate() {
        if m.next_probe.load(Relaxed) > now || m.probing.swap(true, Relaxed) {
            continue;
        }
        m.next_probe
            .store(now + check.interval.as_nanos() as u64, Relaxed);
        let g = group.clone();
        let started = std::thread::Builder::new()
            .name("ringway-probe".into())
            .spawn(move || {
                let Some(check) = &g.policy.health_check else {
                    return;
                };
                let m = &g.members[i];
                let (passed, detail) = match probe(&m.target, check) {
                    Ok(status) if check.passes(status) => (true, String::new()),
                    Ok(status) => (false, format!("status {status}")),
                    Err(e) => (false, e),
                };
                g.probed(i, check, passed, &detail);
                m.probing.store(false, Relaxed);
            });
        if started.is_err() {
            m.probing.store(false, Relaxed);
        }
    }
}

/// One probe of `target`: the status of its answer to `check.path`.
pub fn probe(target: &UpstreamAddr, check: &HealthCheck) -> Result<u16, String> {
    let deadline = Instant::now() + check.timeout;
    let left = || {
        let l = deadline.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err("timed out".to_string())
        } else {
            Ok(l)
        }
    };
    let tcp = TcpStream::connect_timeout(&target.addr, check.timeout).map_err(|e| format!("connect: {e}"))?;
    // Both timeouts before any byte moves: a TLS handshake reads too.
    let io = |e: std::io::Error| e.to_string();
    tcp.set_read_timeout(Some(left()?)).map_err(io)?;
    tcp.set_write_timeout(Some(left()?)).map_err(io)?;
    let host = check.host.as_deref().unwrap_or(&target.authority);
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: ringway-health-check\r\nconnection: close\r\n\r\n",
        check.path
    );
    match &target.tls {
        None => exchange(tcp, request.as_bytes(), &left),
        Some(tls) => {
            let conn = rustls::ClientConnection::new(tls.config.clone(), tls.sni.clone())
                .map_err(|e| format!("tls: {e}"))?;
            let stream = rustls::StreamOwned::new(conn, tcp);
            exchange(stream, request.as_bytes(), &left)
        }
    }
}

/// A stream whose socket's timeouts can be set (plain or TLS over TCP).
trait Timed: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl Timed for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Timed for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// Writes `request` and reads the status line, each step within what is left.
fn exchange(
    mut s: impl Timed,
    request: &[u8],
    left: &dyn Fn() -> Result<Duration, String>,
) -> Result<u16, String> {
    s.socket()
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    let mut line = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    while !line.windows(2).any(|w| w == b"\r\n") {
        if line.len() > MAX_STATUS_LINE {
            return Err("status line too long".into());
        }
        s.socket()
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed before a status line".into()),
            Ok(n) => line.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err("timed out".into())
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    status_of(&line).ok_or_else(|| "not an HTTP status line".into())
}

/// The status of `HTTP/1.x NNN …`.
fn status_of(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 Busy\r\n"), Some(503));
        assert_eq!(status_of(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2x0 OK\r\n"), None);
    }
}
