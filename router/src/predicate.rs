//! Query and header predicates, evaluated from a perfect-hashed slot table.
//!
//! At compile time every header name and query key that any rule refers to gets a
//! *slot*, and the names are placed in two collision-free tables ([`PerfectHash`]):
//! header names case-insensitively, query keys exactly (after percent-decoding). Per
//! request, one pass over the headers and one over the query string record, for each
//! slot, the values it occurred with (in a reused arena, so nothing is allocated once
//! the scratch has grown). Predicates then read their slot. The pass runs only when the
//! first candidate rule with a predicate is checked.

use crate::hash::PerfectHash;
use crate::normalize::decode_query_component;
use crate::spec::{PredicateOp, PredicateSpec, Source};
use regex_automata::{meta, Anchored, Input};

const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Equals(Box<[u8]>),
    OneOf(Box<[Box<[u8]>]>),
    Prefix(Box<[u8]>),
    Regex(meta::Regex),
    Present,
    Absent,
}

/// One compiled predicate.
#[derive(Clone, Debug)]
pub(crate) struct Predicate {
    slot: u32,
    op: Op,
}

/// The slot tables for a whole router.
#[derive(Clone, Debug)]
pub(crate) struct SlotTable {
    headers: PerfectHash,
    query: PerfectHash,
}

/// Builds predicates while collecting the slot keys.
#[derive(Default)]
pub(crate) struct SlotTableBuilder {
    headers: Vec<Vec<u8>>,
    query: Vec<Vec<u8>>,
}

impl SlotTableBuilder {
    fn slot(&mut self, source: Source, name: &str) -> u32 {
        let (keys, key) = match source {
            Source::Header => (&mut self.headers, name.to_ascii_lowercase().into_bytes()),
            Source::Query => (&mut self.query, name.as_bytes().to_vec()),
        };
        let i = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        // Header slots first, query slots offset by a tag bit; resolved in `finish`.
        match source {
            Source::Header => i as u32,
            Source::Query => i as u32 | 1 << 31,
        }
    }

    /// Compiles one predicate. Errors are (offset in the regex, message).
    pub(crate) fn predicate(
        &mut self,
        spec: &PredicateSpec,
        max_regex_bytes: usize,
    ) -> Result<Predicate, (usize, String)> {
        let op = match &spec.op {
            PredicateOp::Equals(v) => Op::Equals(v.as_bytes().into()),
            PredicateOp::OneOf(vs) => Op::OneOf(vs.iter().map(|v| v.as_bytes().into()).collect()),
            PredicateOp::Prefix(v) => Op::Prefix(v.as_bytes().into()),
            PredicateOp::Regex(r) => {
                if let Err(e) = crate::pattern::analyze(r) {
                    return Err((e.offset, e.message));
                }
                let re = meta::Regex::builder()
                    .syntax(crate::pattern::syntax_config())
                    .configure(meta::Config::new().nfa_size_limit(Some(max_regex_bytes)))
                    .build(&format!("(?:{r})$"))
                    .map_err(|e| (0, e.to_string()))?;
                Op::Regex(re)
            }
            PredicateOp::Present => Op::Present,
            PredicateOp::Absent => Op::Absent,
        };
        if spec.name.is_empty() {
            return Err((0, "a predicate needs a non-empty name".into()));
        }
        Ok(Predicate {
            slot: self.slot(spec.source, &spec.name),
            op,
        })
    }

    /// Freezes the tables and rewrites query slots to follow the header slots.
    pub(crate) fn finish(self, rules: &mut [Box<[Predicate]>]) -> SlotTable {
        let nh = self.headers.len() as u32;
        for p in rules.iter_mut().flat_map(|r| r.iter_mut()) {
            if p.slot & 1 << 31 != 0 {
                p.slot = (p.slot & !(1 << 31)) + nh;
            }
        }
        SlotTable {
            headers: PerfectHash::build(self.headers, true),
            query: PerfectHash::build(self.query, false),
        }
    }
}

/// Per-request predicate state, reused across requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct SlotValues {
    filled: bool,
    /// Slot → first occurrence index (NONE = no occurrence).
    head: Vec<u32>,
    /// Occurrences: value span in `arena`, next occurrence of the same slot.
    occ: Vec<(u32, u32, u32)>,
    arena: Vec<u8>,
}

impl SlotValues {
    pub(crate) fn reset(&mut self) {
        self.filled = false;
    }

    pub(crate) fn is_filled(&self) -> bool {
        self.filled
    }

    fn record(&mut self, slot: usize, start: usize) {
        let end = self.arena.len();
        let next = self.head[slot];
        self.occ.push((start as u32, end as u32, next));
        self.head[slot] = (self.occ.len() - 1) as u32;
    }

    /// The one pass over headers and query that fills the slots.
    pub(crate) fn fill<'h>(
        &mut self,
        table: &SlotTable,
        query: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        self.filled = true;
        let nh = table.headers.len();
        self.head.clear();
        self.head.resize(nh + table.query.len(), NONE);
        self.occ.clear();
        self.arena.clear();
        if nh > 0 {
            for (name, value) in headers {
                if let Some(i) = table.headers.find(name) {
                    let start = self.arena.len();
                    self.arena.extend_from_slice(value);
                    self.record(i, start);
                }
            }
        }
        if table.query.len() > 0 {
            for pair in query.unwrap_or_default().split(|&b| b == b'&') {
                if pair.is_empty() {
                    continue;
                }
                let (k, v) = match memchr::memchr(b'=', pair) {
                    Some(p) => (&pair[..p], &pair[p + 1..]),
                    None => (pair, &b""[..]),
                };
                let start = self.arena.len();
                decode_query_component(k, &mut self.arena);
                let found = table.query.find(&self.arena[start..]);
                self.arena.truncate(start);
                if let Some(i) = found {
                    decode_query_component(v, &mut self.arena);
                    self.record(nh + i, start);
                }
            }
        }
    }

    fn values(&self, slot: u32) -> impl Iterator<Item = &[u8]> {
        let mut i = self.head[slot as usize];
        std::iter::from_fn(move || {
            if i == NONE {
                return None;
            }
            let (s, e, next) = self.occ[i as usize];
            i = next;
            Some(&self.arena[s as usize..e as usize])
        })
    }
}

impl Predicate {
    /// Whether the predicate holds. `values` must be filled.
    pub(crate) fn holds(&self, values: &SlotValues) -> bool {
        let mut vals = values.values(self.slot);
        match &self.op {
            Op::Present => vals.next().is_some(),
            Op::Absent => vals.next().is_none(),
            Op::Equals(x) => vals.any(|v| v == &**x),
            Op::OneOf(xs) => vals.any(|v| xs.iter().any(|x| v == &**x)),
            Op::Prefix(x) => vals.any(|v| v.starts_with(x)),
            Op::Regex(re) => vals.any(|v| re.is_match(Input::new(v).anchored(Anchored::Yes))),
        }
    }

    /// `header 'x-canary'` / `query 'region'`, for explain output.
    pub(crate) fn describe(&self, table: &SlotTable) -> String {
        let nh = table.headers.len();
        let s = self.slot as usize;
        let (what, name) = if s < nh {
            ("header", table.headers.key(s))
        } else {
            ("query", table.query.key(s - nh))
        };
        let op = match &self.op {
            Op::Equals(_) => "equals",
            Op::OneOf(_) => "one_of",
            Op::Prefix(_) => "prefix",
            Op::Regex(_) => "regex",
            Op::Present => "present",
            Op::Absent => "absent",
        };
        format!("{what} '{}' {op}", String::from_utf8_lossy(name))
    }
}
