//! The phases of one request, over one [`Exchange`].
//!
//! ```text
//! serve_request
//!   1 decide    environment + rule + target           decide.rs   (pure; `explain` too)
//!   │           ├─ mock          → local answer        local.rs
//!   │           └─ refusal       → local answer        local.rs
//!   2 policies  auth (keys, signatures); rate limits;   policy/
//!               the body limit
//!               a small body is read whole             body.rs
//!   3 pick      endpoint group → one member that is up pick.rs, upstream::Balancer
//!   4 rewrite   the upstream request head              forward.rs
//!   5 checkout  pooled connection, else connect        upstream::{ConnPool, connect}
//!   6 forward   head, then the body streamed           forward.rs, body.rs
//!   7 relay     response head and body                 relay.rs
//!   │           5–7 again once on a fresh connection   retry.rs
//!   │           when a pooled one failed before any
//!   │           response byte (idempotent, or unsent)
//!   8 finish    pool check-in, counters, access log    finish.rs
//! ```
//!
//! Every failure is a [`ProxyError`] (error.rs), which says whom to blame and
//! whether a retry is safe; `local::fail` turns it into the client's answer.
//!
//! This layer works on the context handed to it: it imports the shard state, the
//! snapshot, `upstream/`, `http/`, `io/` and `observe/`, never `downstream/` (which
//! calls it) or `runtime/`.

mod body;
pub mod decide;
pub mod error;
pub mod exchange;
mod finish;
mod forward;
pub mod local;
mod pick;
pub mod policy;
mod relay;
mod retry;
mod tunnel;

pub use decide::{decide, Decision, Dest, Refusal, RequestParts};
pub use error::{ProxyError, Source};
pub use exchange::{ClientConn, Exchange, Next, Outcome};

use crate::io::Conn;
use crate::upstream::{connect_to, ConnectError, PoolKey, UpstreamId};

/// Serves one request, from the decision to the log line.
pub async fn serve_request(x: &mut Exchange<'_>) -> Outcome {
    let mut target = x.shard.take_small();
    let decision = decide_request(x, &mut target); // 1
    x.route = decision.route();
    x.env = decision.env();
    let authorized = match decision {
        Decision::Refuse { .. } => Ok(()),
        _ => {
            policy::limits::prepare(x);
            // Before any await: a capture lives in the shard's match scratch.
            if let Decision::Proxy { dest, .. } = &decision {
                x.hash_key = pick::request_key(x, *dest);
            }
            policy::auth::authorize(x).await // 2 (auth)
        }
    };
    let limited = match (&authorized, &decision) {
        (Ok(()), Decision::Mock { .. } | Decision::Proxy { .. }) => policy::limits::admit(x).err(), // 2 (limits)
        _ => None,
    };
    let outcome = match (authorized, limited, decision) {
        (Err(policy::auth::Refused::Denied(d)), _, _) => local::deny(x, &d).await,
        (Err(policy::auth::Refused::Failed(e)), _, _) => local::fail(x, e).await,
        (Ok(()), Some(l), _) => local::limited(x, &l).await,
        (Ok(()), None, Decision::Mock { route, .. }) => local::mock(x, route).await,
        (Ok(()), None, Decision::Refuse { refusal, .. }) => {
            if refusal == Refusal::NoMatch {
                x.shard.stats.no_match.inc();
            }
            let status = refusal.status(x.view.snap.config.server.no_match_status);
            local::refuse(x, status, &refusal.problem()).await
        }
        (Ok(()), None, Decision::Proxy { dest, .. }) => match proxy(x, dest, &target).await {
            Ok(outcome) => outcome,
            Err(e) => local::fail(x, e).await,
        },
    };
    x.shard.give_small(target);
    finish::record(x, &outcome); // 8
    outcome
}

/// Phases 2–7 for a request that is proxied.
async fn proxy(x: &mut Exchange<'_>, dest: Dest, target: &[u8]) -> Result<Outcome, ProxyError> {
    policy::admit(x)?; // 2
    x.upgrade = tunnel::allowed(x);
    if x.upgrade.is_some() {
        tunnel::check_request(x)?;
    }
    // A small body is read whole before an upstream is picked and a connection
    // taken (not when the client waits for `100 Continue`, which comes once one is).
    if !x.facts.expect_continue {
        let timing = body::BodyTiming::of(&x.view.snap.config.limits);
        body::buffer(x.client, x.facts.framing, timing).await?;
    }
    let (mut upstream, mut member) = pick::pick(x, dest, &[])?; // 3
    let mut head = x.shard.take_small();
    // Members this request failed on, avoided by a retry while another is up.
    let mut tried: Vec<usize> = Vec::new();
    let mut stale_retried = false;
    let result = loop {
        x.upstream = Some(upstream);
        head.clear();
        if !forward::rewrite(x, target, upstream, &mut head) {
            // 4: a group that signs never sends an unsigned request.
            break Err(ProxyError::internal("the upstream request could not be signed"));
        }
        x.view.balancer.track(upstream, true);
        let attempt = attempt(x, upstream, stale_retried, &mut head).await; // 5–7
        x.view.balancer.track(upstream, false);
        let (e, reused) = match attempt {
            Ok(outcome) => {
                pick::observe(x, member, Ok(&outcome));
                break Ok(outcome);
            }
            Err(failed) => failed,
        };
        if e.is_response_timeout() {
            x.view.upstream_stats(upstream).timeouts.inc();
        }
        // A pooled connection the upstream had closed: the same upstream, fresh.
        if !stale_retried && retry::stale(&e, reused) {
            x.view.upstream_stats(upstream).retries.inc();
            stale_retried = true;
            continue;
        }
        // A pooled connection closed under a request that cannot go again is the
        // keep-alive race, not the upstream failing.
        if !(reused && e.is_closed_before_response()) {
            pick::observe(x, member, Err(&e));
        }
        if !retry::by_policy(x, &e) {
            break Err(e);
        }
        // The route's policy: again, on another member when one is up.
        if let Some((_, i)) = member {
            tried.push(i);
        }
        let Ok((next, next_member)) = pick::pick(x, dest, &tried) else {
            break Err(e);
        };
        if !retry::take_budget(x) {
            break Err(e);
        }
        // The failed attempt's answer counts for its upstream.
        let micros = x.started.elapsed().as_micros() as u64;
        x.view
            .upstream_stats(upstream)
            .requests
            .record(e.status(), micros);
        x.retries += 1;
        x.view.upstream_stats(upstream).retries.inc();
        (upstream, member) = (next, next_member);
        stale_retried = false;
    };
    retry::release_budget(x);
    x.shard.give_small(head);
    result
}

