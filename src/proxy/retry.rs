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
//! Per-route retry policies and budgets (issue 13) extend this file.

use crate::proxy::error::{ProxyError, Retry};
use crate::proxy::exchange::RequestFacts;

/// Attempts per request at most: the first, and one retry.
pub const MAX_ATTEMPTS: usize = 2;

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

/// Whether attempt `attempt` (0-based), which failed with `err` on a connection
/// that was `reused` from the pool, is followed by another.
pub fn again(err: &ProxyError, attempt: usize, reused: bool) -> bool {
    attempt + 1 < MAX_ATTEMPTS && err.is_retry_safe(reused)
}
