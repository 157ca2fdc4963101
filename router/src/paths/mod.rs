//! The path index: which rules' path matchers hold, in one pass over the path.
//!
//! A single multi-pattern DFA over every rule does not scale (at 10,000 mixed rules a
//! dense DFA is tens of MiB and misses cache on every byte; building it takes tens of
//! seconds). So paths are indexed in tiers, all answered by the same left-to-right walk:
//!
//! 1. **Exact paths** and **segment-aware prefixes** (with the group's context path
//!    folded in) live in one hash table. The walk hashes the path incrementally and
//!    probes the table at every `/` boundary (prefixes, context paths) and at the end
//!    (exact paths too). Regexes that are plain literals are compiled into this tier.
//! 2. **Regexes** are grouped by context path, then partitioned by the literal first
//!    segment they must start with (`/repos/[^/]+/…` → `repos`), with one partition for
//!    regexes whose first segment is not literal. Each partition is one multi-pattern
//!    DFA (`MatchKind::All`, anchored): walking the (context-stripped) path to its end
//!    and taking the end-of-input transition yields every pattern that matches the
//!    *whole* path. A request runs at most two partitions per context path that is a
//!    prefix of it: its first segment's and the non-literal one.
//!
//! Partitions are dense DFAs when they fit [`crate::BuildLimits::max_automaton_bytes`],
//! else lazy (hybrid) DFAs whose caches live in the per-request scratch.
//!
//! The tiers report candidate rule ids in no particular order; the router sorts them
//! and checks them in rule order.

use crate::hash::{mix, BytesTable};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::hybrid;
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

const NONE: u32 = u32::MAX;

/// How one rule's path enters the index (context path already folded in).
#[derive(Clone, Debug)]
pub(crate) enum PathKey {
    /// The whole normalized path equals these bytes.
    Exact(Vec<u8>),
    /// The path equals these bytes or continues with `/` (empty = every path).
    Prefix(Vec<u8>),
    /// The path with `ctx` stripped matches `pattern` as a whole.
    Regex {
        ctx: Vec<u8>,
        pattern: String,
        first_segments: Option<Vec<Vec<u8>>>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    exact: (u32, u32),
    prefix: (u32, u32),
    ctx: u32,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            exact: (0, 0),
            prefix: (0, 0),
            ctx: NONE,
        }
    }
}

#[derive(Clone, Debug)]
struct Context {
    wild: u32,
    by_segment: BytesTable<u32>,
}

#[derive(Clone, Debug)]
enum Engine {
    Dense {
        dfa: dense::DFA<Vec<u32>>,
        start: Option<StateID>,
    },
    Lazy {
        dfa: hybrid::dfa::DFA,
        cache: usize,
    },
}

#[derive(Clone, Debug)]
struct Partition {
    engine: Engine,
    /// Pattern id → rule id.
    rules: Box<[u32]>,
}

/// Per-request state of the path index (lazy DFA caches).
#[derive(Clone, Debug, Default)]
pub(crate) struct PathScratch {
    caches: Vec<Option<hybrid::dfa::Cache>>,
}

/// Why the index could not be built.
#[derive(Debug)]
pub(crate) struct IndexError {
    /// The rule that could not be compiled, when one can be singled out.
    pub rule: Option<u32>,
    pub message: String,
}

#[derive(Clone, Debug)]
pub(crate) struct PathIndex {
    root: Entry,
    table: BytesTable<Entry>,
    pool: Box<[u32]>,
    contexts: Box<[Context]>,
    partitions: Box<[Partition]>,
    lazy_partitions: usize,
    /// No boundary probe is needed past this length.
    max_key: usize,
}

fn nfa_config(limit: usize) -> thompson::Config {
    thompson::Config::new()
        .which_captures(thompson::WhichCaptures::None)
        .nfa_size_limit(Some(limit))
}

fn build_partition(
    patterns: &[&str],
    rules: Vec<u32>,
    limit: usize,
    lazy_count: &mut usize,
) -> Result<Partition, IndexError> {
    let dense = dense::Builder::new()
        .syntax(crate::pattern::syntax_config())
        .thompson(nfa_config(limit))
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(limit))
                .determinize_size_limit(Some(limit)),
        )
        .build_many(patterns);
    let engine = match dense {
        Ok(dfa) => {
            let start = dfa.universal_start_state(Anchored::Yes);
            Engine::Dense { dfa, start }
        }
        Err(_) => {
            let lazy = hybrid::dfa::Builder::new()
                .syntax(crate::pattern::syntax_config())
                .thompson(nfa_config(limit))
                .configure(
                    hybrid::dfa::Config::new()
                        .match_kind(MatchKind::All)
                        .cache_capacity((limit / 4).max(1 << 20)),
                )
                .build_many(patterns);
            match lazy {
                Ok(dfa) => {
                    *lazy_count += 1;
                    Engine::Lazy {
                        dfa,
                        cache: *lazy_count - 1,
                    }
                }
                Err(e) => {
                    // Single out the rule that is too big on its own, if there is one.
                    let culprit = patterns.iter().zip(&rules).find(|(p, _)| {
                        hybrid::dfa::Builder::new()
                            .syntax(crate::pattern::syntax_config())
                            .thompson(nfa_config(limit))
                            .build(p)
                            .is_err()
                    });
                    return Err(IndexError {
                        rule: culprit.map(|(_, r)| *r),
                        message: format!("path automaton exceeds its size limit ({limit} bytes): {e}"),
                    });
                }
            }
        }
    };
    Ok(Partition {
        engine,
        rules: rules.into_boxed_slice(),
    })
}

