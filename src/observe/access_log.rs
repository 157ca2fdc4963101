//! The access log: one JSON line per request, buffered per shard.
//!
//! A shard starts a line when a request head has been read ([`AccessLog::begin`]: the
//! head's bytes do not outlive a streamed body, so the request fields are copied then)
//! and completes it when the response is sent ([`AccessLog::finish`]). Complete lines
//! collect in the shard's buffer, which is written out when it holds more than
//! [`FLUSH_AT`] bytes and on every tick of the shard's sweeper (once a second).
//!
//! ```text
//! {"time":"2024-05-01T12:00:00.123Z","id":"5f3a9c01-0-1a","client":"203.0.113.9",
//!  "method":"GET","path":"/api/users/7","query":"x=1","host":"api.example.com",
//!  "protocol":"HTTP/1.1","user_agent":"curl/8.5.0","referer":null,
//!  "group":"api","route":"users",
//!  "env":"online","version":"0.0.2","caller":"mobile-app","upstream":"127.0.0.1:9001",
//!  "status":200,"bytes":512,"duration_us":840,"upstream_us":790}
//! ```
//! (one line in the log; `query`, `group`, `route`, `env`, `version`, `caller`,
//! `upstream` and `upstream_us` may be `null`; `version` is the group version the
//! environment publishes, for versioned groups; `caller` is the id of the
//! subscription key or the access key that authenticated the request, never a
//! secret.)
//!
//! Lines of different shards never interleave: every `write` holds whole lines only. A
//! file is opened with `O_APPEND` by each shard, and the kernel appends each write to a
//! regular file in one piece; standard output may be a pipe, which keeps writes of at
//! most `PIPE_BUF` bytes whole, so writes to it are cut at line ends into pieces that
//! size (a single longer line is written alone).
//!
//! The write is a blocking system call on the shard's thread, of at most about
//! [`FLUSH_AT`] bytes, at most a few times a second under load — the same trade nginx
//! makes. Writing never panics: a failed write drops the buffered lines, counts in
//! [`ShardStats::access_log_errors`] and is reported on stderr once, until the log
//! works again. [`AccessLog::reopen`] (on SIGUSR1) reopens the file for log rotation.

use crate::civil::civil_from_days;
use crate::config::log::Field;
use crate::config::AccessLogTarget;
use crate::observe::metrics::ShardStats;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A buffer holding more than this is written out at once.
pub const FLUSH_AT: usize = 32 * 1024;
/// Writes to a pipe of at most this many bytes are atomic (POSIX `PIPE_BUF` on Linux).
const PIPE_BUF: usize = 4096;
/// Started lines kept for reuse.
const MAX_SPARE_LINES: usize = 64;

/// One shard's access log.
#[derive(Debug)]
pub struct AccessLog {
    target: AccessLogTarget,
    /// `None` when the log is off or its file could not be opened.
    out: Option<File>,
    /// Complete lines not written yet.
    buf: Vec<u8>,
    spare: Vec<Vec<u8>>,
    clock: Clock,
    stats: Arc<ShardStats>,
    shard: usize,
    /// An error was reported; stay quiet until a write succeeds.
    failing: bool,
    /// The fields written ([`Field`] bits; `[log] fields`).
    fields: u32,
}

/// A line started by [`AccessLog::begin`], to be completed by [`AccessLog::finish`].
#[derive(Debug)]
pub struct Line {
    buf: Vec<u8>,
    /// The fields written ([`Field`] bits).
    fields: u32,
    /// A field was written (the next one needs a comma).
    any: bool,
}

impl Line {
    /// Writes `"name":` if the field is chosen; whether it is.
    fn key(&mut self, f: Field) -> bool {
        if self.fields & f.bit() == 0 {
            return false;
        }
        if self.any {
            self.buf.push(b',');
        }
        self.any = true;
        self.buf.push(b'"');
        self.buf.extend_from_slice(f.name().as_bytes());
        self.buf.extend_from_slice(b"\":");
        true
    }

    fn str(&mut self, f: Field, v: Option<&[u8]>) {
        if self.key(f) {
            json_opt(&mut self.buf, v);
        }
    }

    fn num(&mut self, f: Field, v: Option<u64>) {
        if self.key(f) {
            match v {
                Some(n) => {
                    let _ = write!(self.buf, "{n}");
                }
                None => self.buf.extend_from_slice(b"null"),
            }
        }
    }
}

