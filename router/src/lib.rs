//! ringway's router: ordered routing rules in, a compiled router out.
//!
//! The router answers, for a borrowed view of one request, *which rule wins, with
//! which captures, and what the target URL is*. It does no IO, reads no clock and logs
//! nothing; the gateway builds one [`CompiledRouter`] per config version and every
//! shard holds its own clone.
//!
//! # Semantics in one paragraph
//!
//! Rules are tried in the order they are written and the first whose matchers all
//! hold wins. A rule matches when its environment is the request's, its host pattern
//! (exact or `*.suffix`) and method set accept the request, its path matcher (exact,
//! segment-aware prefix, or a regex matching the whole path) holds for the normalized
//! path with the group's context path stripped, and every query/header predicate holds.
//! The winner's target template (Gravitee syntax) is rendered with its captures.
//! `docs/routing.md` is the full reference.
//!
//! # Example
//!
//! ```
//! use ringway_router::*;
//!
//! let spec = RouterSpec {
//!     rules: vec![RuleSpec {
//!         name: "store".into(),
//!         group: "stores".into(),
//!         hosts: vec![],
//!         methods: vec!["GET".into()],
//!         context_path: Some("/store".into()),
//!         path: PathSpec::Regex("/v1/stores/(?<id>[0-9]+)/(.*)".into()),
//!         predicates: vec![],
//!         environments: None,
//!         action: ActionSpec::Proxy {
//!             to: "{#endpoints['store12']}/stores/{#groupName['id']}/{#group[1]}".into(),
//!         },
//!     }],
//!     endpoints: vec!["store12".into()],
//!     environments: vec!["online".into()],
//!     ..Default::default()
//! };
//! let router = CompiledRouter::build(&spec).unwrap();
//! let mut scratch = MatchScratch::default();
//! let req = RequestView {
//!     method: b"GET",
//!     host: Some(b"api.example.com"),
//!     path: b"/store/v1/stores/12/info",
//!     query: Some(b"lang=en"),
//!     env: EnvId(0),
//! };
//! let route = router.match_request(&req, NO_HEADERS, &mut scratch).unwrap().unwrap();
//! assert_eq!(router.route_name(route), ("stores", "store"));
//! let mut target = Vec::new();
//! let origin = router.render_target(route, &scratch, req.query, &mut target);
//! assert_eq!(origin, Some(&Origin::Endpoint(EndpointId(0))));
//! assert_eq!(target, b"/stores/12/info?lang=en");
//! ```
//!
//! # How it is built
//!
//! - [`paths`](crate::paths): the tiered path index (hash table for prefixes and
//!   context paths; a segment trie for exact paths and whole-segment regexes, with
//!   small shared DFAs for segment classes such as `v[0-9]+`; multi-pattern DFAs
//!   partitioned by first segment for other regexes) that finds every rule whose path
//!   matcher holds. The path is read once per request ([`scan`](crate::scan)).
//! - [`predicate`](crate::predicate): the perfect-hashed slot table for query and
//!   header predicates.
//! - [`template`](crate::template): target templates, parsed and checked at build time.
//! - [`normalize`](crate::normalize): path normalization (the security boundary).
//! - [`analysis`](crate::analysis): shadowed and overlapping rules.
//! - [`CompileCache`]: what a build learned of each path regex, kept for the next
//!   build (a reload re-analyses only the patterns it has not seen).
//!
//! Matching allocates nothing once a [`MatchScratch`] has grown to fit (a test with a
//! counting allocator pins this), and captures are extracted only for the winner.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod analysis;
mod cache;
mod compile;
mod error;
mod explain;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
pub mod normalize;
mod paths;
mod pattern;
mod predicate;
#[cfg(feature = "reference")]
#[doc(hidden)]
pub mod reference;
mod rule;
mod scan;
mod spec;
mod template;

pub use cache::{CacheStats, CompileCache};
pub use compile::MAX_ENVIRONMENTS;
pub use error::{BuildError, ErrorSite};
pub use explain::{Candidate, CaptureValue, Explanation, Failure};
pub use normalize::PathError;
pub use spec::*;
pub use template::Origin;

use predicate::{SlotTable, SlotValues};
use regex_automata::util::primitives::NonMaxUsize;
use rule::{Hot, Rule, ANY_METHOD};

/// A rule's position in [`RouterSpec::rules`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId(pub u32);

/// An environment's position in [`RouterSpec::environments`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnvId(pub u8);

/// An endpoint's position in [`RouterSpec::endpoints`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointId(pub u32);

