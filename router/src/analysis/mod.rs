//! Shadowed and overlapping rules, found with automata.
//!
//! [`analyze`] reads a [`RouterSpec`] (no compiled router needed, so `ringway check`
//! can run it on its own) and reports, in rule order:
//!
//! - [`FindingKind::Unmatchable`]: no normalized request path can match the rule's path
//!   matcher (a regex without a leading `/`, one that only matches dot-segments, …).
//! - [`FindingKind::Shadowed`]: the rule can never win, because earlier rules that are at
//!   least as broad on everything but the path (no predicates; hosts, methods and
//!   environments any or a superset) together match every path it matches. The witness
//!   is a shortest path the rule matches (which one of the earlier rules takes).
//! - [`FindingKind::Overlap`]: an earlier rule that could apply to the same request
//!   (compatible hosts, methods and environments; predicates are not compared), with a
//!   shortest path both match. Shadowed rules take part in no overlap.
//!
//! # Path languages
//!
//! Each rule's *path language* is the set of full normalized paths its path matcher
//! accepts, context path included. With context path `C` (`""` when none):
//!
//! | path | language |
//! |---|---|
//! | exact `E` | `C E`, and `C` alone when `E` is `/` and `C` is not empty |
//! | prefix `P` | `C P` and `C P /…` (segment-aware); prefix `/` is `C`, `C/…` |
//! | regex `R` | `C s` for every `s` in `L(R)` that starts with `/`, and `C` alone when `/ ∈ L(R)` |
//!
//! Every language is intersected with the language of *normalized paths* (starts with
//! `/`; no `.` or `..` segment; no empty segment when slashes are merged; escapes are
//! `%` and two upper-case hex digits, never an unreserved character, and `%2F` only
//! under [`EncodedSlash::Keep`]; no raw `?` or `#`), so witnesses are paths a request can
//! really have after [`crate::normalize`].
//!
//! # How
//!
//! A rule's language is a small machine: the context path's bytes, then the body — a
//! literal or segment-aware prefix walked byte by byte, or an anchored dense DFA
//! (`MatchKind::All`, the router's byte syntax) for regexes that are not plain literals.
//! Inclusion and intersection are breadth-first walks over tuples of machine states
//! (the product automaton), one transition per byte class of the combined alphabet:
//!
//! - overlap of `A` and `B`: a path accepted by `A`, `B` and the normalized-path machine;
//! - `B` shadowed by `A₁…Aₖ`: no path accepted by `B` and the normalized-path machine but
//!   by none of the `Aᵢ`.
//!
//! Breadth-first order makes witnesses shortest; among shortest ones, bytes are tried
//! in the order ASCII letters and digits, other visible ASCII, everything else (so
//! witnesses are readable). A byte outside visible ASCII is written `\xNN`.
//!
//! Pairs are only examined when their *literal prefixes* (the bytes every path of the
//! language starts with) are prefixes of one another; other pairs cannot overlap. Every
//! cost is bounded by [`AnalysisLimits`]; what is left out is counted in
//! [`Analysis::skipped`], never reported as a finding.
//!
//! # Example
//!
//! ```
//! use ringway_router::analysis::{analyze, AnalysisLimits, FindingKind};
//! use ringway_router::*;
//!
//! let rule = |name: &str, path: PathSpec| RuleSpec {
//!     name: name.into(),
//!     group: "g".into(),
//!     hosts: vec![],
//!     methods: vec![],
//!     context_path: None,
//!     path,
//!     predicates: vec![],
//!     environments: None,
//!     action: ActionSpec::Local,
//! };
//! let spec = RouterSpec {
//!     rules: vec![
//!         rule("api", PathSpec::Prefix("/api".into())),
//!         rule("users", PathSpec::Exact("/api/users".into())),
//!     ],
//!     ..Default::default()
//! };
//! let analysis = analyze(&spec, &AnalysisLimits::default());
//! let f = &analysis.findings[0];
//! assert_eq!(f.rule, 1);
//! assert_eq!(f.kind, FindingKind::Shadowed { by: vec![0] });
//! assert_eq!(f.witness, "/api/users");
//! ```

mod machine;
#[cfg(test)]
mod tests;
mod walk;