/// What is known about a request when its head has been read. `method` and `path`
/// are `None` for a head that could not be parsed.
#[derive(Clone, Copy, Debug)]
pub struct RequestFields<'a> {
    pub id: &'a [u8],
    pub client: &'a [u8],
    pub method: Option<&'a [u8]>,
    /// The raw target path, as sent.
    pub path: Option<&'a [u8]>,
    pub query: Option<&'a [u8]>,
    /// The Host (or the absolute-form target's authority).
    pub host: Option<&'a [u8]>,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: Option<&'static str>,
    pub user_agent: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    /// The declared body length (`Content-Length`; 0 without a body; `None` for a
    /// chunked one).
    pub request_bytes: Option<u64>,
}

/// What is known about a request when its response has been sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseFields<'a> {
    pub group: Option<&'a str>,
    pub route: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    pub duration_us: u64,
    /// From the start of the request to the upstream's response head.
    pub upstream_us: Option<u64>,
    /// The authenticated caller's id (subscription key id or access key).
    pub caller: Option<&'a str>,
    /// The environment served, once decided.
    pub env: Option<&'a str>,
    /// The group version that served (versioned groups).
    pub version: Option<&'a str>,
    /// The rate limit that refused the request.
    pub limit: Option<&'a str>,
    /// An upgraded connection: bytes from the client through the tunnel (those to
    /// the client are in `bytes`), and how it ended (`io::tunnel::End`).
    pub tunnel: Option<(u64, &'a str)>,
}

impl AccessLog {
    /// Opens `target`. A file that cannot be opened is reported and counted; lines are
    /// dropped until a reopen succeeds.
    pub fn new(target: &AccessLogTarget, stats: Arc<ShardStats>, shard: usize) -> AccessLog {
        let mut log = AccessLog {
            target: AccessLogTarget::Off,
            out: None,
            buf: Vec::new(),
            spare: Vec::new(),
            clock: Clock::default(),
            stats,
            shard,
            failing: false,
            fields: Field::EVERY,
        };
        log.set_target(target);
        log
    }

    /// Writes only these fields from now on ([`Field`] bits).
    pub fn set_fields(&mut self, fields: u32) {
        self.fields = fields;
    }

