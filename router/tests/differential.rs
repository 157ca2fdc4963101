//! The compiled router against a naive reference (`src/reference.rs`): random rule
//! sets and requests, and the two must agree on the winner, on every capture and on
//! every refusal. The `router` fuzz target checks the same property on rule sets
//! drawn from its input; its corpus replays here.

use ringway_router::reference::*;
use ringway_router::*;
use std::path::Path;

#[test]
fn reference_helpers_behave() {
    assert_eq!(form_decode(b"a+b%20c%2x%41%"), b"a b c%2xA%");
    assert_eq!(ref_host("A.Com.:80"), "a.com");
    let req = Request {
        method: "GET",
        host: None,
        path: "/a/1".into(),
        query: None,
        headers: vec![],
        env: 0,
    };
    let spec = RouterSpec {
        rules: vec![RuleSpec {
            name: "x".into(),
            group: "g".into(),
            hosts: vec![],
            methods: vec![],
            context_path: Some("/a".into()),
            path: PathSpec::Regex("/([0-9])".into()),
            predicates: vec![],
            environments: None,
            action: ActionSpec::Local,
        }],
        ..Default::default()
    };
    let reference = Reference::new(&spec);
    assert_eq!(reference.answer(&req), Ok(Some((0, vec![Some(b"1".to_vec())]))));
    assert_eq!(reference.answer_normalized(&req, b"/a1"), None);
}

#[test]
fn agrees_with_reference_on_random_rule_sets() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = 0;
    let mut matched = 0;
    for round in 0..250 {
        let n = 1 + rng.below(if round % 5 == 0 { 60 } else { 15 });
        let spec = random_spec(&mut rng, n, 5, 0);
        let router =
            CompiledRouter::build(&spec).unwrap_or_else(|e| panic!("round {round}: {e}\n{:#?}", spec.rules));
        matched += check(&spec, &router, &mut rng, 40, round % 2 == 1).len();
        cases += 40;
    }
    // The generator must produce both outcomes in fair measure.
    assert!(
        matched > cases / 5 && matched < cases * 4 / 5,
        "{matched} of {cases} matched"
    );
}

/// Rule sets without prefix rules or context paths, whose index is a lone segment
/// trie that a lookup walks directly (when every regex is one of whole segments).
#[test]
fn agrees_with_reference_on_trie_only_rule_sets() {
    let mut rng = Rng(0x5151_7f4a_7c15_9e37);
    let (mut trie_only, mut cases, mut matched) = (0, 0, 0);
    for round in 0..250 {
        let n = 1 + rng.below(if round % 5 == 0 { 60 } else { 15 });
        let mut spec = random_spec(&mut rng, n, 3, 0);
        for r in &mut spec.rules {
            r.context_path = None;
            if let PathSpec::Prefix(p) = &r.path {
                r.path = PathSpec::Exact(p.clone());
            }
        }
        let router =
            CompiledRouter::build(&spec).unwrap_or_else(|e| panic!("round {round}: {e}\n{:#?}", spec.rules));
        trie_only += usize::from(router.stats().trie_only);
        matched += check(&spec, &router, &mut rng, 40, round % 2 == 1).len();
        cases += 40;
    }
    assert!(trie_only > 60, "{trie_only} of 250 rule sets were trie-only");
    assert!(matched > cases / 10, "{matched} of {cases} matched");
}

/// Rebuilds through one [`CompileCache`], each rule set the one before with a few
/// rules replaced (as a reload changes a config), route as the reference does: what
/// the cache hands back is what a fresh analysis would have found.
#[test]
fn cached_rebuilds_agree_with_reference() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut cache = CompileCache::default();
    let mut spec = random_spec(&mut rng, 40, 6, 0);
    let mut reused = 0;
    for round in 0..80 {
        let router = CompiledRouter::build_cached(&spec, &mut cache)
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{:#?}", spec.rules));
        cache.commit();
        reused += cache.stats().reused;
        check(&spec, &router, &mut rng, 40, round % 2 == 1);
        for k in 0..1 + rng.below(4) {
            let at = rng.below(spec.rules.len());
            let fresh = random_rule(&mut rng, at, 6, 0);
            spec.rules[at] = RuleSpec {
                name: format!("m{round}-{k}"),
                ..fresh
            };
        }
    }
    assert!(reused > 80 * 10, "{reused} analyses reused over 80 rebuilds");
    assert!(
        cache.stats().patterns <= spec.rules.len(),
        "{:?}: more patterns kept than the last rule set has",
        cache.stats()
    );
}

/// 2,000 rules, mostly regexes, with an automaton limit small enough that the large
/// partitions are built as lazy DFAs. Paths have at least two segments, so there is
/// no catch-all near the top and winners come from the whole list.
#[test]
fn agrees_with_reference_at_scale_with_lazy_partitions() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let spec = random_spec(&mut rng, 2000, 7, 2);
    // The limit bounds a partition's NFA too: take the first that builds.
    let router = [64 << 10, 256 << 10]
        .into_iter()
        .find_map(|limit| {
            let mut spec = spec.clone();
            spec.limits.max_automaton_bytes = limit;
            CompiledRouter::build(&spec).ok()
        })
        .expect("some small limit builds");
    let st = router.stats();
    assert!(
        st.lazy_partitions > 0 && st.lazy_partitions < st.automaton_partitions,
        "{st:?}"
    );
    let winners = check(&spec, &router, &mut rng, 1500, false);
    let distinct: std::collections::BTreeSet<_> = winners.iter().collect();
    assert!(
        winners.len() > 300 && distinct.len() > 50 && winners.iter().any(|&w| w > 1000),
        "{} matched, {} distinct winners",
        winners.len(),
        distinct.len()
    );
}

/// The `router` fuzz target's corpus (`fuzz/corpus/router/`), replayed on stable.
#[test]
fn fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/router");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            // A fuzzer running on the same directory replaces inputs as it goes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        let result = std::panic::catch_unwind(|| fuzz_differential(&data));
        assert!(
            result.is_ok(),
            "{} fails the differential property",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "{}: an empty corpus replays nothing", dir.display());
}
