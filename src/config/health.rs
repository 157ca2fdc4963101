//! What happens when upstreams fail. An endpoint group's policy beside its members:
//! passive health (`outlier`), active health checks (`health_check`), the key of
//! `lb = "consistent_hash"` (`hash_on`), and the answer when every member is down
//! (`all_down`); and a route's `retry`. The runtime side is `upstream/health.rs`,
//! `upstream/balance.rs` and `proxy/retry.rs`; the reference is `docs/upstreams.md`.

use super::error::Diagnostics;
use super::file::EndpointGroupFile;
use super::sections::{duration, is_token};
use super::Lb;
use std::time::Duration;

/// What an endpoint group does beside balancing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPolicy {
    pub outlier: Outlier,
    pub health_check: Option<HealthCheck>,
    /// `lb = "consistent_hash"` only.
    pub hash_on: Option<HashOn>,
    pub all_down: AllDown,
}

/// Passive health, Envoy's outlier detection as the model: consecutive failures
/// eject a member for a time that grows with repeated ejections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outlier {
    /// Responses of 500 or more in a row (the upstream's, and ringway's 502/504 for
    /// a failed attempt) that eject a member; 0: never. Default 5 (Envoy's).
    pub consecutive_5xx: u32,
    /// Connect failures, resets before a response and response timeouts in a row
    /// that eject a member; 0: never. Default 5 (Envoy's
    /// `consecutive_gateway_failure`).
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times this, up to
    /// `max_ejection_time`. Default 30 s.
    pub base_ejection_time: Duration,
    /// Default 300 s.
    pub max_ejection_time: Duration,
    /// At most this share of the group's members is ejected at once, but always
    /// one may be, and one always stays. Default 10 (Envoy's).
    pub max_ejection_percent: u32,
}

impl Default for Outlier {
    fn default() -> Outlier {
        Outlier {
            consecutive_5xx: 5,
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Active health: an HTTP probe of every member, run once per process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The request target probed (`GET`), e.g. `/healthz`.
    pub path: String,
    /// Between probes of a member. Default 5 s.
    pub interval: Duration,
    /// A probe without a status line this long fails. Default 2 s.
    pub timeout: Duration,
    /// Statuses that pass; empty: 200 to 399.
    pub expect_status: Vec<u16>,
    /// Passing probes in a row that bring a down member back. Default 2.
    pub healthy_threshold: u32,
    /// Failing probes in a row that take a member down. Default 3.
    pub unhealthy_threshold: u32,
    /// The Host sent (default: the member's authority).
    pub host: Option<String>,
}

impl HealthCheck {
    pub fn passes(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }
}

/// What `lb = "consistent_hash"` hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    /// The client address (after `[traffic] trusted_proxies`, like the limits).
    ClientIp,
    /// A request header's value (lowercase name).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
    /// A named (or numbered) capture of the route's regex path.
    Capture(String),
}

/// Every member of a group is down (ejected or failing its checks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AllDown {
    /// 503 at once, naming the group.
    #[default]
    Refuse,
    /// Send to a member anyway, as if all were up.
    Try,
}