impl PathIndex {
    pub(crate) fn build(keys: Vec<(u32, PathKey)>, limit: usize) -> Result<PathIndex, IndexError> {
        use std::collections::BTreeMap;
        // Gather per key: exact rules, prefix rules, regex rules by context then segment.
        #[derive(Default)]
        struct Acc {
            exact: Vec<u32>,
            prefix: Vec<u32>,
            ctx: Option<usize>,
        }
        #[derive(Default)]
        struct CtxAcc {
            wild: Vec<(u32, String)>,
            by_segment: BTreeMap<Vec<u8>, Vec<(u32, String)>>,
        }
        let mut accs: BTreeMap<Vec<u8>, Acc> = BTreeMap::new();
        let mut ctxs: Vec<CtxAcc> = Vec::new();
        for (rule, key) in keys {
            match key {
                PathKey::Exact(k) => accs.entry(k).or_default().exact.push(rule),
                PathKey::Prefix(k) => accs.entry(k).or_default().prefix.push(rule),
                PathKey::Regex {
                    ctx,
                    pattern,
                    first_segments,
                } => {
                    let acc = accs.entry(ctx).or_default();
                    let ci = *acc.ctx.get_or_insert_with(|| {
                        ctxs.push(CtxAcc::default());
                        ctxs.len() - 1
                    });
                    match first_segments {
                        Some(segs) => {
                            for s in segs {
                                ctxs[ci]
                                    .by_segment
                                    .entry(s)
                                    .or_default()
                                    .push((rule, pattern.clone()));
                            }
                        }
                        None => ctxs[ci].wild.push((rule, pattern)),
                    }
                }
            }
        }
        let mut partitions = Vec::new();
        let mut lazy = 0;
        let mut add_partition = |rules: Vec<(u32, String)>, lazy: &mut usize| -> Result<u32, IndexError> {
            let pats: Vec<&str> = rules.iter().map(|(_, p)| p.as_str()).collect();
            let ids = rules.iter().map(|(r, _)| *r).collect();
            partitions.push(build_partition(&pats, ids, limit, lazy)?);
            Ok(partitions.len() as u32 - 1)
        };
        let mut contexts = Vec::with_capacity(ctxs.len());
        for c in ctxs {
            let wild = if c.wild.is_empty() {
                NONE
            } else {
                add_partition(c.wild, &mut lazy)?
            };
            let mut segs = Vec::with_capacity(c.by_segment.len());
            for (seg, rules) in c.by_segment {
                segs.push((seg, add_partition(rules, &mut lazy)?));
            }
            contexts.push(Context {
                wild,
                by_segment: BytesTable::from_entries(segs),
            });
        }
        let mut pool = Vec::new();
        let mut range = |v: &[u32]| {
            let s = pool.len() as u32;
            pool.extend_from_slice(v);
            (s, pool.len() as u32)
        };
        let mut root = Entry::default();
        let mut entries = Vec::with_capacity(accs.len());
        let mut max_key = 0;
        for (key, acc) in accs {
            let e = Entry {
                exact: range(&acc.exact),
                prefix: range(&acc.prefix),
                ctx: acc.ctx.map_or(NONE, |c| c as u32),
            };
            if key.is_empty() {
                root = e;
            } else {
                max_key = max_key.max(key.len());
                entries.push((key, e));
            }
        }
        Ok(PathIndex {
            root,
            table: BytesTable::from_entries(entries),
            pool: pool.into_boxed_slice(),
            contexts: contexts.into_boxed_slice(),
            partitions: partitions.into_boxed_slice(),
            lazy_partitions: lazy,
            max_key,
        })
    }

