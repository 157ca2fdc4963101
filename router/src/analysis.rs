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

use crate::rule::HostPattern;
use crate::spec::{EncodedSlash, NormalizeOptions, PathSpec, RouterSpec, RuleSpec};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::HirKind;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

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

/// The regex of normalized paths (see the module docs), built once per analysis.
fn universe_pattern(opts: &NormalizeOptions) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut escapes = Vec::new();
    for hi in 0..16u8 {
        let lows: String = (0..16u8)
            .filter(|&lo| {
                let v = hi << 4 | lo;
                let unreserved = v.is_ascii_alphanumeric() || b"-._~".contains(&v);
                !unreserved && (v != b'/' || opts.encoded_slash == EncodedSlash::Keep)
            })
            .map(|lo| HEX[lo as usize] as char)
            .collect();
        if !lows.is_empty() {
            escapes.push(format!("{}[{lows}]", HEX[hi as usize] as char));
        }
    }
    let esc = format!("%(?:{})", escapes.join("|"));
    let any = format!("(?:[^/%?#]|{esc})");
    let not_dot = format!("(?:[^/%?#.]|{esc})");
    // A segment other than `.` and `..`.
    let seg = format!(r"(?:(?:{not_dot}|\.{not_dot}|\.\.{any}){any}*)");
    if opts.merge_slashes {
        format!("/(?:{seg}(?:/{seg})*/?)?")
    } else {
        // Two segments side by side are one segment, so this allows empty segments.
        format!("/(?:{seg}|/)*")
    }
}

/// A rule's path language: its context path, then (after a `/`) its body.
#[derive(Debug)]
struct Machine {
    ctx: Box<[u8]>,
    body: Body,
    /// Does the language hold the context path alone (it is not empty and the body
    /// accepts `/`)?
    bare: bool,
    /// Bytes every path of the language starts with.
    lcp: Vec<u8>,
    /// Bit `b` set: a byte class starts at byte `b`.
    classes: [u64; 4],
}

#[derive(Debug)]
enum Body {
    /// Exactly these bytes.
    Literal(Box<[u8]>),
    /// These bytes, alone or followed by `/` and anything (segment-aware prefix).
    Prefix(Box<[u8]>),
    /// A regex, anchored at both ends.
    Dfa {
        dfa: Box<dense::DFA<Vec<u32>>>,
        start: StateID,
    },
}

/// A state of one machine in a product walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum St {
    /// Accepts nothing from here.
    Dead,
    /// This many context bytes read (all of them: the body comes next, after a `/`).
    Ctx(u32),
    /// This many literal or prefix bytes of the body read.
    Lit(u32),
    /// Past a prefix and its `/`: accepts everything.
    Rest,
    Dfa(StateID),
}

fn mark(classes: &mut [u64; 4], bytes: &[u8]) {
    for &b in bytes.iter().chain(b"/") {
        for v in [b as usize, b as usize + 1] {
            if v < 256 {
                classes[v / 64] |= 1 << (v % 64);
            }
        }
    }
}

impl Machine {
    fn literal(ctx: &[u8], lit: &[u8]) -> Machine {
        Machine::new(ctx, Body::Literal(lit.into()), lit.to_vec())
    }

    /// `p` without its trailing `/` (empty for the prefix `/`).
    fn prefix(ctx: &[u8], p: &[u8]) -> Machine {
        Machine::new(ctx, Body::Prefix(p.into()), p.to_vec())
    }