/// The policy of the group `name` from its table; errors go to `d`.
pub(super) fn group_policy(
    name: &str,
    g: &EndpointGroupFile,
    lb: Lb,
    d: &mut Diagnostics<'_>,
) -> GroupPolicy {
    let mut outlier = Outlier::default();
    if let Some(o) = &g.outlier {
        let o = o.get_ref();
        outlier.consecutive_5xx = o.consecutive_5xx.unwrap_or(outlier.consecutive_5xx);
        outlier.consecutive_failures = o.consecutive_failures.unwrap_or(outlier.consecutive_failures);
        let key = |k: &str| format!("endpoint group '{name}': outlier.{k}");
        outlier.base_ejection_time = duration(
            d,
            &o.base_ejection_time,
            &key("base_ejection_time"),
            outlier.base_ejection_time,
            false,
        );
        outlier.max_ejection_time = duration(
            d,
            &o.max_ejection_time,
            &key("max_ejection_time"),
            outlier.max_ejection_time,
            false,
        );
        if outlier.max_ejection_time < outlier.base_ejection_time {
            let span = o.max_ejection_time.as_ref().map_or(0..0, |s| s.span());
            d.at(
                span,
                format!("{} is shorter than base_ejection_time", key("max_ejection_time")),
                None,
                None,
            );
        }
        if let Some(p) = &o.max_ejection_percent {
            if *p.get_ref() > 100 {
                d.at(
                    p.span(),
                    format!("{} must be at most 100", key("max_ejection_percent")),
                    None,
                    None,
                );
            }
            outlier.max_ejection_percent = (*p.get_ref()).min(100);
        }
    }
    let health_check = g
        .health_check
        .as_ref()
        .map(|h| health_check(name, h.get_ref(), d));
    let hash_on = match (&g.hash_on, lb) {
        (Some(h), Lb::ConsistentHash) => hash_on(name, h, d),
        (None, Lb::ConsistentHash) => Some(HashOn::ClientIp),
        (Some(h), _) => {
            d.at(
                h.span(),
                format!("endpoint group '{name}': hash_on applies with lb = \"consistent_hash\" only"),
                None,
                None,
            );
            None
        }
        (None, _) => None,
    };
    let all_down = match g.all_down.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "refuse")) => AllDown::Refuse,
        Some((_, "try")) => AllDown::Try,
        Some((a, other)) => {
            d.at(
                a.span(),
                format!("endpoint group '{name}': all_down is \"refuse\" or \"try\", not \"{other}\""),
                None,
                None,
            );
            AllDown::Refuse
        }
    };
    GroupPolicy {
        outlier,
        health_check,
        hash_on,
        all_down,
    }
}

fn health_check(name: &str, h: &super::file::HealthCheckFile, d: &mut Diagnostics<'_>) -> HealthCheck {
    let key = |k: &str| format!("endpoint group '{name}': health_check.{k}");
    let path = h.path.get_ref();
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        d.at(
            h.path.span(),
            format!(
                "{} must start with '/' and have no spaces or control characters",
                key("path")
            ),
            None,
            None,
        );
    }
    let interval = duration(d, &h.interval, &key("interval"), Duration::from_secs(5), false);
    let timeout = duration(d, &h.timeout, &key("timeout"), Duration::from_secs(2), false);
    if timeout > interval {
        let span = h.timeout.as_ref().map_or(h.path.span(), |t| t.span());
        d.at(
            span,
            format!("{} is longer than its interval", key("timeout")),
            None,
            None,
        );
    }
    let threshold = |v: &Option<toml::Spanned<u32>>, k: &str, default: u32, d: &mut Diagnostics<'_>| match v {
        Some(t) if *t.get_ref() == 0 => {
            d.at(t.span(), format!("{} must be at least 1", key(k)), None, None);
            default
        }
        Some(t) => *t.get_ref(),
        None => default,
    };
    let healthy_threshold = threshold(&h.healthy_threshold, "healthy_threshold", 2, d);
    let unhealthy_threshold = threshold(&h.unhealthy_threshold, "unhealthy_threshold", 3, d);
    let expect_status = match &h.expect_status {
        Some(list) => {
            if list.get_ref().is_empty() || list.get_ref().iter().any(|s| !(100..=599).contains(s)) {
                d.at(
                    list.span(),
                    format!(
                        "{} lists statuses from 100 to 599, at least one",
                        key("expect_status")
                    ),
                    None,
                    None,
                );
            }
            list.get_ref().clone()
        }
        None => Vec::new(),
    };
    HealthCheck {
        path: path.clone(),
        interval,
        timeout,
        expect_status,
        healthy_threshold,
        unhealthy_threshold,
        host: h.host.clone(),
    }
}

fn hash_on(name: &str, h: &toml::Spanned<String>, d: &mut Diagnostics<'_>) -> Option<HashOn> {
    let v = h.get_ref();
    let parsed = match v.split_once(':') {
        None if v == "client_ip" => Some(HashOn::ClientIp),
        Some(("header", n)) if is_token(n) => Some(HashOn::Header(n.to_ascii_lowercase())),
        Some(("cookie", n)) if is_token(n) => Some(HashOn::Cookie(n.to_string())),
        Some(("query", n)) if !n.is_empty() => Some(HashOn::Query(n.to_string())),
        Some(("capture", n)) if !n.is_empty() => Some(HashOn::Capture(n.to_string())),
        _ => None,
    };
    if parsed.is_none() {
        d.at(
            h.span(),
            format!(
                "endpoint group '{name}': hash_on is \"client_ip\", \"header:NAME\", \"cookie:NAME\", \"query:NAME\" or \"capture:NAME\", not \"{v}\""
            ),
            None,
            None,
        );
    }
    parsed
}

