//! The segment-trie tier: paths and regexes made of whole path segments, matched one
//! segment at a time as matchit does, instead of one byte at a time through a DFA.
//!
//! A pattern enters the trie when it splits at its literal `/` bytes into segments that
//! are each one of ([`SegMatch`]):
//!
//! - a **literal** (`repos`; exact paths are all-literal patterns);
//! - **any segment**: `[^/]+` or `[^/]*` (the `{param}` routes of most APIs);
//! - a **class**: any regex that cannot match `/` (`v[0-9]+`, `([0-9]+)`, `(a|b)`),
//!   matched against the whole segment by a small dense DFA shared by every node that
//!   uses the same regex;
//! - last, a **rest**: `(.*)`, `.+` or another repetition of a byte class containing `/`,
//!   matched against everything after the `/` that starts it.
//!
//! Every trie node is a path position (a number of segments, under a context path). Its
//! literal children live in one hash table for the whole router, keyed by (node,
//! segment bytes); a slot holds the parent, the key's length and its first and last 8
//! bytes, so a step is one hash of the segment, one probe and, for segments up to 16
//! bytes, no further memory. A node has at most one `[^/]+` and one `[^/]*` child, and a list of
//! class and rest children. A path can follow several branches at once (a literal child
//! and a class child); the walk visits all of them, with an explicit stack in the
//! scratch, since every rule that matches is a candidate.
//!
//! The walk reads the request through a [`Hay`]: the path in a padded buffer and the
//! positions of its `/` bytes, both made once per request ([`crate::scan`]), so a
//! segment's ends are two loads and hashing it reads whole words.

use super::NONE;
use crate::hash::{bytes_equal, low_bytes, middle_words, segment_key, word_at, PAD};
use crate::pattern::{ByteSet, SegMatch};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::Hir;
use std::collections::HashMap;

/// A path as the walk reads it. `buf[start]` is the `/` that starts the (context-
/// stripped) path, `buf[len]` its end; `buf` extends [`PAD`] bytes past `len`.
/// `slashes` lists the positions of the whole path's `/` bytes, then `len`;
/// `slashes[first] == start`, so segment `k` of the stripped path is
/// `buf[slashes[first + k] + 1..slashes[first + k + 1]]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hay<'a> {
    pub buf: &'a [u8],
    pub slashes: &'a [u32],
    pub first: usize,
    pub start: usize,
    pub len: usize,
}

/// The path `/` alone: what a rule whose context path is the whole request sees.
pub(crate) const ROOT_HAY: Hay<'static> = Hay {
    buf: &[b'/', 0, 0, 0, 0, 0, 0, 0, 0],
    slashes: &[0, 1],
    first: 0,
    start: 0,
    len: 1,
};

#[derive(Clone, Copy, Debug)]
struct Node {
    /// The first rule whose pattern ends here, or NONE.
    end: u32,
    /// The others: a range of `SegmentTrie::ends`.
    more_ends: (u32, u32),
    plus: u32,
    star: u32,
    /// Class and rest children: a range of `SegmentTrie::pieces`.
    pieces: (u32, u32),
    /// The node has literal children (else its segment need not be hashed).
    lits: bool,
    /// The node has a `[^/]*` child or pieces: the walk takes its general step.
    rare: bool,
}

/// A literal edge, stored in its hash slot.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The key's first 8 bytes (fewer zero-padded) and, when longer, its last 8
    /// ([`crate::hash::SegmentKey`]).
    first: u64,
    last: u64,
    /// [`slot_key`] of the parent and the key's length; [`EMPTY`]'s marks an empty slot.
    key: u64,
    child: u32,
    /// Index in `SegmentTrie::words` of the key's middle words, when it is longer
    /// than 16 bytes.
    rest: u32,
}

/// A slot's parent and key length in one word, compared at once.
#[inline(always)]
fn slot_key(parent: u32, len: usize) -> u64 {
    u64::from(parent) << 32 | len as u64
}

const EMPTY: Slot = Slot {
    first: 0,
    last: 0,
    key: u64::MAX,
    child: NONE,
    rest: 0,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Piece {
    /// Index in `SegmentTrie::classes`.
    Class(u32),
    /// Index in `SegmentTrie::rests`.
    Rest(u32),
}

/// A class segment's DFA: anchored, run over exactly the segment's bytes.
#[derive(Clone, Debug)]
struct ClassDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl ClassDfa {
    #[inline]
    fn matches(&self, seg: &[u8]) -> bool {
        let mut s = self.start;
        for &b in seg {
            s = self.dfa.next_state(s, b);
            if self.dfa.is_special_state(s) && (self.dfa.is_dead_state(s) || self.dfa.is_quit_state(s)) {
                return false;
            }
        }
        self.dfa.is_match_state(self.dfa.next_eoi_state(s))
    }
}

/// A rest piece: every byte of the rest in `set`, and at least one when `nonempty`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Rest {
    set: ByteSet,
    nonempty: bool,
}

