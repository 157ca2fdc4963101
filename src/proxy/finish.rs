//! The last phase: what a request leaves behind — its counters and its access log
//! line.

use crate::observe::access_log::ResponseFields;
use crate::proxy::exchange::{Exchange, Outcome};

/// Records `outcome` of `x` in the shard's and the route's histograms and completes
/// the access log line begun with the request.
pub fn record(x: &mut Exchange<'_>, outcome: &Outcome) {
    let lifetime = x.started.elapsed().as_micros() as u64;
    // A tunnel's latency is its time to the 101, not its lifetime (the log has that).
    let micros = match (x.sent.tunnel, x.sent.upstream_head) {
        (Some(_), Some(t)) => t.saturating_duration_since(x.started).as_micros() as u64,
        _ => lifetime,
    };
    let view = x.view;
    x.shard.stats.all.record(outcome.status, micros);
    if let Some(h) = x.route.and_then(|r| view.route_stats.get(r.index())) {
        h.record(outcome.status, micros);
        h.body_bytes.add(x.sent.body_bytes);
        if let crate::http::BodyFraming::Length(n) = x.facts.framing {
            h.request_bytes.add(n);
        }
    }
    if let Some(r) = x.route {
        x.shard.count_code(view, r, x.facts.method, outcome.status);
    }
    if let Some(u) = x.upstream {
        let to_head = x.sent.upstream_head.map_or(micros, |t| {
            t.saturating_duration_since(x.started).as_micros() as u64
        });
        view.upstream_stats(u).requests.record(outcome.status, to_head);
    }
    let rule = x.route.and_then(|r| view.snap.config.routes.get(r.index()));
    if let (Some(rule), Some(env)) = (rule, x.env) {
        let per_env = view.version_stats.get(rule.group_index);
        if let Some(Some(h)) = per_env.and_then(|v| v.get(usize::from(env.0))) {
            h.record(outcome.status, micros);
        }
    }
    let Some(line) = x.log_line.take() else { return };
    let upstream_us = x
        .sent
        .upstream_head
        .map(|t| t.saturating_duration_since(x.started).as_micros() as u64);
    x.shard.access_log.borrow_mut().finish(
        line,
        &ResponseFields {
            group: rule.map(|r| r.group.as_str()),
            route: rule.map(|r| r.name.as_str()),
            upstream: x.upstream.map(|u| view.snap.upstream(u).addr),
            status: outcome.status,
            bytes: x.sent.body_bytes,
            duration_us: lifetime,
            upstream_us,
            caller: x.caller.map(|c| c.id(&view.snap.config.access)),
            env: x.env.and_then(|e| view.snap.env_name(e)),
            version: x.route.zip(x.env).and_then(|(r, e)| view.snap.version_in(r, e)),
            limit: x
                .limited
                .and_then(|l| view.snap.limits.get(l.limit()))
                .map(|l| l.def.name.as_str()),
            tunnel: x.sent.tunnel.map(|(n, end)| (n, end.as_str())),
        },
    );
}