/// Phases 5–7 once: a connection (pooled unless `fresh_only`), the request, the
/// response. A failure comes with whether the connection was a reused one.
async fn attempt(
    x: &mut Exchange<'_>,
    upstream: UpstreamId,
    fresh_only: bool,
    head: &mut Vec<u8>,
) -> Result<Outcome, (ProxyError, bool)> {
    let (mut conn, reused) = checkout(x, upstream, fresh_only).await.map_err(|e| (e, false))?; // 5
    let relayed = match forward::send(x, &mut conn, head).await {
        // 6
        Ok(forward::Sent::Whole) => relay::response(x, &mut conn).await, // 7
        // The upstream stopped taking the body: its early answer, if it sent one.
        Ok(forward::Sent::Cut) => relay::response(x, &mut conn).await.map_err(|e| {
            if e.is_closed_before_response() {
                ProxyError::body_write_failed()
            } else {
                e
            }
        }),
        Err(e) => Err(e),
    };
    match relayed {
        Ok(r) => {
            if r.reusable {
                checkin(x, upstream, conn);
            }
            Ok(r.outcome)
        }
        Err(e) => Err((e, reused)),
    }
}

/// Phase 1 over the HTTP/1 head: the protocol-neutral parts of the request for
/// [`decide`].
fn decide_request(x: &Exchange<'_>, target: &mut Vec<u8>) -> Decision {
    let buf = &x.client.buf[..];
    let head = &x.head;
    let req = RequestParts {
        method: head.method.slice(buf),
        host: head.host.map(|h| h.slice(buf)),
        path: if head.path.is_empty() {
            b"/"
        } else {
            head.path.slice(buf)
        },
        query: head.query.map(|q| q.slice(buf)),
        env: None,
    };
    let headers = x
        .fields
        .headers()
        .iter()
        .map(|h| (h.name.slice(buf), h.value.slice(buf)));
    let mut scratch = x.shard.match_scratch.borrow_mut();
    decide(&x.view.snap, &x.view.router, &req, headers, &mut scratch, target)
}

/// The pool key of `upstream`.
fn pool_key(x: &Exchange<'_>, upstream: UpstreamId) -> PoolKey {
    let u = x.view.snap.upstream(upstream);
    PoolKey {
        addr: u.addr,
        tls: u.tls.as_ref().map(|t| t.id.clone()),
    }
}

/// Phase 5: an idle pooled connection (unless `fresh_only`), else a new one.
/// Returns the connection and whether it was reused.
async fn checkout(
    x: &Exchange<'_>,
    upstream: UpstreamId,
    fresh_only: bool,
) -> Result<(Conn, bool), ProxyError> {
    let cfg = &x.view.snap.config.upstream;
    if !fresh_only {
        let pooled = x
            .shard
            .pool
            .borrow_mut()
            .take(pool_key(x, upstream), cfg.idle_timeout);
        if let Some(conn) = pooled {
            return Ok((conn, true));
        }
    }
    let u = x.view.snap.upstream(upstream);
    match connect_to(u.addr, u.tls.as_deref(), cfg.connect_timeout, cfg.send_timeout).await {
        Ok(conn) => Ok((conn, false)),
        Err(e) => {
            let stats = x.view.upstream_stats(upstream);
            stats.connect_errors.inc();
            match e {
                ConnectError::Verify(_) => stats.tls_verify_failures.inc(),
                ConnectError::Handshake => stats.tls_handshake_failures.inc(),
                _ => {}
            }
            Err(ProxyError::connect(e))
        }
    }
}

/// Phase 8 (first part): a connection whose response ended cleanly goes back to the
/// shard's pool.
fn checkin(x: &Exchange<'_>, upstream: UpstreamId, conn: Conn) {
    let max_idle = x.view.snap.config.upstream.max_idle_per_endpoint;
    let stats = &x.view.upstream_stats[upstream.index()];
    x.shard
        .pool
        .borrow_mut()
        .put(pool_key(x, upstream), conn, max_idle, stats);
}