use crate::rule::HostPattern;
use crate::spec::{PathSpec, RouterSpec, RuleSpec};
use machine::{universe_pattern, Machine};
use walk::{printable, search, FastMap, Walk};

/// The analysis budget. Work beyond it is skipped and counted, never guessed at. With
/// the defaults, 10,000 rules take about a second on a 2-core machine even when every
/// pair is a candidate (the pair budget is then what bounds the time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalysisLimits {
    /// Rule pairs examined with a product automaton (each overlap test counts one).
    pub max_pairs: usize,
    /// Heap size limit of one rule's regex DFA (and of its determinization).
    pub max_dfa_bytes: usize,
    /// Product states one walk may visit before it gives up.
    pub max_product_states: usize,
    /// Earlier rules combined in one shadowing test; beyond it the test is skipped.
    pub max_cover_rules: usize,
}

impl Default for AnalysisLimits {
    fn default() -> Self {
        AnalysisLimits {
            max_pairs: 100_000,
            max_dfa_bytes: 1 << 20,
            max_product_states: 20_000,
            max_cover_rules: 1024,
        }
    }
}

/// What is wrong with a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// No normalized path matches the rule's path matcher. The witness is empty.
    Unmatchable,
    /// Earlier rules (indices, ascending) that take every request this rule could get.
    /// One rule when one suffices; else, up to 16 candidates, a set none of which can
    /// be dropped; else every earlier broader rule that overlaps it.
    Shadowed { by: Vec<usize> },
    /// An earlier rule that can match the same request (it wins when its predicates hold).
    Overlap { with: usize },
}

/// One finding about the rule at index `rule` of [`RouterSpec::rules`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: usize,
    pub kind: FindingKind,
    /// A shortest normalized path showing it: for `Shadowed`, a path the rule matches
    /// (and the earlier rules take); for `Overlap`, a path both rules match.
    pub witness: String,
}

/// The result of [`analyze`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Findings in rule order; for one rule, `Unmatchable` or `Shadowed` comes alone,
    /// overlaps are sorted by the earlier rule.
    pub findings: Vec<Finding>,
    /// Rules not fully analysed (each counted once): invalid rules (which the build
    /// rejects anyway), regexes whose DFA is over [`AnalysisLimits::max_dfa_bytes`], and
    /// rules with earlier rules left uncompared, or a walk or shadowing test left
    /// unfinished, because of a limit. A skipped rule may still have findings.
    pub skipped: usize,
}

