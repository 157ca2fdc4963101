//! The path index: which rules' path matchers hold, in one pass over the path.
//!
//! A single multi-pattern DFA over every rule does not scale (at 10,000 mixed rules a
//! dense DFA is tens of MiB and misses cache on every byte; building it takes tens of
//! seconds). So paths are indexed in tiers:
//!
//! 1. **Segment-aware prefixes and context paths** live in a hash table, probed
//!    only at the `/` boundaries where a key of that length exists (a bitset of key
//!    lengths), and at the end.
//! 2. **Exact paths and whole-segment regexes** go into a segment trie per context
//!    path ([`trie`]), walked one segment at a time: exact paths (regexes that are
//!    plain literals included) as all-literal patterns under the root, regexes such as
//!    `/repos/([^/]+)/events` or `/svc/v[0-9]+/([0-9]+)/(.*)` — literal segments,
//!    `[^/]+`/`[^/]*`, regexes that cannot match `/`, and a trailing `(.*)` — under
//!    their context path.
//! 3. **Other regexes** are grouped by context path, then partitioned by the literal
//!    first segment they must start with (`/v1/(.*)` → `v1`), with one partition for
//!    regexes whose first segment is not literal. Each partition is one multi-pattern
//!    DFA (`MatchKind::All`, anchored): walking the (context-stripped) path to its end
//!    and taking the end-of-input transition yields every pattern that matches the
//!    *whole* path. A request runs at most two partitions per context path that is a
//!    prefix of it: its first segment's and the non-literal one ([`automata`]).
//!
//! Partitions are dense DFAs when they fit [`crate::BuildLimits::max_automaton_bytes`],
//! else lazy (hybrid) DFAs whose caches live in the per-request scratch. A partition's
//! NFA is bounded by its rules', each of which fits [`crate::BuildLimits::max_regex_bytes`].
//!
//! When the index is a lone segment trie (no prefix rules, no regex under a context
//! path, every regex one the trie takes: most REST route sets), a lookup is one walk
//! of it.
//!
//! The tiers report candidate rule ids in no particular order; the router sorts them
//! and checks them in rule order.

mod automata;
mod trie;

use crate::hash::BytesTable;
use crate::pattern::SegMatch;
use automata::{LazyCaches, Partition, PartitionLimits};
pub(crate) use trie::Hay;
use trie::{SegmentTrie, TrieBuilder, ROOT_HAY};

const NONE: u32 = u32::MAX;

/// A regex and its literal first segments, as in [`PathKey::Regex`].
pub(crate) type RegexKey = (String, Option<Vec<Vec<u8>>>);

/// How one rule's path enters the index (context path already folded in).
#[derive(Clone, Debug)]
pub(crate) enum PathKey {
    /// The whole normalized path equals these bytes.
    Exact(Vec<u8>),
    /// The path equals these bytes or continues with `/` (empty = every path).
    Prefix(Vec<u8>),
    /// The path with `ctx` stripped is these segments (see
    /// [`crate::pattern::segment_shape`]); `regex` is the same rule as a
    /// [`PathKey::Regex`], for when a class segment has no small DFA.
    Segments {
        ctx: Vec<u8>,
        segs: Vec<SegMatch>,
        regex: RegexKey,
    },
    /// The path with `ctx` stripped matches `pattern` as a whole.
    Regex {
        ctx: Vec<u8>,
        pattern: String,
        first_segments: Option<Vec<Vec<u8>>>,
    },
}

/// A prefix-table entry: prefix rules and the context whose tiers run on the rest.
#[derive(Clone, Copy, Debug)]
struct Entry {
    prefix: (u32, u32),
    ctx: u32,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            prefix: (0, 0),
            ctx: NONE,
        }
    }
}

/// The regex tiers of one context path.
#[derive(Clone, Debug)]
struct Context {
    /// Root of the context's segment trie, or NONE.
    trie: u32,
    wild: u32,
    by_segment: BytesTable<u32>,
}

/// Per-request state of the path index.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathScratch {
    lazy: LazyCaches,
    stack: Vec<(u32, u32)>,
}

/// Why the index could not be built.
#[derive(Debug)]
pub(crate) struct IndexError {
    /// The rule that could not be compiled, when one can be singled out.
    pub rule: Option<u32>,
    pub message: String,
}

/// A set of key lengths, to probe a table only at lengths some key has.
#[derive(Clone, Debug, Default)]
struct LengthSet {
    words: Box<[u64]>,
}

impl LengthSet {
    fn new(lens: impl Iterator<Item = usize>) -> LengthSet {
        let mut words = Vec::new();
        for l in lens {
            if words.len() <= l / 64 {
                words.resize(l / 64 + 1, 0u64);
            }
            words[l / 64] |= 1 << (l % 64);
        }
        LengthSet { words: words.into() }
    }

    /// One past the longest length (0 when empty).
    fn end(&self) -> usize {
        self.words.last().map_or(0, |w| {
            (self.words.len() - 1) * 64 + 64 - w.leading_zeros() as usize
        })
    }