/// A route's retry policy: which failed attempts go again, to another member when
/// the group has one up, within a budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (2 to 5). Default 2.
    pub attempts: u32,
    /// Which failures (bits of [`RetryOn`]). Default connect failures and resets.
    pub on: u32,
    /// Retries in flight on a shard stay under this share of its requests in flight
    /// (Envoy's retry budget), so that retries cannot multiply load in an outage.
    /// Default 20.
    pub budget_percent: u32,
    /// …but this many may always be in flight. Default 3.
    pub min_retry_concurrency: u32,
}

/// The failures a retry policy may retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOn {
    /// The connect failed (refused, timed out, TLS): nothing was sent, any method
    /// goes again.
    ConnectFailure = 1,
    /// The upstream closed or reset before any response byte: idempotent methods.
    Reset = 2,
    /// No response head within `response_timeout`: idempotent methods.
    Timeout = 4,
    /// The upstream answered 502, 503 or 504: idempotent methods; the answer is
    /// dropped unread.
    Status502 = 8,
    Status503 = 16,
    Status504 = 32,
}

impl RetryOn {
    const NAMES: [(&'static str, RetryOn); 6] = [
        ("connect_failure", RetryOn::ConnectFailure),
        ("reset", RetryOn::Reset),
        ("timeout", RetryOn::Timeout),
        ("502", RetryOn::Status502),
        ("503", RetryOn::Status503),
        ("504", RetryOn::Status504),
    ];

    pub fn bit(self) -> u32 {
        self as u32
    }

    /// The bit of a status that may be retried, if it is one.
    pub fn status(status: u16) -> Option<RetryOn> {
        match status {
            502 => Some(RetryOn::Status502),
            503 => Some(RetryOn::Status503),
            504 => Some(RetryOn::Status504),
            _ => None,
        }
    }
}

impl RetryPolicy {
    pub fn retries(&self, on: RetryOn) -> bool {
        self.on & on.bit() != 0
    }
}

/// The retry policy of route `route` from its `retry` table; errors go to `d`.
pub(super) fn retry_policy(
    route: &str,
    t: &toml::Spanned<super::file::RetryFile>,
    d: &mut Diagnostics<'_>,
) -> RetryPolicy {
    let r = t.get_ref();
    let key = |k: &str| format!("route '{route}': retry.{k}");
    let attempts = match &r.attempts {
        Some(a) if !(2..=5).contains(a.get_ref()) => {
            d.at(
                a.span(),
                format!("{} is from 2 to 5 (the first attempt counts)", key("attempts")),
                None,
                None,
            );
            2
        }
        Some(a) => *a.get_ref(),
        None => 2,
    };
    let on = match &r.on {
        None => RetryOn::ConnectFailure.bit() | RetryOn::Reset.bit(),
        Some(list) => {
            let mut bits = 0;
            for v in list {
                match RetryOn::NAMES.iter().find(|(n, _)| n == v.get_ref()) {
                    Some((_, on)) => bits |= on.bit(),
                    None => {
                        let names: Vec<&str> = RetryOn::NAMES.iter().map(|(n, _)| *n).collect();
                        d.at(
                            v.span(),
                            format!(
                                "{}: '{}' is not one of {}",
                                key("on"),
                                v.get_ref(),
                                names.join(", ")
                            ),
                            None,
                            None,
                        );
                    }
                }
            }
            bits
        }
    };
    let budget_percent = match &r.budget_percent {
        Some(b) if *b.get_ref() > 100 => {
            d.at(
                b.span(),
                format!("{} is at most 100", key("budget_percent")),
                None,
                None,
            );
            20
        }
        Some(b) => *b.get_ref(),
        None => 20,
    };
    RetryPolicy {
        attempts,
        on,
        budget_percent,
        min_retry_concurrency: r.min_retry_concurrency.unwrap_or(3),
    }
}