/// Finds unmatchable, shadowed and overlapping rules of `spec`. See the module docs.
pub fn analyze(spec: &RouterSpec, limits: &AnalysisLimits) -> Analysis {
    let mut out = Analysis::default();
    let universe = match Machine::regex(b"", &universe_pattern(&spec.normalize), limits) {
        Some(Ok(m)) => m,
        // The pattern is ours and small; this cannot happen, but analysis is optional.
        _ => {
            out.skipped = spec.rules.len();
            return out;
        }
    };
    let rules: Vec<Option<RuleInfo>> = spec.rules.iter().map(|r| RuleInfo::new(r, limits)).collect();
    let machine = |a: usize| &rules[a].as_ref().expect("a valid rule").machine;
    // Most pairs are disjoint, and proving it without the normalized-path machine visits
    // several times fewer states (it tracks dots and escapes inside segments); only a
    // path found that way needs the walk with it.
    let walk = |pos: &[&Machine], neg: &[&Machine]| {
        if pos.len() > 1 || !neg.is_empty() {
            if let Walk::Empty = search(pos, neg, limits.max_product_states) {
                return Walk::Empty;
            }
        }
        // The universe last: a byte a rule's machine kills is rejected after one step.
        let mut all = Vec::with_capacity(pos.len() + 1);
        all.extend_from_slice(pos);
        all.push(&universe);
        search(&all, neg, limits.max_product_states)
    };

    // Literal prefixes, to find the earlier rules that can overlap a rule.
    let mut by_lcp: Vec<(&[u8], usize)> = Vec::new();
    let mut exact_lcp: FastMap<&[u8], Vec<usize>> = FastMap::default();
    for (i, r) in rules.iter().enumerate() {
        if let Some(r) = r {
            by_lcp.push((&r.machine.lcp, i));
            exact_lcp.entry(&r.machine.lcp).or_default().push(i);
        }
    }
    by_lcp.sort_unstable();

    // Rules that can win somewhere: the only ones that shadow or overlap later rules.
    let mut live = vec![false; rules.len()];
    let mut pairs = 0usize;
    let mut earlier = Vec::new();
    for (b, rb) in rules.iter().enumerate() {
        let Some(rb) = rb else {
            out.skipped += 1;
            continue;
        };
        let witness = match walk(&[&rb.machine], &[]) {
            Walk::Found(w) => w,
            Walk::Empty => {
                out.findings.push(Finding {
                    rule: b,
                    kind: FindingKind::Unmatchable,
                    witness: String::new(),
                });
                continue;
            }
            Walk::OverBudget => {
                out.skipped += 1;
                live[b] = true;
                continue;
            }
        };
        live[b] = true;
        // Earlier rules whose literal prefix is comparable with ours: ancestors, then
        // the sorted range of descendants.
        let lcp = &rb.machine.lcp[..];
        let ancestors = (0..lcp.len()).filter_map(|k| exact_lcp.get(&lcp[..k]));
        let from = by_lcp.partition_point(|(l, _)| *l < lcp);
        let descendants = by_lcp[from..]
            .iter()
            .take_while(|(l, _)| l.starts_with(lcp))
            .map(|&(_, a)| a);
        if pairs == limits.max_pairs {
            // Out of budget: only say whether this rule had anything left to compare.
            let mut any = ancestors.clone().any(|v| v[0] < b);
            any = any || descendants.clone().any(|a| a < b);
            out.skipped += usize::from(any);
            continue;
        }
        earlier.clear();
        for v in ancestors {
            earlier.extend(v.iter().copied().take_while(|&a| a < b));
        }
        earlier.extend(descendants.filter(|&a| a < b));
        earlier.retain(|&a| live[a] && rules[a].as_ref().is_some_and(|ra| ra.meets(rb)));
        earlier.sort_unstable();

        let mut cut = false;
        let mut overlaps = Vec::new();
        let mut covers = Vec::new();
        for &a in &earlier {
            if pairs == limits.max_pairs {
                cut = true;
                break;
            }
            pairs += 1;
            let ra = rules[a].as_ref().expect("filtered above");
            match walk(&[&ra.machine, &rb.machine], &[]) {
                Walk::Found(w) => {
                    if ra.covers(rb) {
                        covers.push(a);
                    }
                    overlaps.push((a, w));
                }
                Walk::Empty => {}
                Walk::OverBudget => cut = true,
            }
        }
        // A cover takes our shortest path at least: when none does, no union test.
        let shadowed = if !covers.iter().any(|&a| machine(a).matches(&witness)) {
            None
        } else if covers.len() > limits.max_cover_rules {
            cut = true;
            None
        } else {
            let covered = |set: &[usize]| {
                let neg: Vec<&Machine> = set.iter().map(|&a| machine(a)).collect();
                walk(&[&rb.machine], &neg)
            };
            match covered(&covers) {
                Walk::Empty => Some(minimal_cover(covers, &witness, machine, |set| {
                    matches!(covered(set), Walk::Empty)
                })),
                Walk::Found(_) => None,
                Walk::OverBudget => {
                    cut = true;
                    None
                }
            }
        };
        out.skipped += usize::from(cut);
        match shadowed {
            Some(by) => {
                live[b] = false;
                out.findings.push(Finding {
                    rule: b,
                    kind: FindingKind::Shadowed { by },
                    witness: printable(&witness),
                });
            }
            None => out.findings.extend(overlaps.into_iter().map(|(a, w)| Finding {
                rule: b,
                kind: FindingKind::Overlap { with: a },
                witness: printable(&w),
            })),
        }
    }
    out
}

/// Covering sets up to this size are reduced rule by rule; larger ones only to one rule
/// when one suffices.
const MAX_REDUCED_COVER: usize = 16;

