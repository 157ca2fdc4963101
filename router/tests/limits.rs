//! Size limits: a partition too big for a dense DFA goes lazy instead of failing, and
//! only a rule too big on its own is an error, naming it.

use ringway_router::*;

fn rule(i: usize, path: String) -> RuleSpec {
    RuleSpec {
        name: format!("r{i}"),
        group: "g".into(),
        hosts: vec![],
        methods: vec![],
        context_path: None,
        path: PathSpec::Regex(path),
        predicates: vec![],
        environments: None,
        action: ActionSpec::Local,
    }
}

fn view(path: &str) -> RequestView<'_> {
    RequestView {
        method: b"GET",
        host: None,
        path: path.as_bytes(),
        query: None,
        env: EnvId(0),
    }
}

/// Before: `max_automaton_bytes` also bounded the partition's NFA, so 400 rules under
/// one first segment failed to build, with no rule named. (`(/.*)` keeps the rules out
/// of the segment trie.)
#[test]
fn a_partition_whose_nfa_exceeds_the_automaton_limit_goes_lazy() {
    let spec = RouterSpec {
        rules: (0..400)
            .map(|i| rule(i, format!("/api/v[0-9]+/res{i}/([0-9]+)(/.*)")))
            .collect(),
        limits: BuildLimits {
            max_automaton_bytes: 64 << 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let router = CompiledRouter::build(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(router.stats().lazy_partitions, 1);
    let mut s = MatchScratch::default();
    for i in [0, 17, 399] {
        let path = format!("/api/v2/res{i}/42/a/b");
        let got = router.match_request(&view(&path), NO_HEADERS, &mut s).unwrap();
        assert_eq!(got, Some(RouteId(i as u32)), "{path}");
        assert_eq!(s.group(0), Some(&b"42"[..]));
        assert_eq!(s.group(1), Some(&b"/a/b"[..]));
    }
}

/// A segment regex whose DFA exceeds the automaton limit is matched by the automaton
/// tier (here lazily) instead of the segment trie, with the same captures.
#[test]
fn a_class_segment_without_a_small_dfa_goes_to_the_automaton_tier() {
    let spec = RouterSpec {
        rules: vec![
            rule(0, "/x/(?:a|b)*a(?:a|b){12}/([0-9]+)".into()),
            rule(1, "/x/([a-z]+)/([0-9]+)".into()),
        ],
        limits: BuildLimits {
            max_automaton_bytes: 64 << 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let router = CompiledRouter::build(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(router.stats().automaton_partitions, 1, "{:?}", router.stats());
    let mut s = MatchScratch::default();
    let path = format!("/x/a{}/42", "b".repeat(12));
    let got = router.match_request(&view(&path), NO_HEADERS, &mut s).unwrap();
    assert_eq!(got, Some(RouteId(0)));
    assert_eq!(s.group(0), Some(&b"42"[..]));
    let path = format!("/x/{}/42", "b".repeat(13));
    let got = router.match_request(&view(&path), NO_HEADERS, &mut s).unwrap();
    assert_eq!(got, Some(RouteId(1)));
}

#[test]
fn a_rule_too_big_on_its_own_is_a_size_error_naming_it() {
    let spec = RouterSpec {
        rules: vec![
            rule(0, "/api/a/([0-9]+)".into()),
            rule(1, "/api/b/[a-z]{1000}[0-9]{1000}".into()),
        ],
        limits: BuildLimits {
            max_regex_bytes: 16 << 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = CompiledRouter::build(&spec).unwrap_err();
    assert!(e.is_size_limit_exceeded(), "{e}");
    assert_eq!(e.rule_index(), Some(1), "{e}");
}

/// Before: a request equal to a context path pushed the `/` its rule sees onto the
/// scratch path, so `MatchScratch::path` reported `/store/`.
#[test]
fn captures_of_a_request_equal_to_its_context_path_leave_the_path_alone() {
    let spec = RouterSpec {
        rules: vec![RuleSpec {
            context_path: Some("/store".into()),
            ..rule(0, "(/.*)".into())
        }],
        ..Default::default()
    };
    let router = CompiledRouter::build(&spec).unwrap();
    let mut s = MatchScratch::default();
    let got = router.match_request(&view("/store"), NO_HEADERS, &mut s).unwrap();
    assert_eq!(got, Some(RouteId(0)));
    assert_eq!(s.path(), b"/store");
    assert_eq!(s.group(0), Some(&b"/"[..]));
    // And the next request starts clean.
    router
        .match_request(&view("/store/x"), NO_HEADERS, &mut s)
        .unwrap();
    assert_eq!(s.path(), b"/store/x");
    assert_eq!(s.group(0), Some(&b"/x"[..]));
}
