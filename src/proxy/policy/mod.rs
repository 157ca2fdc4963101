//! Policies: what a request must satisfy before anything of it is sent upstream.
//!
//! The phase runs after the decision (so a policy knows the route, its group and
//! environment) and before the upstream is picked (so a refused request costs no
//! upstream work). A policy may read the [`Exchange`] and the shard's state; it
//! answers by returning a [`ProxyError`], whose `answer` is the client's response.
//!
//! The rooms, in the order they run:
//! - [`auth`] — access authorization: subscription keys, signature key pairs.
//!   Records the caller's identity on the exchange for what follows. Runs for mock
//!   routes too (a group's auth covers every route of it).
//! - [`limits`] — traffic control: per group, route, key and client-address rate
//!   limits from shard-local leases (`traffic/`). Runs for mock routes too.
//!
//! Backend signing is not a policy: it edits the upstream head, in the rewrite.
//!
//! Then the request-body limit (`max_body_bytes`, per route over `[limits]`). A
//! declared `Content-Length` over it is refused here, before an upstream is picked;
//! a chunked body is counted as it streams (`body.rs`), and refused when its running
//! total passes the limit.

pub mod auth;
pub mod limits;

use crate::http::BodyFraming;
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::Exchange;

/// Runs every policy that applies to `x`; the first to refuse answers.
#[inline]
pub fn admit(x: &Exchange<'_>) -> Result<(), ProxyError> {
    if let BodyFraming::Length(n) = x.facts.framing {
        if n > body_limit(x) {
            return Err(ProxyError::body_too_large());
        }
    }
    Ok(())
}

/// The request-body limit of `x`: its route's, else the server's (`u64::MAX`: none).
pub fn body_limit(x: &Exchange<'_>) -> u64 {
    let config = &x.view.snap.config;
    x.route
        .and_then(|r| config.routes.get(r.index()))
        .and_then(|r| r.max_body_bytes)
        .unwrap_or(config.limits.max_body_bytes)
}
