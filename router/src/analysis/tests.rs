//! Tests of the shadow and overlap analysis.

use super::*;
use crate::spec::{ActionSpec, PredicateOp, PredicateSpec, Source};

fn rule(path: PathSpec) -> RuleSpec {
    RuleSpec {
        name: String::new(),
        group: "g".into(),
        hosts: vec![],
        methods: vec![],
        context_path: None,
        path,
        predicates: vec![],
        environments: None,
        action: ActionSpec::Local,
    }
}
fn exact(p: &str) -> RuleSpec {
    rule(PathSpec::Exact(p.into()))
}
fn prefix(p: &str) -> RuleSpec {
    rule(PathSpec::Prefix(p.into()))
}
fn regex(p: &str) -> RuleSpec {
    rule(PathSpec::Regex(p.into()))
}
fn run(rules: Vec<RuleSpec>) -> Analysis {
    let rules = rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| RuleSpec {
            name: format!("r{i}"),
            ..r
        })
        .collect();
    let spec = RouterSpec {
        rules,
        environments: vec!["test".into(), "online".into()],
        ..Default::default()
    };
    analyze(&spec, &AnalysisLimits::default())
}
fn shadowed(rule: usize, by: &[usize], witness: &str) -> Finding {
    Finding {
        rule,
        kind: FindingKind::Shadowed { by: by.to_vec() },
        witness: witness.into(),
    }
}
fn overlap(rule: usize, with: usize, witness: &str) -> Finding {
    Finding {
        rule,
        kind: FindingKind::Overlap { with },
        witness: witness.into(),
    }
}