    /// Whether lines are being written.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.out.is_some()
    }

    /// Starts the line of a request whose head was just read; `None` when the log is
    /// off (nothing is formatted then).
    pub fn begin(&mut self, req: &RequestFields<'_>) -> Option<Line> {
        if !self.is_on() {
            return None;
        }
        let mut line = Line {
            buf: self.spare.pop().unwrap_or_default(),
            fields: self.fields,
            any: false,
        };
        line.buf.push(b'{');
        if line.key(Field::Time) {
            line.buf.push(b'"');
            self.clock.rfc3339_now(&mut line.buf);
            line.buf.push(b'"');
        }
        line.str(Field::Id, Some(req.id));
        line.str(Field::Client, Some(req.client));
        line.str(Field::Method, req.method);
        line.str(Field::Path, req.path);
        line.str(Field::Query, req.query);
        line.str(Field::Host, req.host);
        line.str(Field::Protocol, req.protocol.map(str::as_bytes));
        line.str(Field::UserAgent, req.user_agent);
        line.str(Field::Referer, req.referer);
        line.num(Field::RequestBytes, req.request_bytes);
        Some(line)
    }

    /// Completes `line` and queues it; writes the buffer out when it is full.
    pub fn finish(&mut self, mut line: Line, resp: &ResponseFields<'_>) {
        line.str(Field::Group, resp.group.map(str::as_bytes));
        line.str(Field::Route, resp.route.map(str::as_bytes));
        line.str(Field::Env, resp.env.map(str::as_bytes));
        line.str(Field::Version, resp.version.map(str::as_bytes));
        line.str(Field::Caller, resp.caller.map(str::as_bytes));
        line.str(Field::Limit, resp.limit.map(str::as_bytes));
        if line.key(Field::Upstream) {
            match resp.upstream {
                Some(a) => {
                    let _ = write!(line.buf, "\"{a}\"");
                }
                None => line.buf.extend_from_slice(b"null"),
            }
        }
        line.num(Field::Status, Some(u64::from(resp.status)));
        line.num(Field::Bytes, Some(resp.bytes));
        line.num(Field::DurationUs, Some(resp.duration_us));
        line.num(Field::UpstreamUs, resp.upstream_us);
        line.num(Field::TunnelBytesIn, resp.tunnel.map(|t| t.0));
        line.str(Field::TunnelEnd, resp.tunnel.map(|t| t.1.as_bytes()));
        let mut l = line.buf;
        l.extend_from_slice(b"}\n");
        self.buf.extend_from_slice(&l);
        l.clear();
        if self.spare.len() < MAX_SPARE_LINES && l.capacity() <= 4096 {
            self.spare.push(l);
        }
        if self.buf.len() > FLUSH_AT {
            self.flush();
        }
    }

    /// Writes the buffered lines out (whole lines per write; see the module docs).
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let max = match self.target {
            AccessLogTarget::Stdout => PIPE_BUF,
            _ => usize::MAX,
        };
        let result = match &mut self.out {
            Some(f) => write_lines(f, &self.buf, max),
            None => Ok(()),
        };
        self.buf.clear();
        if self.buf.capacity() > 4 * FLUSH_AT {
            self.buf.shrink_to(2 * FLUSH_AT);
        }
        match result {
            Ok(()) => self.failing = false,
            Err(e) => self.report(format_args!("cannot write the access log: {e}; lines were lost")),
        }
    }

    /// Writes what is buffered, then opens the target again: after log rotation
    /// renamed the file, new lines go to a new file at the configured path.
    pub fn reopen(&mut self) {
        self.flush();
        let target = std::mem::take(&mut self.target);
        self.out = None;
        self.set_target(&target);
    }

    /// Switches to `target` (after a reload) unless it is the current one.
    pub fn set_target(&mut self, target: &AccessLogTarget) {
        if *target == self.target && (self.out.is_some() || *target == AccessLogTarget::Off) {
            return;
        }
        self.flush();
        self.target = target.clone();
        self.out = match open(target) {
            Ok(out) => {
                self.failing = false;
                out
            }
            Err(e) => {
                self.report(format_args!("cannot open the access log: {e}"));
                None
            }
        };
    }

    fn report(&mut self, msg: std::fmt::Arguments<'_>) {
        self.stats.access_log_errors.inc();
        if !self.failing {
            self.failing = true;
            let to = match &self.target {
                AccessLogTarget::File(p) => p.display().to_string(),
                _ => "stdout".to_string(),
            };
            eprintln!("ringway: shard {}: {msg} ({to})", self.shard);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

fn open(target: &AccessLogTarget) -> io::Result<Option<File>> {
    use std::os::fd::AsFd;
    match target {
        AccessLogTarget::Off => Ok(None),
        // A duplicate of fd 1: written directly, not through std's locked, line
        // buffered `Stdout`.
        AccessLogTarget::Stdout => Ok(Some(File::from(io::stdout().as_fd().try_clone_to_owned()?))),
        AccessLogTarget::File(p) => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .map(Some),
    }
}

/// Writes `buf` (whole lines) in writes of at most `max` bytes cut at line ends; a line
/// longer than `max` is written alone.
fn write_lines(out: &mut impl Write, buf: &[u8], max: usize) -> io::Result<()> {
    let mut rest = buf;
    while !rest.is_empty() {
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            match memchr::memrchr(b'\n', &rest[..max]) {
                Some(i) => i + 1,
                None => memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1),
            }
        };
        out.write_all(&rest[..cut])?;
        rest = &rest[cut..];
    }
    Ok(())
}