impl RouteId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The parts of a request the router looks at, borrowed from the gateway's buffers.
/// Headers are passed to [`CompiledRouter::match_request`] separately.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a [u8],
    /// The Host header value or the absolute-form authority, port included or not.
    pub host: Option<&'a [u8]>,
    /// The raw path of the request-target (no query), starting with `/`.
    pub path: &'a [u8],
    /// The raw query string, without `?`.
    pub query: Option<&'a [u8]>,
    pub env: EnvId,
}

/// For requests without headers to offer (tests, explain without `-H`).
pub const NO_HEADERS: std::iter::Empty<(&[u8], &[u8])> = std::iter::empty();

/// Reusable per-request state: the normalized path, candidates, predicate slots and
/// captures. One per shard (or per thread); reusing it keeps matching allocation-free.
#[derive(Clone, Debug, Default)]
pub struct MatchScratch {
    /// The normalized path, then slack bytes: after a capture read for a rule whose
    /// context path is the whole request, the `/` that rule sees (not part of
    /// [`Self::path`]; the next path overwrites or ignores it).
    scan: scan::ScannedPath,
    host: Vec<u8>,
    host_done: bool,
    candidates: Vec<u32>,
    paths: paths::PathScratch,
    slots: SlotValues,
    re_slots: Vec<Option<NonMaxUsize>>,
    caps: Vec<(u32, u32)>,
}

impl MatchScratch {
    /// The normalized request path of the last match.
    pub fn path(&self) -> &[u8] {
        self.scan.path()
    }

    /// Capture group `i` (0-based) of the last winner, if it participated.
    pub fn group(&self, i: usize) -> Option<&[u8]> {
        // An unset group's span, `UNSET`, starts past the end of any path.
        let &(s, e) = self.caps.get(i)?;
        self.scan.span(s as usize, e as usize)
    }

    /// Number of capture groups of the last winner.
    pub fn group_count(&self) -> usize {
        self.caps.len()
    }
}

/// The compiled, immutable router. Clone it into every shard.
#[derive(Clone, Debug)]
pub struct CompiledRouter {
    /// What the match loop reads of each rule, by rule id.
    hot: Box<[Hot]>,
    rules: Box<[Rule]>,
    index: paths::PathIndex,
    slots: SlotTable,
    environments: Box<[String]>,
    endpoints: Box<[String]>,
    normalize: NormalizeOptions,
}

/// Statistics about a compiled router, for logs and the admin port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterStats {
    pub rules: usize,
    pub automaton_partitions: usize,
    pub lazy_partitions: usize,
    pub heap_bytes: usize,
    /// The path index is one segment trie, which a lookup walks directly: no prefix
    /// rules, no regex under a context path, and every regex one the trie takes
    /// (whole segments, classes with small DFAs).
    pub trie_only: bool,
}

impl CompiledRouter {
    /// Compiles `spec`. Fails with a [`BuildError`] naming the rule and the part of it
    /// that is wrong.
    pub fn build(spec: &RouterSpec) -> Result<CompiledRouter, BuildError> {
        compile::build(spec, &mut CompileCache::default())
    }

    /// As [`CompiledRouter::build`], reusing what `cache` learned of the path regexes
    /// of earlier builds and keeping what this one learns: a rebuild after a small
    /// change analyzes only the regexes it has not seen. The router built is the
    /// same either way.
    pub fn build_cached(spec: &RouterSpec, cache: &mut CompileCache) -> Result<CompiledRouter, BuildError> {
        compile::build(spec, cache)
    }