impl Rest {
    /// Whether `hay.buf[from..hay.len]` matches.
    #[inline]
    fn matches(&self, hay: &Hay<'_>, from: usize) -> bool {
        if self.nonempty && from == hay.len {
            return false;
        }
        if self.set.is_full() {
            return true;
        }
        if self.set.is_all_but(b'\n') {
            let mut at = from;
            while at < hay.len {
                let w = low_bytes(word_at(hay.buf, at), (hay.len - at).min(8));
                if bytes_equal(w, b'\n') != 0 {
                    return false;
                }
                at += 8;
            }
            return true;
        }
        hay.buf[from..hay.len].iter().all(|&b| self.set.contains(b))
    }
}

/// Every context's segment trie, in shared arrays.
#[derive(Clone, Debug, Default)]
pub(super) struct SegmentTrie {
    nodes: Vec<Node>,
    ends: Vec<u32>,
    pieces: Vec<(Piece, u32)>,
    classes: Vec<ClassDfa>,
    rests: Vec<Rest>,
    slots: Box<[Slot]>,
    mask: usize,
    words: Vec<u64>,
}

#[derive(Default)]
struct BuildNode {
    plus: u32,
    star: u32,
    ends: Vec<u32>,
    pieces: Vec<(Piece, u32)>,
}

/// Builds a [`SegmentTrie`].
#[derive(Default)]
pub(super) struct TrieBuilder {
    nodes: Vec<BuildNode>,
    children: HashMap<(u32, Box<[u8]>), u32>,
    classes: Vec<ClassDfa>,
    /// Class regex (as printed) → index in `classes`, or `None` when it has no DFA
    /// within the size limit.
    class_ids: HashMap<String, Option<u32>>,
    rests: Vec<Rest>,
}

#[inline(always)]
fn seed(node: u32) -> u64 {
    u64::from(node)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `key` padded for [`segment_key`].
fn padded(key: &[u8]) -> Vec<u8> {
    let mut v = key.to_vec();
    v.resize(key.len() + PAD, 0);
    v
}

fn class_dfa(hir: &Hir, max_bytes: usize) -> Option<ClassDfa> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .which_captures(thompson::WhichCaptures::None)
                .nfa_size_limit(Some(max_bytes)),
        )
        .build_from_hir(hir)
        .ok()?;
    // `MatchKind::All`, as every path automaton: the question is whether the whole
    // segment matches, not which alternative matches first. Under the default
    // leftmost-first semantics `[a-c]|(?i:ab?)` stops at its first alternative's
    // match of `a` and never sees that `ab` matches the second (found by the
    // `router` fuzz target).
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(max_bytes))
                .determinize_size_limit(Some(max_bytes)),
        )
        .build_from_nfa(&nfa)
        .ok()?;
    // Class regexes have no look-around, so the start state is universal.
    let start = dfa.universal_start_state(Anchored::Yes)?;
    Some(ClassDfa { dfa, start })
}

impl TrieBuilder {
    fn node(&mut self) -> u32 {
        self.nodes.push(BuildNode {
            plus: NONE,
            star: NONE,
            ..Default::default()
        });
        self.nodes.len() as u32 - 1
    }

    /// A new root (one per context path).
    pub(super) fn root(&mut self) -> u32 {
        self.node()
    }