    /// `None` when the pattern is invalid; `Some(Err)` when its DFA is over the limit.
    fn regex(ctx: &[u8], pattern: &str, limits: &AnalysisLimits) -> Option<Result<Machine, ()>> {
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(pattern)
            .ok()?;
        if let HirKind::Literal(l) = hir.kind() {
            return Some(Ok(Machine::literal(ctx, &l.0)));
        }
        let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let lcp = seq.longest_common_prefix().unwrap_or_default().to_vec();
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .which_captures(WhichCaptures::None)
                    .nfa_size_limit(Some(limits.max_dfa_bytes)),
            )
            .build_from_hir(&hir);
        let Ok(nfa) = nfa else {
            return Some(Err(()));
        };
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .byte_classes(true)
                    .minimize(false)
                    .dfa_size_limit(Some(limits.max_dfa_bytes))
                    .determinize_size_limit(Some(limits.max_dfa_bytes)),
            )
            .build_from_nfa(&nfa);
        let Ok(dfa) = dfa else {
            return Some(Err(()));
        };
        let Ok(start) = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)) else {
            return Some(Err(()));
        };
        Some(Ok(Machine::new(
            ctx,
            Body::Dfa {
                dfa: Box::new(dfa),
                start,
            },
            lcp,
        )))
    }

    fn new(ctx: &[u8], body: Body, body_lcp: Vec<u8>) -> Machine {
        let mut classes = [0u64; 4];
        mark(&mut classes, ctx);
        match &body {
            Body::Literal(l) | Body::Prefix(l) => mark(&mut classes, l),
            Body::Dfa { dfa, .. } => {
                let bc = dfa.byte_classes();
                for b in 1..=255u8 {
                    if bc.get(b) != bc.get(b - 1) {
                        classes[b as usize / 64] |= 1 << (b % 64);
                    }
                }
            }
        }
        let mut m = Machine {
            ctx: ctx.into(),
            body,
            bare: false,
            lcp: Vec::new(),
            classes,
        };
        let after_slash = m.step(St::Ctx(ctx.len() as u32), b'/');
        m.bare = !ctx.is_empty() && m.accepts(after_slash);
        m.lcp = ctx.to_vec();
        if !m.bare {
            m.lcp.extend_from_slice(&body_lcp);
        }
        m
    }

    fn body_start(&self) -> St {
        match &self.body {
            Body::Literal(_) | Body::Prefix(_) => St::Lit(0),
            Body::Dfa { start, .. } => St::Dfa(*start),
        }
    }

    fn step(&self, s: St, b: u8) -> St {
        match (s, &self.body) {
            (St::Dead, _) => St::Dead,
            (St::Ctx(i), _) => match self.ctx.get(i as usize) {
                Some(&c) if c == b => St::Ctx(i + 1),
                Some(_) => St::Dead,
                // After the context path the router sees a path starting with `/`.
                None if b == b'/' => self.step(self.body_start(), b),
                None => St::Dead,
            },
            (St::Lit(p), Body::Literal(l)) if l.get(p as usize) == Some(&b) => St::Lit(p + 1),
            (St::Lit(p), Body::Prefix(l)) => match l.get(p as usize) {
                Some(&c) if c == b => St::Lit(p + 1),
                None if b == b'/' => St::Rest,
                _ => St::Dead,
            },
            (St::Rest, _) => St::Rest,
            (St::Dfa(id), Body::Dfa { dfa, .. }) => {
                let next = dfa.next_state(id, b);
                // No quit bytes are configured (no Unicode word boundaries), so a
                // special state here is dead.
                if dfa.is_dead_state(next) || dfa.is_quit_state(next) {
                    St::Dead
                } else {
                    St::Dfa(next)
                }
            }
            _ => St::Dead,
        }
    }

    /// The bytes that do not kill the machine in state `s`, when there are fewer than two.
    fn next_byte(&self, s: St) -> Next {
        match (s, &self.body) {
            (St::Dead, _) => Next::End,
            (St::Ctx(i), _) => Next::One(self.ctx.get(i as usize).copied().unwrap_or(b'/')),
            (St::Lit(p), Body::Literal(l)) => l.get(p as usize).map_or(Next::End, |&b| Next::One(b)),
            (St::Lit(p), Body::Prefix(l)) => Next::One(l.get(p as usize).copied().unwrap_or(b'/')),
            _ => Next::Any,
        }
    }

    /// Does the machine accept `path`?
    fn matches(&self, path: &[u8]) -> bool {
        let end = path.iter().fold(St::Ctx(0), |s, &b| self.step(s, b));
        self.accepts(end)
    }

    /// Does the machine accept when the path ends in state `s`?
    fn accepts(&self, s: St) -> bool {
        match (s, &self.body) {
            (St::Dead, _) => false,
            (St::Ctx(i), _) => i as usize == self.ctx.len() && self.bare,
            (St::Lit(p), Body::Literal(l) | Body::Prefix(l)) => p as usize == l.len(),
            (St::Rest, _) => true,
            (St::Dfa(id), Body::Dfa { dfa, .. }) => dfa.is_match_state(dfa.next_eoi_state(id)),
            (St::Lit(_) | St::Dfa(_), _) => false,
        }
    }
}

/// See [`Machine::next_byte`].
enum Next {
    Any,
    One(u8),
    End,
}

/// The outcome of a product walk.
#[derive(Debug)]
enum Walk {
    /// A shortest path.
    Found(Vec<u8>),
    /// No path exists.
    Empty,
    OverBudget,
}

/// Up to this many machines, a walk computes its alphabet once rather than per state.
const SHARED_ALPHABET: usize = 8;

