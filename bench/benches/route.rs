//! The router's per-request work beyond finding the path's candidates.
//!
//! Each bench answers one question:
//!
//! - `route/predicates_50_rules`: what do query and header predicates cost? 50 rules on
//!   one path, each with 3 predicates (a header `equals`, a query `one_of`, a header
//!   `absent`), the winner last, a request with 12 headers and 4 query parameters: the
//!   one pass over headers and query into the perfect-hashed slots, then 50 rules'
//!   predicates read from the slots.
//! - `route/template_render`: what does rendering a target cost? A regex rule with a
//!   named and an indexed group, rendered into a reused buffer with the request's query
//!   merged after the template's.

use criterion::{criterion_group, criterion_main, Criterion};
use ringway_router::{
    ActionSpec, CompiledRouter, EnvId, MatchScratch, PathSpec, PredicateOp, PredicateSpec, RequestView,
    RouterSpec, RuleSpec, Source, NO_HEADERS,
};
use std::hint::black_box;

fn rule(name: String, path: PathSpec, predicates: Vec<PredicateSpec>, to: &str) -> RuleSpec {
    RuleSpec {
        name,
        group: "g".into(),
        hosts: vec![],
        methods: vec![],
        context_path: None,
        path,
        predicates,
        environments: None,
        action: ActionSpec::Proxy { to: to.into() },
    }
}

fn pred(source: Source, name: &str, op: PredicateOp) -> PredicateSpec {
    PredicateSpec {
        source,
        name: name.into(),
        op,
    }
}

fn predicates(c: &mut Criterion) {
    let rules = (0..50)
        .map(|i| {
            rule(
                format!("r{i}"),
                PathSpec::Prefix("/orders".into()),
                vec![
                    pred(
                        Source::Header,
                        "x-tenant",
                        PredicateOp::Equals(format!("tenant-{i}")),
                    ),
                    pred(
                        Source::Query,
                        "region",
                        PredicateOp::OneOf(vec!["eu".into(), format!("r{i}")]),
                    ),
                    pred(Source::Header, "x-canary", PredicateOp::Absent),
                ],
                "{#endpoints['b']}/orders",
            )
        })
        .collect();
    let spec = RouterSpec {
        rules,
        endpoints: vec!["b".into()],
        environments: vec!["online".into()],
        ..Default::default()
    };
    let router = CompiledRouter::build(&spec).expect("router");
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b"host", b"api.example.com"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)"),
        (b"accept", b"application/json"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"accept-language", b"en-US,en;q=0.9"),
        (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
        (b"x-request-id", b"5f3a9c01-0-1a"),
        (b"cookie", b"session=abc; theme=dark"),
        (b"x-tenant", b"tenant-49"),
        (b"referer", b"https://www.example.com/app"),
        (b"cache-control", b"no-cache"),
        (b"x-forwarded-for", b"203.0.113.7"),
    ];
    let req = RequestView {
        method: b"GET",
        host: Some(b"api.example.com"),
        path: b"/orders/2024/list",
        query: Some(b"page=2&region=eu&sort=date&fields=id%2Cname"),
        env: EnvId(0),
    };
    let mut scratch = MatchScratch::default();
    let won = router
        .match_request(&req, headers.iter().copied(), &mut scratch)
        .expect("path");
    assert_eq!(
        won.map(|r| router.route_name(r).1),
        Some("r49"),
        "the last rule must win"
    );
    c.bench_function("route/predicates_50_rules", |b| {
        b.iter(|| black_box(router.match_request(black_box(&req), headers.iter().copied(), &mut scratch)))
    });
}

fn template(c: &mut Criterion) {
    let spec = RouterSpec {
        rules: vec![rule(
            "store".into(),
            PathSpec::Regex("/v1/stores/(?<id>[0-9]+)/(.*)".into()),
            vec![],
            "{#endpoints['b']}/stores/{#groupName['id']}/{#group[1]}?src=gw",
        )],
        endpoints: vec!["b".into()],
        environments: vec!["online".into()],
        ..Default::default()
    };
    let router = CompiledRouter::build(&spec).expect("router");
    let req = RequestView {
        method: b"GET",
        host: None,
        path: b"/v1/stores/12345/inventory/items",
        query: Some(b"page=2&sort=name"),
        env: EnvId(0),
    };
    let mut scratch = MatchScratch::default();
    let route = router
        .match_request(&req, NO_HEADERS, &mut scratch)
        .expect("path")
        .expect("a match");
    let mut out = Vec::with_capacity(256);
    router.render_target(route, &scratch, req.query, &mut out);
    assert_eq!(out, b"/stores/12345/inventory/items?src=gw&page=2&sort=name");
    c.bench_function("route/template_render", |b| {
        b.iter(|| {
            out.clear();
            black_box(router.render_target(route, black_box(&scratch), req.query, &mut out));
        })
    });
}

criterion_group!(benches, predicates, template);
criterion_main!(benches);