    /// Adds `rule` with pattern `segs` under `root`. Returns false, adding nothing, when
    /// a class segment has no DFA within `max_dfa_bytes` (the rule then goes to the
    /// automaton tier).
    pub(super) fn insert(&mut self, root: u32, segs: &[SegMatch], rule: u32, max_dfa_bytes: usize) -> bool {
        let mut pieces = Vec::new();
        for seg in segs {
            match seg {
                SegMatch::Class(hir) => {
                    let key = hir.to_string();
                    let id = match self.class_ids.get(&key) {
                        Some(&id) => id,
                        None => {
                            let id = class_dfa(hir, max_dfa_bytes).map(|d| {
                                self.classes.push(d);
                                self.classes.len() as u32 - 1
                            });
                            self.class_ids.insert(key, id);
                            id
                        }
                    };
                    match id {
                        Some(id) => pieces.push(Piece::Class(id)),
                        None => return false,
                    }
                }
                SegMatch::Rest { set, nonempty } => {
                    let r = Rest {
                        set: set.clone(),
                        nonempty: *nonempty,
                    };
                    let id = match self.rests.iter().position(|x| *x == r) {
                        Some(i) => i,
                        None => {
                            self.rests.push(r);
                            self.rests.len() - 1
                        }
                    };
                    pieces.push(Piece::Rest(id as u32));
                }
                SegMatch::Lit(_) | SegMatch::Any { .. } => {}
            }
        }
        let mut pieces = pieces.into_iter();
        let mut node = root;
        for seg in segs {
            let n = node as usize;
            let existing = match seg {
                SegMatch::Lit(l) => self.children.get(&(node, l.clone())).copied(),
                SegMatch::Any { nonempty: true } => Some(self.nodes[n].plus),
                SegMatch::Any { nonempty: false } => Some(self.nodes[n].star),
                SegMatch::Class(_) | SegMatch::Rest { .. } => {
                    let p = pieces.next().unwrap_or(Piece::Rest(0));
                    let found = self.nodes[n].pieces.iter().find(|(q, _)| *q == p).map(|x| x.1);
                    Some(found.unwrap_or_else(|| {
                        let c = self.node();
                        self.nodes[n].pieces.push((p, c));
                        c
                    }))
                }
            }
            .filter(|&c| c != NONE);
            node = match existing {
                Some(c) => c,
                None => {
                    let c = self.node();
                    match seg {
                        SegMatch::Lit(l) => {
                            self.children.insert((node, l.clone()), c);
                        }
                        SegMatch::Any { nonempty: true } => self.nodes[n].plus = c,
                        _ => self.nodes[n].star = c,
                    }
                    c
                }
            };
        }
        self.nodes[node as usize].ends.push(rule);
        true
    }