/// A small covering subset of `set` (which covers): the first rule that covers alone
/// (only rules taking `witness` can), else, for small sets, the set with rules dropped
/// latest first while it still covers (so the earliest shadowing rules are named).
fn minimal_cover<'m>(
    set: Vec<usize>,
    witness: &[u8],
    machine: impl Fn(usize) -> &'m Machine,
    still_covers: impl Fn(&[usize]) -> bool,
) -> Vec<usize> {
    if set.len() == 1 {
        return set;
    }
    let alone = set
        .iter()
        .find(|&&a| machine(a).matches(witness) && still_covers(&[a]));
    if let Some(&a) = alone {
        return vec![a];
    }
    if set.len() > MAX_REDUCED_COVER {
        return set;
    }
    let mut set = set;
    for i in (0..set.len()).rev() {
        let mut without = set.clone();
        without.remove(i);
        if still_covers(&without) {
            set = without;
        }
    }
    set
}

/// The parts of one rule the analysis looks at.
#[derive(Debug)]
struct RuleInfo<'s> {
    spec: &'s RuleSpec,
    machine: Machine,
    /// `None`: any host.
    hosts: Option<Vec<HostPattern>>,
}

impl<'s> RuleInfo<'s> {
    /// `None` for a rule the build would reject, or whose DFA is over the limit.
    fn new(r: &'s RuleSpec, limits: &AnalysisLimits) -> Option<RuleInfo<'s>> {
        let ctx = match r.context_path.as_deref().map(|c| c.trim_end_matches('/')) {
            None | Some("") => "",
            Some(c) if c.starts_with('/') => c,
            Some(_) => return None,
        };
        let ctx = ctx.as_bytes();
        let machine = match &r.path {
            PathSpec::Exact(p) if p.starts_with('/') => Machine::literal(ctx, p.as_bytes()),
            PathSpec::Prefix(p) if p.starts_with('/') => {
                Machine::prefix(ctx, p.trim_end_matches('/').as_bytes())
            }
            PathSpec::Regex(p) => Machine::regex(ctx, p, limits)?.ok()?,
            PathSpec::Exact(_) | PathSpec::Prefix(_) => return None,
        };
        let hosts = if r.hosts.is_empty() {
            None
        } else {
            Some(
                r.hosts
                    .iter()
                    .map(|h| HostPattern::parse(h))
                    .collect::<Option<Vec<_>>>()?,
            )
        };
        Some(RuleInfo {
            spec: r,
            machine,
            hosts,
        })
    }

    /// Could `self` and `o` both apply to one request (paths aside)? Predicates are
    /// not compared.
    fn meets(&self, o: &RuleInfo) -> bool {
        let hosts = match (&self.hosts, &o.hosts) {
            (Some(a), Some(b)) => a.iter().any(|x| b.iter().any(|y| hosts_meet(x, y))),
            _ => true,
        };
        hosts
            && list_meets(&self.spec.methods, &o.spec.methods)
            && match (&self.spec.environments, &o.spec.environments) {
                (Some(a), Some(b)) => a.iter().any(|x| b.contains(x)),
                _ => true,
            }
    }

    /// Does `self` apply to every request `o` applies to (paths aside)?
    fn covers(&self, o: &RuleInfo) -> bool {
        let hosts = match (&self.hosts, &o.hosts) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => b.iter().all(|y| a.iter().any(|x| host_covers(x, y))),
        };
        self.spec.predicates.is_empty()
            && hosts
            && (self.spec.methods.is_empty()
                || (!o.spec.methods.is_empty()
                    && o.spec.methods.iter().all(|m| self.spec.methods.contains(m))))
            && match (&self.spec.environments, &o.spec.environments) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => b.iter().all(|e| a.contains(e)),
            }
    }
}

/// Empty lists mean "any".
fn list_meets(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

/// Is there a host both match?
fn hosts_meet(a: &HostPattern, b: &HostPattern) -> bool {
    use HostPattern::*;
    match (a, b) {
        (Exact(x), Exact(y)) => x == y,
        (Exact(x), Suffix(s)) | (Suffix(s), Exact(x)) => x.len() > s.len() && x.ends_with(s),
        (Suffix(s), Suffix(t)) => s.ends_with(t) || t.ends_with(s),
    }
}

/// Does `a` match every host `b` matches?
fn host_covers(a: &HostPattern, b: &HostPattern) -> bool {
    use HostPattern::*;
    match (a, b) {
        (Exact(x), Exact(y)) => x == y,
        (Suffix(s), Exact(y)) => y.len() > s.len() && y.ends_with(s),
        (Suffix(s), Suffix(t)) => t.ends_with(s),
        (Exact(_), Suffix(_)) => false,
    }
}
