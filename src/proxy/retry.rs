//! When a failed attempt is sent again.
//!
//! One rule today, the one every production proxy has: a request that fails on a
//! *reused* (pooled) connection before any response byte arrived is sent once more
//! on a fresh connection — but only when nothing of it can have been acted on: an
//! idempotent method (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and
//! no body. The upstream closing an idle keep-alive connection just as we reuse it
//! is an everyday race, not a failure of the upstream; a fresh connection that
//! fails the same way is the upstream's answer, and is not retried.
//!
//! A second case needs no idempotency: the very first write of the request (its head,
//! with the body's first bytes) failed on a reused connection. Nothing of the request
//! reached the upstream — a partial head is no request — and the body's bytes are
//! still in the client buffer, so any method goes again ([`unsent`]).
//!
//! Beside it, a route's retry policy (`retry = { … }`, `config::health::RetryPolicy`):
//! which failed attempts go again, to another member of the group when one is up,
//! at most `attempts` in all. A connect failure goes again whatever the request (none
//! of it was sent); a reset, a timeout or a 502/503/504 only for an idempotent request
//! without a body, since the upstream may have acted on it and the body is gone. And a
//! budget: on each shard, requests retrying stay under `budget_percent` of its
//! requests in flight (but `min_retry_concurrency` may always), so that an outage
//! does not turn every request into several (Envoy's retry budget).

use crate::config::health::{RetryOn, RetryPolicy};
use crate::http::BodyFraming;
use crate::proxy::error::{ProxyError, Retry};
use crate::proxy::exchange::{Exchange, RequestFacts};

/// The error for an upstream that closed (or reset) before any response byte,
/// with the retry rule this request allows.
pub fn closed_before_response(facts: &RequestFacts) -> ProxyError {
    let retry = if facts.idempotent && !facts.has_body() {
        Retry::IfReused
    } else {
        Retry::Never
    };
    ProxyError::closed_before_response(retry)
}

/// The error for a request none of which reached the upstream (its first write
/// failed): safe to send again on a fresh connection whatever its method.
pub fn unsent() -> ProxyError {
    ProxyError::closed_before_response(Retry::IfReused)
}

/// Whether an attempt that failed with `err` on a connection that was `reused`
/// from the pool goes once more on a fresh connection (once per upstream tried).
pub fn stale(err: &ProxyError, reused: bool) -> bool {
    err.is_retry_safe(reused)
}

/// The route's retry policy, if it has one.
pub fn policy<'v>(x: &Exchange<'v>) -> Option<&'v RetryPolicy> {
    let view = x.view;
    let route = view.snap.config.routes.get(x.route?.index())?;
    route.retry.as_ref()
}

/// Nothing of the request body has to be sent again.
fn bodiless(x: &Exchange<'_>) -> bool {
    matches!(x.facts.framing, BodyFraming::None | BodyFraming::Length(0))
}

/// Whether the failed attempt `x.retries` (0-based) goes again under the route's
/// policy — not counting the budget (see [`take_budget`]).
pub fn by_policy(x: &Exchange<'_>, err: &ProxyError) -> bool {
    let Some(p) = policy(x) else { return false };
    if x.retries + 1 >= p.attempts as usize {
        return false;
    }
    let replayable = x.facts.idempotent && bodiless(x);
    if err.is_connect() {
        return p.retries(RetryOn::ConnectFailure);
    }
    if err.is_closed_before_response() {
        return p.retries(RetryOn::Reset) && replayable;
    }
    if err.is_response_timeout() {
        return p.retries(RetryOn::Timeout) && replayable;
    }
    if let Some(status) = err.retried_status() {
        return RetryOn::status(status).is_some_and(|on| p.retries(on)) && replayable;
    }
    false
}

/// Whether the upstream's answer `status` to this attempt should be dropped and the
/// request sent again (asked before the answer is relayed; the budget must allow).
pub fn on_status(x: &Exchange<'_>, status: u16) -> bool {
    let Some(on) = RetryOn::status(status) else {
        return false;
    };
    let Some(p) = policy(x) else { return false };
    if !(p.retries(on) && x.retries + 1 < p.attempts as usize && x.facts.idempotent && bodiless(x)) {
        return false;
    }
    if x.retrying || budget_allows(x, p) {
        return true;
    }
    x.shard.stats.retry_budget_exhausted.inc();
    false
}

/// Whether the shard's budget lets one more request retry.
fn budget_allows(x: &Exchange<'_>, p: &RetryPolicy) -> bool {
    let in_flight = x.shard.in_flight.get() as u64;
    let allowed = (in_flight * u64::from(p.budget_percent) / 100).max(u64::from(p.min_retry_concurrency));
    (x.shard.retries_active.get() as u64) < allowed
}

/// Takes the budget for `x`'s retries (once per request; released by
/// [`release_budget`]). False, and counted, when the budget is spent.
pub fn take_budget(x: &mut Exchange<'_>) -> bool {
    if x.retrying {
        return true;
    }
    let Some(p) = policy(x) else { return false };
    if !budget_allows(x, p) {
        x.shard.stats.retry_budget_exhausted.inc();
        return false;
    }
    x.shard.retries_active.set(x.shard.retries_active.get() + 1);
    x.retrying = true;
    true
}

/// Gives back what [`take_budget`] took.
pub fn release_budget(x: &mut Exchange<'_>) {
    if x.retrying {
        x.shard
            .retries_active
            .set(x.shard.retries_active.get().saturating_sub(1));
        x.retrying = false;
    }
}