    /// The rule that wins for `req`, or `None` when no rule matches. A path that
    /// cannot be normalized (bad percent-encoding, `%2F` when rejected) is an error:
    /// the gateway answers 400.
    ///
    /// `headers` is iterated at most once, and only if a candidate rule has predicates.
    pub fn match_request<'h, H>(
        &self,
        req: &RequestView<'_>,
        headers: H,
        s: &mut MatchScratch,
    ) -> Result<Option<RouteId>, PathError>
    where
        H: IntoIterator<Item = (&'h [u8], &'h [u8])>,
    {
        self.prepare(req, s)?;
        let mut headers = Some(headers);
        let env = 1u64 << (req.env.0 & 63);
        let mut method = None;
        let mut prev = u32::MAX;
        for i in 0..s.candidates.len() {
            let c = s.candidates[i];
            if c == prev {
                continue;
            }
            prev = c;
            let h = self.hot[c as usize];
            let holds = if h.slow {
                self.first_failure(&self.rules[c as usize], req, &mut headers, s, false)
                    .is_none()
            } else {
                h.env_mask & env != 0
                    && (h.methods == ANY_METHOD
                        || h.methods & *method.get_or_insert_with(|| rule::method_bit(req.method)) != 0)
            };
            if holds && self.capture(&self.rules[c as usize], s) {
                return Ok(Some(RouteId(c)));
            }
        }
        Ok(None)
    }

    /// Normalizes the path and collects the sorted path candidates.
    fn prepare(&self, req: &RequestView<'_>, s: &mut MatchScratch) -> Result<(), PathError> {
        s.scan.read(req.path, &self.normalize)?;
        s.host_done = false;
        s.slots.reset();
        s.candidates.clear();
        self.index
            .candidates(s.scan.hay(), &mut s.paths, &mut s.candidates);
        if s.candidates.len() > 1 {
            s.candidates.sort_unstable();
        }
        Ok(())
    }

    /// The first matcher of `rule` (after its path) that fails, or `None`. A failed
    /// predicate is described only when `describe` is set (explain): describing
    /// allocates, and matching must not.
    #[inline(never)]
    fn first_failure<'h, H>(
        &self,
        rule: &Rule,
        req: &RequestView<'_>,
        headers: &mut Option<H>,
        s: &mut MatchScratch,
        describe: bool,
    ) -> Option<Failure>
    where
        H: IntoIterator<Item = (&'h [u8], &'h [u8])>,
    {
        if rule.env_mask & (1u64 << (req.env.0 & 63)) == 0 {
            return Some(Failure::Environment);
        }
        if !rule.methods.any && !rule.methods.contains(rule::method_bit(req.method), req.method) {
            return Some(Failure::Method);
        }
        if !rule.hosts.is_empty() {
            if !s.host_done {
                rule::normalize_host(req.host.unwrap_or_default(), &mut s.host);
                s.host_done = true;
            }
            if !rule.hosts.iter().any(|h| h.matches(&s.host)) {
                return Some(Failure::Host);
            }
        }
        if !rule.predicates.is_empty() && !s.slots.is_filled() {
            s.slots
                .fill(&self.slots, req.query, headers.take().into_iter().flatten());
        }
        rule.predicates
            .iter()
            .position(|p| !p.holds(&s.slots))
            .map(|i| Failure::Predicate {
                index: i,
                what: if describe {
                    rule.predicates[i].describe(&self.slots)
                } else {
                    String::new()
                },
            })
    }

    /// Reads the winner's captures into the scratch: whole-segment groups from the
    /// slash list, others (out of line) from the path.
    #[inline(always)]
    fn capture(&self, rule: &Rule, s: &mut MatchScratch) -> bool {
        let MatchScratch {
            scan, caps, re_slots, ..
        } = s;
        if let Some(ok) = rule.segment_captures(scan.hay(), caps) {
            return ok;
        }
        // The request is the context path itself: the rule sees "/", which is kept
        // past the path so that captures can point into it.
        let base = rule.ctx_len;
        let extra = usize::from(base == scan.len() && base > 0);
        if extra == 1 {
            scan.put_trailing_slash();
        }
        let path = scan.span(0, scan.len() + extra).unwrap_or_default();
        rule.other_captures(path, base, caps, re_slots)
    }

    /// Renders the target of `route` (the last winner in `s`) into `out`: path and
    /// query, with the request's query merged after the template's. Returns where it
    /// goes, or `None` for a local (mock) rule, which writes nothing.
    pub fn render_target(
        &self,
        route: RouteId,
        s: &MatchScratch,
        query: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Option<&Origin> {
        let rule = &self.rules[route.index()];
        let t = rule.target.as_ref()?;
        let rest = s.path().get(rule.rest_from..).unwrap_or_default();
        t.render(|i| s.group(i as usize), rest, query, out);
        Some(&t.origin)
    }

    /// `(group, name)` of a rule.
    pub fn route_name(&self, route: RouteId) -> (&str, &str) {
        let r = &self.rules[route.index()];
        (&r.group, &r.name)
    }

    /// Named groups of a rule: (name, 0-based index).
    pub fn group_names(&self, route: RouteId) -> impl Iterator<Item = (&str, usize)> {
        self.rules[route.index()]
            .names
            .iter()
            .map(|(n, i)| (&**n, *i as usize))
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The id of environment `name`.
    pub fn env_id(&self, name: &str) -> Option<EnvId> {
        self.environments
            .iter()
            .position(|e| e == name)
            .map(|i| EnvId(i as u8))
    }

    /// Endpoint names, indexed by [`EndpointId`].
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Sizes, for logs and the admin port.
    pub fn stats(&self) -> RouterStats {
        let (automaton_partitions, lazy_partitions) = self.index.partition_counts();
        RouterStats {
            rules: self.rules.len(),
            automaton_partitions,
            lazy_partitions,
            heap_bytes: self.index.heap_bytes(),
            trie_only: self.index.is_trie_only(),
        }
    }
}
