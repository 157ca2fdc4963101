//! Breadth-first product walks over machines: shortest witnesses of overlap and of
//! paths left uncovered.

use super::machine::{Machine, Next, St};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// The outcome of a product walk.
#[derive(Debug)]
pub(super) enum Walk {
    /// A shortest path.
    Found(Vec<u8>),
    /// No path exists.
    Empty,
    OverBudget,
}

/// Up to this many machines, a walk computes its alphabet once rather than per state.
pub(super) const SHARED_ALPHABET: usize = 8;

/// Breadth-first search for a shortest path every `pos` machine accepts and no `neg`
/// machine does.
///
/// A product state lists the machines that are not dead, with their states, so a walk
/// over many `neg` machines (a shadowing test against hundreds of earlier rules) only
/// pays for the few that are still alive, and only for their byte classes.
pub(super) fn search(pos: &[&Machine], neg: &[&Machine], max_states: usize) -> Walk {
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
pub(super) struct FastHasher(u64);

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

pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
pub(super) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// One byte per class of the machines' combined alphabet, in the order they are tried.
pub(super) fn alphabet<'m>(machines: impl Iterator<Item = &'m Machine>) -> Vec<u8> {
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
pub(super) fn witness(parent: &[(u32, u8)], mut node: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    while parent[node].0 != u32::MAX {
        bytes.push(parent[node].1);
        node = parent[node].0 as usize;
    }
    bytes.reverse();
    bytes
}

/// Visible ASCII as is, other bytes as `\xNN`.
pub(super) fn printable(path: &[u8]) -> String {
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