    /// Appends the ids of every rule whose path matcher holds for `path` (normalized,
    /// starting with `/`) to `out`, unordered, possibly with repeats.
    #[inline]
    pub(crate) fn candidates(&self, path: &[u8], scratch: &mut PathScratch, out: &mut Vec<u32>) {
        self.visit(&self.root, path, 0, out, scratch);
        if self.table.is_empty() {
            return;
        }
        let mut h = 0u64;
        let probe_to = path.len().min(self.max_key + 1);
        for (i, &b) in path[..probe_to].iter().enumerate() {
            if b == b'/' && i > 0 {
                if let Some(e) = self.table.get_hashed(h, &path[..i]) {
                    self.visit(e, path, i, out, scratch);
                }
            }
            h = mix(h, b);
        }
        if path.len() <= self.max_key {
            if let Some(e) = self.table.get_hashed(h, path) {
                out.extend_from_slice(self.range(e.exact));
                self.visit(e, path, path.len(), out, scratch);
            }
        }
    }

    #[inline]
    fn range(&self, (s, e): (u32, u32)) -> &[u32] {
        &self.pool[s as usize..e as usize]
    }

    /// Prefix rules and the context's regex partitions of the entry for `path[..at]`.
    #[inline]
    fn visit(&self, e: &Entry, path: &[u8], at: usize, out: &mut Vec<u32>, scratch: &mut PathScratch) {
        out.extend_from_slice(self.range(e.prefix));
        if e.ctx == NONE {
            return;
        }
        let ctx = &self.contexts[e.ctx as usize];
        let stripped: &[u8] = if at == 0 {
            path
        } else if at == path.len() {
            b"/"
        } else {
            &path[at..]
        };
        if !ctx.by_segment.is_empty() {
            let rest = &stripped[1..];
            let seg = &rest[..memchr::memchr(b'/', rest).unwrap_or(rest.len())];
            if let Some(&p) = ctx.by_segment.get(seg) {
                self.run(p, stripped, out, scratch);
            }
        }
        if ctx.wild != NONE {
            self.run(ctx.wild, stripped, out, scratch);
        }
    }

    /// One partition's automaton over the whole of `hay`.
    fn run(&self, p: u32, hay: &[u8], out: &mut Vec<u32>, scratch: &mut PathScratch) {
        let part = &self.partitions[p as usize];
        match &part.engine {
            Engine::Dense { dfa, start } => {
                let start = match start {
                    Some(s) => *s,
                    None => match dfa.start_state(&start::Config::new().anchored(Anchored::Yes)) {
                        Ok(s) => s,
                        Err(_) => return,
                    },
                };
                let mut s = start;
                for &b in hay {
                    s = dfa.next_state(s, b);
                    if dfa.is_special_state(s) && (dfa.is_dead_state(s) || dfa.is_quit_state(s)) {
                        return;
                    }
                }
                s = dfa.next_eoi_state(s);
                if dfa.is_match_state(s) {
                    for i in 0..dfa.match_len(s) {
                        out.push(part.rules[dfa.match_pattern(s, i).as_usize()]);
                    }
                }
            }
            Engine::Lazy { dfa, cache } => {
                if scratch.caches.len() < self.lazy_partitions {
                    scratch.caches.resize_with(self.lazy_partitions, || None);
                }
                let cache = scratch.caches[*cache].get_or_insert_with(|| dfa.create_cache());
                let Ok(mut s) = dfa.start_state(cache, &start::Config::new().anchored(Anchored::Yes)) else {
                    return;
                };
                for &b in hay {
                    let Ok(next) = dfa.next_state(cache, s, b) else {
                        return;
                    };
                    s = next;
                    if s.is_dead() || s.is_quit() {
                        return;
                    }
                }
                let Ok(s) = dfa.next_eoi_state(cache, s) else {
                    return;
                };
                if s.is_match() {
                    for i in 0..dfa.match_len(cache, s) {
                        out.push(part.rules[dfa.match_pattern(cache, s, i).as_usize()]);
                    }
                }
            }
        }
    }

    /// Heap bytes of the tables and automata.
    pub(crate) fn heap_bytes(&self) -> usize {
        let parts: usize = self
            .partitions
            .iter()
            .map(|p| {
                p.rules.len() * 4
                    + match &p.engine {
                        Engine::Dense { dfa, .. } => dfa.memory_usage(),
                        Engine::Lazy { dfa, .. } => dfa.memory_usage(),
                    }
            })
            .sum();
        parts
            + self.table.heap_bytes()
            + self.pool.len() * 4
            + self
                .contexts
                .iter()
                .map(|c| c.by_segment.heap_bytes())
                .sum::<usize>()
    }

    /// (partitions, of which lazy).
    pub(crate) fn partition_counts(&self) -> (usize, usize) {
        (self.partitions.len(), self.lazy_partitions)
    }

    /// Every key of the exact/prefix table, for analysis.
    #[allow(dead_code)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.table.iter().map(|(k, _)| k)
    }
}
