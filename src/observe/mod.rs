//! What ringway tells its operators about the traffic it carries.
//!
//! - `metrics.rs`: single-writer counters and histograms per shard, summed by the
//!   admin port when scraped.
//! - `access_log.rs`: one buffered JSON line per request per shard, written out by
//!   the shard's sweeper and on `SIGUSR1`.
//!
//! Both are written by their shard's thread only; nothing here is shared on the
//! request path.

pub mod access_log;
pub mod metrics;

/// Writes an operator-facing line to stderr, as `ringway: …`.
pub fn log(msg: std::fmt::Arguments<'_>) {
    eprintln!("ringway: {msg}");
}