/// Breadth-first search for a shortest path every `pos` machine accepts and no `neg`
/// machine does.
///
/// A product state lists the machines that are not dead, with their states, so a walk
/// over many `neg` machines (a shadowing test against hundreds of earlier rules) only
/// pays for the few that are still alive, and only for their byte classes.
fn search(pos: &[&Machine], neg: &[&Machine], max_states: usize) -> Walk {
    type Node = Rc<[(u32, St)]>;
    let p = pos.len() as u32;
    let machines: Vec<&Machine> = pos.iter().chain(neg).copied().collect();
    let start: Node = (0..machines.len() as u32).map(|i| (i, St::Ctx(0))).collect();
    let mut nodes: Vec<Node> = vec![start.clone()];
    let mut parent: Vec<(u32, u8)> = vec![(u32::MAX, 0)];
    let mut seen: FastSet<Node> = FastSet::default();
    seen.insert(start);
    let mut next: Vec<(u32, St)> = Vec::new();
    // With few machines, one alphabet for all of them is close to each node's own.
    let whole = (machines.len() <= SHARED_ALPHABET).then(|| alphabet(machines.iter().copied()));
    let mut node = 0;
    while node < nodes.len() {
        let cur = nodes[node].clone();
        // `pos` machines are never dropped, so they are the first `p` entries.
        let accepted = cur
            .iter()
            .all(|&(i, s)| machines[i as usize].accepts(s) == (i < p));
        if accepted {
            return Walk::Found(witness(&parent, node));
        }
        // A `pos` machine inside a literal allows one byte: skip the alphabet.
        let mut bytes = None;
        for &(i, s) in cur.iter().take(p as usize) {
            match machines[i as usize].next_byte(s) {
                Next::Any => {}
                Next::One(b) => bytes = Some(vec![b]),
                Next::End => {
                    bytes = Some(vec![]);
                    break;
                }
            }
        }
        let bytes = bytes.unwrap_or_else(|| match &whole {
            Some(all) => all.clone(),
            None => alphabet(cur.iter().map(|&(i, _)| machines[i as usize])),
        });
        'bytes: for b in bytes {
            next.clear();
            for &(i, s) in cur.iter() {
                match machines[i as usize].step(s, b) {
                    St::Dead if i < p => continue 'bytes,
                    St::Rest if i >= p => continue 'bytes,
                    St::Dead => {}
                    s => next.push((i, s)),
                }
            }
            if seen.contains(&next[..]) {
                continue;
            }
            if nodes.len() >= max_states {
                return Walk::OverBudget;
            }
            let n: Node = next.as_slice().into();
            seen.insert(n.clone());
            nodes.push(n);
            parent.push((node as u32, b));
        }
        node += 1;
    }
    Walk::Empty
}

/// A multiply-rotate hasher (the `FxHasher` family) for product states: SipHash was a
/// third of the analysis time.
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = crate::hash::hash_bytes(self.0, bytes);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        crate::hash::finish(self.0)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// One byte per class of the machines' combined alphabet, in the order they are tried.
fn alphabet<'m>(machines: impl Iterator<Item = &'m Machine>) -> Vec<u8> {
    let mut starts = [0u64; 4];
    for m in machines {
        for (s, c) in starts.iter_mut().zip(m.classes) {
            *s |= c;
        }
    }
    let rank = |b: u8| -> u8 {
        if b.is_ascii_alphanumeric() {
            0
        } else if b.is_ascii_graphic() {
            1
        } else {
            2
        }
    };
    // The best byte of each class, found in byte order.
    let mut reps: Vec<u8> = Vec::with_capacity(64);
    for b in 0..=255u8 {
        let new_class = b == 0 || starts[b as usize / 64] & (1 << (b % 64)) != 0;
        match reps.last_mut() {
            Some(best) if !new_class => {
                if rank(b) < rank(*best) {
                    *best = b;
                }
            }
            _ => reps.push(b),
        }
    }
    // Stable by rank: byte order within a rank.
    let mut ordered = Vec::with_capacity(reps.len());
    for r in 0..3 {
        ordered.extend(reps.iter().copied().filter(|&b| rank(b) == r));
    }
    ordered
}

/// The path leading to `node`.
fn witness(parent: &[(u32, u8)], mut node: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    while parent[node].0 != u32::MAX {
        bytes.push(parent[node].1);
        node = parent[node].0 as usize;
    }
    bytes.reverse();
    bytes
}

/// Visible ASCII as is, other bytes as `\xNN`.
fn printable(path: &[u8]) -> String {
    let mut s = String::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_graphic() {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
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
}
