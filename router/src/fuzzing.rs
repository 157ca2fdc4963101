//! The property the `render` fuzz target checks (and `tests/fuzz_corpus.rs` in the
//! gateway replays): for an arbitrary request against a fixed router whose rules
//! use every template form — indexed and named groups, segment captures, a trailing
//! rest, a template query, a literal origin — matching and rendering never panic,
//! a rendered target starts with `/`, ends with the request's query (merged after
//! the template's own), and renders the same twice.

use crate::{ActionSpec, CompiledRouter, EnvId, MatchScratch, PathSpec, RequestView, RouterSpec, RuleSpec};
use std::sync::OnceLock;

fn rule(name: &str, path: PathSpec, to: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        group: "g".into(),
        hosts: vec![],
        methods: vec![],
        context_path: None,
        path,
        predicates: vec![],
        environments: None,
        action: ActionSpec::Proxy { to: to.into() },
    }
}

fn router() -> &'static CompiledRouter {
    static ROUTER: OnceLock<CompiledRouter> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let spec = RouterSpec {
            rules: vec![
                rule(
                    "named",
                    PathSpec::Regex("/v1/stores/(?<id>[0-9]+)/(.*)".into()),
                    "{#endpoints['e']}/stores/{#groupName['id']}/{#group[1]}?src=fuzz",
                ),
                rule(
                    "segments",
                    PathSpec::Regex("/u/([^/]+)/p/([^/]+)".into()),
                    "http://h:80/{#group[1]}/{#group[0]}",
                ),
                rule(
                    "class",
                    PathSpec::Regex("/v[0-9]+/(.*)".into()),
                    "{#endpoints['e']}/all/{#group[0]}",
                ),
                rule(
                    "prefix",
                    PathSpec::Prefix("/p".into()),
                    "{#endpoints['e']}/fixed?a=1&b=2",
                ),
                rule("exact", PathSpec::Exact("/exact".into()), "{#endpoints['e']}/x"),
                rule(
                    "rest",
                    PathSpec::Regex("/(.*)".into()),
                    "{#endpoints['e']}/{#group[0]}",
                ),
            ],
            endpoints: vec!["e".into()],
            environments: vec!["online".into()],
            ..Default::default()
        };
        CompiledRouter::build(&spec).unwrap_or_else(|e| panic!("the fuzz router builds: {e}"))
    })
}

/// See the module docs. `data`: the path, then optionally `?` and the query.
#[doc(hidden)]
pub fn render(data: &[u8]) {
    let router = router();
    let (path, query) = match data.iter().position(|&b| b == b'?') {
        Some(q) => (&data[..q], Some(&data[q + 1..])),
        None => (data, None),
    };
    let req = RequestView {
        method: b"GET",
        host: None,
        path,
        query,
        env: EnvId(0),
    };
    let mut scratch = MatchScratch::default();
    let Ok(Some(route)) = router.match_request(&req, crate::NO_HEADERS, &mut scratch) else {
        return;
    };
    let mut out = Vec::new();
    let origin = router.render_target(route, &scratch, query, &mut out);
    assert!(origin.is_some(), "every fuzz rule proxies");
    assert_eq!(out.first(), Some(&b'/'), "{:?}", String::from_utf8_lossy(&out));
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        assert!(
            out.ends_with(q),
            "the request's query ends the target: {:?}",
            String::from_utf8_lossy(&out)
        );
        let before = out.len() - q.len() - 1;
        assert!(
            matches!(out.get(before), Some(b'?' | b'&')),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
    let mut again = Vec::new();
    router.render_target(route, &scratch, query, &mut again);
    assert_eq!(again, out, "rendering is deterministic");
}