    #[inline]
    fn contains(&self, l: usize) -> bool {
        self.words.get(l / 64).is_some_and(|w| w & (1 << (l % 64)) != 0)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PathIndex {
    /// The entry of the empty key (prefix `/`, regexes without a context path).
    root: Entry,
    /// Non-empty prefix and context keys.
    prefix: BytesTable<Entry>,
    prefix_lens: LengthSet,
    /// No prefix probe is needed from this length on.
    prefix_end: usize,
    pool: Box<[u32]>,
    contexts: Box<[Context]>,
    trie: SegmentTrie,
    partitions: Box<[Partition]>,
    lazy_partitions: usize,
    /// The root of the segment trie when it is the whole index (no prefix or
    /// context keys, no regex partitions), else NONE.
    only_trie: u32,
}

impl PathIndex {
    pub(crate) fn build(
        keys: Vec<(u32, PathKey)>,
        max_automaton_bytes: usize,
        max_regex_bytes: usize,
    ) -> Result<PathIndex, IndexError> {
        use std::collections::BTreeMap;
        #[derive(Default)]
        struct CtxAcc {
            segs: Vec<(u32, Vec<SegMatch>, Option<RegexKey>)>,
            wild: Vec<(u32, String)>,
            by_segment: BTreeMap<Vec<u8>, Vec<(u32, String)>>,
        }
        let mut prefix: BTreeMap<Vec<u8>, (Vec<u32>, Option<usize>)> = BTreeMap::new();
        let mut ctxs: Vec<CtxAcc> = Vec::new();
        let mut ctx_of = |prefix: &mut BTreeMap<Vec<u8>, (Vec<u32>, Option<usize>)>, ctx: Vec<u8>| {
            *prefix.entry(ctx).or_default().1.get_or_insert_with(|| {
                ctxs.push(CtxAcc::default());
                ctxs.len() - 1
            })
        };
        let mut acc_of = Vec::new();
        for (rule, key) in keys {
            match key {
                PathKey::Exact(k) => {
                    // An all-literal pattern under the root: "/a/b/" → a, b, "".
                    let segs = k[1..]
                        .split(|&b| b == b'/')
                        .map(|s| SegMatch::Lit(s.into()))
                        .collect();
                    let ci = ctx_of(&mut prefix, Vec::new());
                    acc_of.push((ci, rule, Ok((segs, None))));
                }
                PathKey::Prefix(k) => prefix.entry(k).or_default().0.push(rule),
                PathKey::Segments { ctx, segs, regex } => {
                    let ci = ctx_of(&mut prefix, ctx);
                    acc_of.push((ci, rule, Ok((segs, Some(regex)))));
                }
                PathKey::Regex {
                    ctx,
                    pattern,
                    first_segments,
                } => {
                    let ci = ctx_of(&mut prefix, ctx);
                    acc_of.push((ci, rule, Err((pattern, first_segments))));
                }
            }
        }
        for (ci, rule, what) in acc_of {
            match what {
                Ok((segs, regex)) => ctxs[ci].segs.push((rule, segs, regex)),
                Err((pattern, Some(firsts))) => {
                    for s in firsts {
                        ctxs[ci]
                            .by_segment
                            .entry(s)
                            .or_default()
                            .push((rule, pattern.clone()));
                    }
                }
                Err((pattern, None)) => ctxs[ci].wild.push((rule, pattern)),
            }
        }
        let limits = PartitionLimits {
            automaton: max_automaton_bytes,
            regex: max_regex_bytes,
        };
        let mut partitions = Vec::new();
        let mut lazy = 0;
        let mut add_partition = |rules: Vec<(u32, String)>, lazy: &mut usize| -> Result<u32, IndexError> {
            let pats: Vec<&str> = rules.iter().map(|(_, p)| p.as_str()).collect();
            let ids = rules.iter().map(|(r, _)| *r).collect();
            partitions.push(Partition::build(&pats, ids, limits, lazy)?);
            Ok(partitions.len() as u32 - 1)
        };
        let mut trie = TrieBuilder::default();
        let mut contexts = Vec::with_capacity(ctxs.len());
        for mut c in ctxs {
            let root = if c.segs.is_empty() {
                NONE
            } else {
                let root = trie.root();
                for (rule, segs, regex) in std::mem::take(&mut c.segs) {
                    if !trie.insert(root, &segs, rule, max_automaton_bytes) {
                        // A class segment without a small DFA: the automaton tier.
                        let Some((pattern, firsts)) = regex else {
                            continue;
                        };
                        match firsts {
                            Some(firsts) => {
                                for s in firsts {
                                    c.by_segment.entry(s).or_default().push((rule, pattern.clone()));
                                }
                            }
                            None => c.wild.push((rule, pattern)),
                        }
                    }
                }
                root
            };
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
                trie: root,
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
        let mut prefixes = Vec::with_capacity(prefix.len());
        for (key, (rules, ctx)) in prefix {
            let e = Entry {
                prefix: range(&rules),
                ctx: ctx.map_or(NONE, |c| c as u32),
            };
            if key.is_empty() {
                root = e;
            } else {
                prefixes.push((key, e));
            }
        }
        let prefix_lens = LengthSet::new(prefixes.iter().map(|(k, _)| k.len()));
        let only_trie = match contexts.get(root.ctx as usize) {
            Some(c)
                if prefixes.is_empty()
                    && root.prefix.0 == root.prefix.1
                    && c.wild == NONE
                    && c.by_segment.is_empty() =>
            {
                c.trie
            }
            _ => NONE,
        };
        Ok(PathIndex {
            only_trie,
            root,
            prefix_end: prefix_lens.end(),
            prefix: BytesTable::from_entries(prefixes),
            prefix_lens,
            pool: pool.into_boxed_slice(),
            contexts: contexts.into_boxed_slice(),
            trie: trie.finish(),
            partitions: partitions.into_boxed_slice(),
            lazy_partitions: lazy,
        })
    }

    /// Appends the ids of every rule whose path matcher holds for the path of `hay`
    /// (normalized, starting with `/`, `hay.start == 0`) to `out`, unordered, possibly
    /// with repeats.
    #[inline]
    pub(crate) fn candidates(&self, hay: Hay<'_>, scratch: &mut PathScratch, out: &mut Vec<u32>) {
        if self.only_trie != NONE {
            self.trie.walk(self.only_trie, &hay, out, &mut scratch.stack);
            return;
        }
        self.visit(&self.root, hay, 0, 0, out, scratch);
        if self.prefix_end == 0 {
            return;
        }
        // Prefix and context keys: `path[..i]` where `path[i]` is '/', or the whole path,
        // probed only at lengths some key has.
        let path = &hay.buf[..hay.len];
        let probe_to = path.len().min(self.prefix_end);
        for (k, &i) in hay.slashes.iter().enumerate() {
            let i = i as usize;
            if i >= probe_to {
                break;
            }
            if self.prefix_lens.contains(i) {
                if let Some(e) = self.prefix.get(&path[..i]) {
                    self.visit_prefix(e, hay, i, k, out, scratch);
                }
            }
        }
        if self.prefix_lens.contains(path.len()) {
            if let Some(e) = self.prefix.get(path) {
                self.visit_prefix(e, hay, path.len(), hay.slashes.len() - 1, out, scratch);
            }
        }
    }

    #[inline]
    fn range(&self, (s, e): (u32, u32)) -> &[u32] {
        &self.pool[s as usize..e as usize]
    }

    /// [`Self::visit`] out of line, for the prefix keys (the root's is inlined).
    #[inline(never)]
    fn visit_prefix(
        &self,
        e: &Entry,
        hay: Hay<'_>,
        at: usize,
        k: usize,
        out: &mut Vec<u32>,
        scratch: &mut PathScratch,
    ) {
        self.visit(e, hay, at, k, out, scratch)
    }

    /// Prefix rules and the context's regex tiers of the entry for `path[..at]`;
    /// `hay.slashes[k] == at`.
    #[inline(always)]
    fn visit(
        &self,
        e: &Entry,
        hay: Hay<'_>,
        at: usize,
        k: usize,
        out: &mut Vec<u32>,
        scratch: &mut PathScratch,
    ) {
        if e.prefix.0 != e.prefix.1 {
            out.extend_from_slice(self.range(e.prefix));
        }
        if e.ctx == NONE {
            return;
        }
        let ctx = &self.contexts[e.ctx as usize];
        // The path with the context stripped; the request being the context path
        // itself is "/".
        let stripped_hay;
        let hay = if at == 0 {
            &hay
        } else if at < hay.len {
            stripped_hay = Hay {
                start: at,
                first: k,
                ..hay
            };
            &stripped_hay
        } else {
            &ROOT_HAY
        };
        if ctx.trie != NONE {
            self.trie.walk(ctx.trie, hay, out, &mut scratch.stack);
        }
        if ctx.by_segment.is_empty() && ctx.wild == NONE {
            return;
        }
        let stripped = &hay.buf[hay.start..hay.len];
        if !ctx.by_segment.is_empty() {
            let rest = &stripped[1..];
            let seg = &rest[..rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())];
            if let Some(&p) = ctx.by_segment.get(seg) {
                self.partitions[p as usize].run(stripped, out, &mut scratch.lazy, self.lazy_partitions);
            }
        }
        if ctx.wild != NONE {
            self.partitions[ctx.wild as usize].run(stripped, out, &mut scratch.lazy, self.lazy_partitions);
        }
    }

    /// Heap bytes of the tables and automata.
    pub(crate) fn heap_bytes(&self) -> usize {
        let parts: usize = self.partitions.iter().map(Partition::heap_bytes).sum();
        parts
            + self.prefix.heap_bytes()
            + self.trie.heap_bytes()
            + self.pool.len() * 4
            + self
                .contexts
                .iter()
                .map(|c| c.by_segment.heap_bytes())
                .sum::<usize>()
    }

    /// Whether a lookup is one walk of the segment trie.
    pub(crate) fn is_trie_only(&self) -> bool {
        self.only_trie != NONE
    }

    /// (partitions, of which lazy).
    pub(crate) fn partition_counts(&self) -> (usize, usize) {
        (self.partitions.len(), self.lazy_partitions)
    }
}