/// Appends `bytes` as a JSON string. Invalid UTF-8 becomes U+FFFD.
pub fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let text = String::from_utf8_lossy(bytes);
    let mut from = 0;
    let s = text.as_bytes();
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[from..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(esc);
        }
        from = i + 1;
    }
    out.extend_from_slice(&s[from..]);
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => json_str(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

/// Formats the wall clock as RFC 3339 UTC with milliseconds; the date and time up to
/// the second are formatted once per second.
#[derive(Debug, Default)]
struct Clock {
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    prefix: Vec<u8>,
}

impl Clock {
    fn rfc3339_now(&mut self, out: &mut Vec<u8>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.rfc3339(now.as_secs(), now.subsec_millis(), out);
    }

    fn rfc3339(&mut self, secs: u64, millis: u32, out: &mut Vec<u8>) {
        if self.prefix.is_empty() || secs != self.second {
            let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
            let s = secs % 86_400;
            self.prefix.clear();
            let _ = write!(
                self.prefix,
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
            self.second = secs;
        }
        out.extend_from_slice(&self.prefix);
        let _ = write!(out, "{millis:03}Z");
    }
}

/// `secs` since the epoch as RFC 3339 UTC, to the second (`2027-03-01T12:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: u64, millis: u32) -> String {
        let mut out = Vec::new();
        Clock::default().rfc3339(secs, millis, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn time_is_rfc3339_utc_with_milliseconds() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ts(1_700_000_000, 7), "2023-11-14T22:13:20.007Z");
        // 2024 is a leap year; 2100 is not.
        assert_eq!(ts(1_709_164_800, 999), "2024-02-29T00:00:00.999Z");
        assert_eq!(ts(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn clock_cache_follows_the_second() {
        let mut c = Clock::default();
        let mut out = Vec::new();
        c.rfc3339(59, 1, &mut out);
        out.push(b' ');
        c.rfc3339(60, 2, &mut out);
        assert_eq!(out, b"1970-01-01T00:00:59.001Z 1970-01-01T00:01:00.002Z");
    }

    #[test]
    fn json_strings_escape_quotes_controls_and_invalid_utf8() {
        let mut out = Vec::new();
        json_str(&mut out, b"a\"b\\c\nd\x01e\xff/\xc3\xa9");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001e\u{fffd}/é\""
        );
    }

    /// A log that pretends to be open (so `begin` gives lines) writing `fields`;
    /// its buffer is never flushed.
    fn open_log(fields: u32) -> AccessLog {
        AccessLog {
            target: AccessLogTarget::Stdout,
            out: Some(File::open("/dev/null").unwrap()),
            buf: Vec::new(),
            spare: Vec::new(),
            clock: Clock::default(),
            stats: Arc::default(),
            shard: 0,
            failing: false,
            fields,
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let mut log = open_log(Field::EVERY);
        let line = log
            .begin(&RequestFields {
                id: b"abc-0-1",
                client: b"127.0.0.1",
                method: Some(b"GET"),
                path: Some(b"/a\"b"),
                query: None,
                host: Some(b"api.example.com"),
                protocol: Some("HTTP/1.1"),
                user_agent: Some(b"curl/8.5.0"),
                referer: None,
                request_bytes: Some(0),
            })
            .unwrap();
        log.finish(
            line,
            &ResponseFields {
                group: Some("g"),
                route: None,
                upstream: Some("127.0.0.1:9".parse().unwrap()),
                status: 502,
                bytes: 12,
                duration_us: 30,
                upstream_us: None,
                caller: Some("mobile-app"),
                env: Some("online"),
                version: None,
                limit: None,
                tunnel: None,
            },
        );
        let text = String::from_utf8(std::mem::take(&mut log.buf)).unwrap();
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["id"], "abc-0-1");
        assert_eq!(v["path"], "/a\"b");
        assert!(v["query"].is_null() && v["route"].is_null() && v["upstream_us"].is_null());
        assert_eq!(v["group"], "g");
        assert_eq!(v["caller"], "mobile-app");
        assert_eq!(
            (v["host"].as_str(), v["protocol"].as_str()),
            (Some("api.example.com"), Some("HTTP/1.1"))
        );
        assert_eq!(v["user_agent"], "curl/8.5.0");
        assert!(v["referer"].is_null());
        assert_eq!(v["env"], "online");
        assert!(v["version"].is_null());
        assert_eq!(v["upstream"], "127.0.0.1:9");
        assert_eq!((v["status"].as_u64(), v["bytes"].as_u64()), (Some(502), Some(12)));
        assert_eq!(v["duration_us"], 30);
        assert_eq!(v["time"].as_str().map(str::len), Some(24));
    }

    #[test]
    fn only_the_chosen_fields_are_written() {
        let mut log = open_log(Field::Id.bit() | Field::Status.bit() | Field::UpstreamUs.bit());
        let line = log
            .begin(&RequestFields {
                id: b"abc",
                client: b"127.0.0.1",
                method: Some(b"GET"),
                path: Some(b"/"),
                query: None,
                host: None,
                protocol: None,
                user_agent: None,
                referer: None,
                request_bytes: Some(0),
            })
            .unwrap();
        log.finish(
            line,
            &ResponseFields {
                status: 204,
                upstream_us: Some(12),
                ..ResponseFields::default()
            },
        );
        assert_eq!(
            String::from_utf8(log.buf.clone()).unwrap(),
            "{\"id\":\"abc\",\"status\":204,\"upstream_us\":12}\n"
        );
    }

    #[test]
    fn writes_are_cut_at_line_ends() {
        struct Writes(Vec<Vec<u8>>);
        impl Write for Writes {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.push(b.to_vec());
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Writes(Vec::new());
        write_lines(&mut w, b"aaa\nbb\ncccccccc\nd\n", 8).unwrap();
        let got: Vec<&[u8]> = w.0.iter().map(Vec::as_slice).collect();
        assert_eq!(got, [&b"aaa\nbb\n"[..], b"cccccccc\n", b"d\n"]);
    }
}
