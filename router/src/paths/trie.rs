//! The segment-trie tier: regexes made of whole path segments, each a literal or a
//! `[^/]+` / `[^/]*` piece (`/repos/([^/]+)/([^/]+)/events`, the `{param}` routes of
//! most APIs), matched one segment at a time as matchit does, instead of one byte at a
//! time through a DFA.
//!
//! Every trie node is a path position (a number of segments, under a context path); its
//! literal children live in one hash table for the whole router, keyed by (node,
//! segment bytes), so a step is one hash of the segment and one probe, and the
//! tables of every context share their cache lines. A node has at most one `[^/]+`
//! child and one `[^/]*` child. A path can follow several branches at once (a literal
//! child and a piece child); the walk visits all of them, with an explicit stack in the
//! scratch, since every rule that matches is a candidate.

use super::NONE;
use crate::hash::{bytes_eq, finish, hash_words, scan_segment, segment_end};
use crate::pattern::SegMatch;

#[derive(Clone, Copy, Debug)]
struct Node {
    /// Rules whose pattern ends here: a range of `SegmentTrie::ends`.
    ends: (u32, u32),
    plus: u32,
    star: u32,
    /// The node has literal children (else its segment need not be hashed).
    lits: bool,
}

#[derive(Clone, Copy, Debug)]
struct Edge {
    parent: u32,
    child: u32,
    key: (u32, u32),
}

/// Every context's segment trie, in shared arrays.
#[derive(Clone, Debug, Default)]
pub(super) struct SegmentTrie {
    nodes: Vec<Node>,
    ends: Vec<u32>,
    /// `(finished hash as u32, edge index + 1)`; 0 = empty.
    slots: Box<[(u32, u32)]>,
    mask: usize,
    edges: Vec<Edge>,
    keys: Vec<u8>,
}

/// Builds a [`SegmentTrie`].
#[derive(Default)]
pub(super) struct TrieBuilder {
    /// (plus, star, ends) per node.
    nodes: Vec<(u32, u32, Vec<u32>)>,
    children: std::collections::HashMap<(u32, Box<[u8]>), u32>,
}

#[inline(always)]
fn seed(node: u32) -> u64 {
    u64::from(node)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl TrieBuilder {
    /// A new root (one per context path).
    pub(super) fn root(&mut self) -> u32 {
        self.nodes.push((NONE, NONE, Vec::new()));
        self.nodes.len() as u32 - 1
    }

    pub(super) fn insert(&mut self, root: u32, segs: &[SegMatch], rule: u32) {
        let mut node = root;
        for seg in segs {
            let next = match seg {
                SegMatch::Lit(l) => self.children.get(&(node, l.clone())).copied(),
                SegMatch::Any { nonempty: true } => Some(self.nodes[node as usize].0),
                SegMatch::Any { nonempty: false } => Some(self.nodes[node as usize].1),
            }
            .filter(|&n| n != NONE);
            node = match next {
                Some(n) => n,
                None => {
                    self.nodes.push((NONE, NONE, Vec::new()));
                    let n = self.nodes.len() as u32 - 1;
                    match seg {
                        SegMatch::Lit(l) => {
                            self.children.insert((node, l.clone()), n);
                        }
                        SegMatch::Any { nonempty: true } => self.nodes[node as usize].0 = n,
                        SegMatch::Any { nonempty: false } => self.nodes[node as usize].1 = n,
                    }
                    n
                }
            };
        }
        self.nodes[node as usize].2.push(rule);
    }

    pub(super) fn finish(self) -> SegmentTrie {
        let mut ends = Vec::new();
        let mut nodes: Vec<Node> = self
            .nodes
            .into_iter()
            .map(|(plus, star, rules)| {
                let s = ends.len() as u32;
                ends.extend(rules);
                Node {
                    ends: (s, ends.len() as u32),
                    plus,
                    star,
                    lits: false,
                }
            })
            .collect();
        for (parent, _) in self.children.keys() {
            nodes[*parent as usize].lits = true;
        }
        let mut children: Vec<_> = self.children.into_iter().collect();
        children.sort_unstable();
        let cap = (children.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![(0u32, 0u32); cap].into_boxed_slice();
        let mut edges = Vec::with_capacity(children.len());
        let mut keys = Vec::new();
        for ((parent, key), child) in children {
            let h = finish(hash_words(seed(parent), &key));
            let mut i = (h as usize) & (cap - 1);
            while slots[i].1 != 0 {
                i = (i + 1) & (cap - 1);
            }
            let k = keys.len() as u32;
            keys.extend_from_slice(&key);
            edges.push(Edge {
                parent,
                child,
                key: (k, keys.len() as u32),
            });
            slots[i] = (h as u32, edges.len() as u32);
        }
        SegmentTrie {
            nodes,
            ends,
            slots,
            mask: cap - 1,
            edges,
            keys,
        }
    }
}

impl SegmentTrie {
    /// The literal child of `node` for segment `seg`, whose unfinished hash from
    /// `seed(node)` is `raw`.
    #[inline]
    fn child(&self, node: u32, seg: &[u8], raw: u64) -> u32 {
        let h = finish(raw);
        let mut i = (h as usize) & self.mask;
        loop {
            let (sh, idx) = self.slots[i];
            if idx == 0 {
                return NONE;
            }
            if sh == h as u32 {
                let e = &self.edges[idx as usize - 1];
                if e.parent == node && bytes_eq(&self.keys[e.key.0 as usize..e.key.1 as usize], seg) {
                    return e.child;
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Appends the rules of every pattern under `root` that matches `hay` (a path
    /// starting with `/`) as a whole. `stack` is scratch.
    pub(super) fn walk(&self, root: u32, hay: &[u8], out: &mut Vec<u32>, stack: &mut Vec<(u32, u32)>) {
        stack.clear();
        // (node, index of the '/' that starts the node's next segment)
        let (mut node, mut at) = (root, 0usize);
        loop {
            let start = at + 1;
            let n = self.nodes[node as usize];
            let (end, lit) = if n.lits {
                let (end, raw) = scan_segment(hay, start, seed(node));
                (end, self.child(node, &hay[start..end], raw))
            } else {
                (segment_end(hay, start), NONE)
            };
            let plus = if end > start { n.plus } else { NONE };
            let star = n.star;
            let mut next = NONE;
            if end == hay.len() {
                for c in [lit, plus, star] {
                    if c != NONE {
                        let (s, e) = self.nodes[c as usize].ends;
                        out.extend_from_slice(&self.ends[s as usize..e as usize]);
                    }
                }
            } else {
                next = lit;
                for c in [plus, star] {
                    if c == NONE {
                    } else if next == NONE {
                        next = c;
                    } else {
                        stack.push((c, end as u32));
                    }
                }
            }
            if next != NONE {
                (node, at) = (next, end);
            } else if let Some((n, a)) = stack.pop() {
                (node, at) = (n, a as usize);
            } else {
                return;
            }
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.ends.len() * 4
            + self.slots.len() * 8
            + self.edges.len() * std::mem::size_of::<Edge>()
            + self.keys.len()
    }
}