#[test]
fn exact_duplicate_is_shadowed_by_the_first_only() {
    let a = run(vec![exact("/a"), exact("/a"), exact("/a")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/a"), shadowed(2, &[0], "/a")]);
    assert_eq!(a.skipped, 0);
}

#[test]
fn prefix_shadows_exact_below_it_but_not_beside_it() {
    let a = run(vec![prefix("/api"), exact("/api/users"), exact("/apix")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/api/users")]);
}

#[test]
fn regex_catch_all_shadows_a_narrower_regex() {
    let a = run(vec![regex("/v1/.*"), regex("/v1/ecom/(.*)")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/v1/ecom/")]);
}

#[test]
fn gravitee_ecome_does_not_shadow_or_overlap_ecom_slash() {
    // Whole-path matching: `/v1/ecom/` is not in `/v1/ecome.*`.
    let a = run(vec![regex("/v1/ecome.*"), regex("/v1/ecom/(.*)")]);
    assert_eq!(a.findings, vec![]);
    // The other way round they do not meet either.
    let a = run(vec![regex("/v1/ecom/(.*)"), regex("/v1/ecome.*")]);
    assert_eq!(a.findings, vec![]);
}

#[test]
fn union_of_two_rules_shadows_a_third() {
    let a = run(vec![
        regex("/a/[0-9][^/]*"),
        regex("/a/[^0-9/][^/]*"),
        exact("/b"),
        regex("/a/[^/]+"),
    ]);
    assert_eq!(a.findings, vec![shadowed(3, &[0, 1], "/a/0")]);
    // `[0-9]+` leaves segments like `0A` uncovered: overlaps only, no shadowing.
    let a = run(vec![
        regex("/a/[0-9]+"),
        regex("/a/[^0-9/][^/]*"),
        regex("/a/[^/]+"),
    ]);
    assert_eq!(a.findings, vec![overlap(2, 0, "/a/0"), overlap(2, 1, "/a/A")]);
}

#[test]
fn the_cover_is_reduced_to_the_rules_needed() {
    let a = run(vec![
        regex("/a/[0-9]+"),
        prefix("/a"),
        regex("/a/[a-z]+"),
        exact("/a/b"),
    ]);
    assert_eq!(
        a.findings,
        vec![
            shadowed(2, &[1], "/a/a"),
            shadowed(3, &[1], "/a/b"),
            overlap(1, 0, "/a/0"),
        ]
        .into_iter()
        .fold(Vec::new(), |mut v, f| {
            v.push(f);
            v.sort_by_key(|f| f.rule);
            v
        })
    );
}

#[test]
fn a_rule_with_a_predicate_never_shadows_but_can_be_shadowed() {
    let mut guarded = prefix("/api");
    guarded.predicates.push(PredicateSpec {
        source: Source::Header,
        name: "x-beta".into(),
        op: PredicateOp::Present,
    });
    let later_guarded = RuleSpec {
        predicates: guarded.predicates.clone(),
        ..exact("/api/y")
    };
    let a = run(vec![guarded, exact("/api/x"), prefix("/api"), later_guarded]);
    assert_eq!(
        a.findings,
        vec![
            overlap(1, 0, "/api/x"),
            overlap(2, 0, "/api"),
            overlap(2, 1, "/api/x"),
            shadowed(3, &[2], "/api/y"),
        ]
    );
}

#[test]
fn different_hosts_methods_or_environments_do_not_shadow() {
    let with = |f: &dyn Fn(&mut RuleSpec)| {
        let mut r = prefix("/api");
        f(&mut r);
        r
    };
    let host = |h: &'static str| move |r: &mut RuleSpec| r.hosts = vec![h.into()];
    // Disjoint hosts: nothing at all.
    let a = run(vec![with(&host("a.example.com")), with(&host("b.example.com"))]);
    assert_eq!(a.findings, vec![]);
    // A wildcard covers a host under it, not the other way round.
    let a = run(vec![with(&host("*.example.com")), with(&host("a.example.com"))]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/api")]);
    let a = run(vec![with(&host("a.example.com")), with(&host("*.example.com"))]);
    assert_eq!(a.findings, vec![overlap(1, 0, "/api")]);
    // Methods: a narrower earlier rule overlaps, a disjoint one does not meet.
    let get = |r: &mut RuleSpec| r.methods = vec!["GET".into()];
    let post = |r: &mut RuleSpec| r.methods = vec!["POST".into()];
    let a = run(vec![with(&get), prefix("/api"), with(&post)]);
    assert_eq!(a.findings, vec![overlap(1, 0, "/api"), shadowed(2, &[1], "/api")]);
    let a = run(vec![with(&get), with(&post)]);
    assert_eq!(a.findings, vec![]);
    // Environments likewise.
    let online = |r: &mut RuleSpec| r.environments = Some(vec!["online".into()]);
    let test = |r: &mut RuleSpec| r.environments = Some(vec!["test".into()]);
    let a = run(vec![with(&online), with(&test), prefix("/api")]);
    assert_eq!(a.findings, vec![overlap(2, 0, "/api"), overlap(2, 1, "/api")]);
}

#[test]
fn context_paths_are_part_of_the_language() {
    let ctx = |c: &str, r: RuleSpec| RuleSpec {
        context_path: Some(c.into()),
        ..r
    };
    let a = run(vec![ctx("/store", regex("/(.*)")), exact("/store/x")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/store/x")]);
    // `/(.*)` under /store also takes /store itself (the router sees "/").
    let a = run(vec![ctx("/store", regex("/(.*)")), exact("/store")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/store")]);
    // But not /storex; and `/.+` under /store/ takes /store/x, not /store.
    let a = run(vec![
        ctx("/store", regex("/(.*)")),
        prefix("/storex"),
        ctx("/store/", regex("/.+")),
    ]);
    assert_eq!(a.findings, vec![shadowed(2, &[0], "/store/0")]);
    let a = run(vec![ctx("/store/", regex("/.+")), exact("/store")]);
    assert_eq!(a.findings, vec![]);
    // Exact "/" under a context path is the context path and the context path + "/".
    let a = run(vec![ctx("/shop", exact("/")), exact("/shop/"), exact("/shop")]);
    assert_eq!(
        a.findings,
        vec![shadowed(1, &[0], "/shop/"), shadowed(2, &[0], "/shop")]
    );
}

#[test]
fn param_segment_overlaps_a_literal_after_it() {
    let a = run(vec![regex("/users/[^/]+"), exact("/users/me")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/users/me")]);
    let a = run(vec![exact("/users/me"), regex("/users/[^/]+")]);
    assert_eq!(a.findings, vec![overlap(1, 0, "/users/me")]);
}

#[test]
fn witnesses_are_normalized_paths() {
    // `/a/.` and `/a//` are not paths a request has after normalization.
    let a = run(vec![regex("/a/.*"), regex("/a/\\.?/?")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/a/")]);
    // `/a/[./]*` matches only `/a/` among normalized paths.
    let a = run(vec![regex("/a/[./]*"), exact("/a/")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/a/")]);
    // Only dot segments: matches nothing.
    let a = run(vec![regex("/a/\\.\\.?")]);
    assert_eq!(
        a.findings,
        vec![Finding {
            rule: 0,
            kind: FindingKind::Unmatchable,
            witness: String::new()
        }]
    );
    // A regex without the leading slash matches nothing either.
    let a = run(vec![regex("api/.*")]);
    assert_eq!(a.findings[0].kind, FindingKind::Unmatchable);
}

#[test]
fn prefix_slash_is_every_path() {
    let a = run(vec![prefix("/"), regex("/(.*)"), exact("/")]);
    assert_eq!(a.findings, vec![shadowed(1, &[0], "/"), shadowed(2, &[0], "/")]);
}

#[test]
fn invalid_rules_are_skipped() {
    let a = run(vec![regex("/a/("), exact("no-slash"), exact("/a")]);
    assert_eq!(a.findings, vec![]);
    assert_eq!(a.skipped, 2);
}

#[test]
fn budgets_are_counted_not_guessed() {
    let spec = RouterSpec {
        rules: (0..10).map(|_| regex("/x/[a-z]+")).collect(),
        ..Default::default()
    };
    let limits = AnalysisLimits {
        max_pairs: 0,
        ..AnalysisLimits::default()
    };
    let a = analyze(&spec, &limits);
    // Rules 1 to 9 each had earlier rules left to compare.
    assert_eq!(a.findings, vec![]);
    assert_eq!(a.skipped, 9);
}

/// `n` rules of the shapes APIs have, 50 services, then a duplicate of rule 1 and a
/// catch-all.
fn generated(n: usize) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for i in 0..n {
        let svc = i % 50;
        rules.push(match i % 4 {
            0 => exact(&format!("/svc{svc}/items/{i}")),
            1 => regex(&format!("/svc{svc}/v{i}/([^/]+)/detail")),
            2 => regex(&format!("/svc{svc}/r{i}/(?<id>[0-9]+)/(.*)")),
            _ => prefix(&format!("/svc{svc}/p{i}")),
        });
    }
    rules.push(regex("/svc1/v1/([^/]+)/detail"));
    rules.push(regex("/(.*)"));
    rules
}

/// Prints the time with `--nocapture` (run with `--release` to measure).
#[test]
fn a_thousand_generated_rules() {
    let rules = generated(1000);
    let t = std::time::Instant::now();
    let a = run(rules);
    eprintln!("1,002 rules analysed in {:?}", t.elapsed());
    assert_eq!(a.skipped, 0);
    assert_eq!(a.findings[0], shadowed(1000, &[1], "/svc1/v1/0/detail"));
    // The catch-all overlaps every other live rule.
    assert_eq!(a.findings.len(), 1 + 1000);
}

#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
fn ten_thousand_rules_behind_one_literal_prefix() {
    // Every pair is a candidate: the pair budget is what bounds the time.
    let rules: Vec<RuleSpec> = (0..10_000)
        .map(|i| regex(&format!("/api/([^/]+)/r{i}")))
        .collect();
    let t = std::time::Instant::now();
    let a = run(rules);
    eprintln!(
        "10,000 rules behind /api/ analysed in {:?}: {} findings, {} skipped",
        t.elapsed(),
        a.findings.len(),
        a.skipped
    );
}

#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
fn ten_thousand_generated_rules() {
    let rules = generated(10_000);
    let t = std::time::Instant::now();
    let a = run(rules);
    eprintln!(
        "10,002 rules analysed in {:?}: {} findings, {} skipped",
        t.elapsed(),
        a.findings.len(),
        a.skipped
    );
}