    pub(super) fn finish(self) -> SegmentTrie {
        let mut ends = Vec::new();
        let mut pieces = Vec::new();
        let mut nodes: Vec<Node> = self
            .nodes
            .into_iter()
            .map(|b| {
                let (s, p) = (ends.len() as u32, pieces.len() as u32);
                ends.extend(b.ends.iter().skip(1));
                pieces.extend(b.pieces);
                Node {
                    end: b.ends.first().copied().unwrap_or(NONE),
                    more_ends: (s, ends.len() as u32),
                    plus: b.plus,
                    star: b.star,
                    pieces: (p, pieces.len() as u32),
                    lits: false,
                    rare: b.star != NONE || p != pieces.len() as u32,
                }
            })
            .collect();
        for (parent, _) in self.children.keys() {
            nodes[*parent as usize].lits = true;
        }
        let mut children: Vec<_> = self.children.into_iter().collect();
        children.sort_unstable();
        let cap = (children.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![EMPTY; cap].into_boxed_slice();
        let mut words = Vec::new();
        for ((parent, key), child) in children {
            let buf = padded(&key);
            let sk = segment_key(seed(parent), &buf, 0, key.len());
            let mut i = bucket(sk.hash) & (cap - 1);
            while slots[i].key != EMPTY.key {
                i = (i + 1) & (cap - 1);
            }
            let rest = words.len() as u32;
            if key.len() > 16 {
                words.extend(middle_words(&buf, 0, key.len()));
            }
            slots[i] = Slot {
                first: sk.first,
                last: sk.last,
                key: slot_key(parent, key.len()),
                child,
                rest,
            };
        }
        SegmentTrie {
            nodes,
            ends,
            pieces,
            classes: self.classes,
            rests: self.rests,
            slots,
            mask: cap - 1,
            words,
        }
    }
}

/// The bucket bits of a segment hash: its high half.
#[inline(always)]
fn bucket(h: u64) -> usize {
    (h >> 32) as usize
}

impl SegmentTrie {
    /// The literal child of `node` for the segment `hay.buf[start..end]`.
    #[inline]
    fn child(&self, node: u32, buf: &[u8], start: usize, end: usize) -> u32 {
        let sk = segment_key(seed(node), buf, start, end);
        let key = slot_key(node, end - start);
        let mut i = bucket(sk.hash) & self.mask;
        loop {
            let Some(s) = self.slots.get(i) else {
                return NONE;
            };
            if s.key == key
                && s.first == sk.first
                && s.last == sk.last
                && (end - start <= 16 || self.middle_eq(s, buf, start, end))
            {
                return s.child;
            }
            if s.key == EMPTY.key {
                return NONE;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Whether the middle words of the key of `s` (longer than 16 bytes) are those
    /// of the segment `buf[start..end]`, of the same length.
    #[inline(never)]
    fn middle_eq(&self, s: &Slot, buf: &[u8], start: usize, end: usize) -> bool {
        let words = self.words.get(s.rest as usize..).unwrap_or_default();
        middle_words(buf, start, end).zip(words).all(|(a, &b)| a == b)
    }

    /// Appends the rules that end at `node`, if it is not NONE.
    #[inline(always)]
    fn emit(&self, node: u32, out: &mut Vec<u32>) {
        let Some(n) = self.nodes.get(node as usize) else {
            return;
        };
        if n.end != NONE {
            out.push(n.end);
        }
        if n.more_ends.0 != n.more_ends.1 {
            self.emit_more(n, out);
        }
    }

    #[inline(never)]
    fn emit_more(&self, n: &Node, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.ends[n.more_ends.0 as usize..n.more_ends.1 as usize]);
    }

    /// Appends the rules of every pattern under `root` that matches the path of `hay`
    /// as a whole. `stack` is scratch.
    ///
    /// The common step (a literal child, a `[^/]+` child, or both) stays in this
    /// loop; a node with a `[^/]*` child or pieces takes [`Self::rare_step`].
    pub(super) fn walk(&self, root: u32, hay: &Hay<'_>, out: &mut Vec<u32>, stack: &mut Vec<(u32, u32)>) {
        stack.clear();
        let sl = hay.slashes;
        // The '/' that starts the last segment.
        let last = sl.len().wrapping_sub(2);
        // (node, index in `sl` of the '/' that starts the node's next segment)
        let (mut node, mut k) = (root, hay.first);
        loop {
            let (Some(&a), Some(&b), Some(n)) = (sl.get(k), sl.get(k + 1), self.nodes.get(node as usize))
            else {
                return;
            };
            let (start, end) = (a as usize + 1, b as usize);
            let lit = if n.lits {
                self.child(node, hay.buf, start, end)
            } else {
                NONE
            };
            let plus = if end > start { n.plus } else { NONE };
            let next = if n.rare {
                self.rare_step(n, hay, k, last, lit, plus, out, stack)
            } else if k == last {
                self.emit(lit, out);
                self.emit(plus, out);
                NONE
            } else if lit == NONE {
                plus
            } else {
                if plus != NONE {
                    stack.push((plus, k as u32 + 1));
                }
                lit
            };
            if next != NONE {
                (node, k) = (next, k + 1);
            } else if let Some((n, i)) = stack.pop() {
                (node, k) = (n, i as usize);
            } else {
                return;
            }
        }
    }

    /// The general step at `n` for segment `k`, given its literal and `[^/]+`
    /// children: rules ending at the last segment are emitted, other children but one
    /// (returned) are pushed.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn rare_step(
        &self,
        n: &Node,
        hay: &Hay<'_>,
        k: usize,
        last: usize,
        lit: u32,
        plus: u32,
        out: &mut Vec<u32>,
        stack: &mut Vec<(u32, u32)>,
    ) -> u32 {
        let mut next = NONE;
        if k == last {
            for c in [lit, plus, n.star] {
                self.emit(c, out);
            }
        } else {
            next = lit;
            for c in [plus, n.star] {
                if c == NONE {
                } else if next == NONE {
                    next = c;
                } else {
                    stack.push((c, k as u32 + 1));
                }
            }
        }
        if n.pieces.0 != n.pieces.1 {
            self.pieces(n, hay, k, k == last, &mut next, out, stack);
        }
        next
    }

    /// The class and rest children of `n` for segment `k` (the last one when `last`):
    /// rests and (at the last segment) classes emit their rules, other classes are
    /// followed.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn pieces(
        &self,
        n: &Node,
        hay: &Hay<'_>,
        k: usize,
        last: bool,
        next: &mut u32,
        out: &mut Vec<u32>,
        stack: &mut Vec<(u32, u32)>,
    ) {
        let (start, end) = (hay.slashes[k] as usize + 1, hay.slashes[k + 1] as usize);
        for &(p, c) in self
            .pieces
            .get(n.pieces.0 as usize..n.pieces.1 as usize)
            .unwrap_or_default()
        {
            match p {
                Piece::Class(d) => {
                    if !self.classes[d as usize].matches(&hay.buf[start..end]) {
                    } else if last {
                        self.emit(c, out);
                    } else if *next == NONE {
                        *next = c;
                    } else {
                        stack.push((c, k as u32 + 1));
                    }
                }
                Piece::Rest(r) => {
                    if self.rests[r as usize].matches(hay, start) {
                        self.emit(c, out);
                    }
                }
            }
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.ends.len() * 4
            + self.pieces.len() * std::mem::size_of::<(Piece, u32)>()
            + self.classes.iter().map(|c| c.dfa.memory_usage()).sum::<usize>()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self.words.len() * 8
    }
}
