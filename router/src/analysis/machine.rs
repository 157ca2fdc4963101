//! A rule's path language as a small machine (context path bytes, then a literal,
//! a segment-aware prefix or an anchored dense DFA), and the language of normalized
//! paths.

use super::AnalysisLimits;
use crate::spec::{EncodedSlash, NormalizeOptions};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::HirKind;

/// The regex of normalized paths (see the module docs), built once per analysis.
pub(super) fn universe_pattern(opts: &NormalizeOptions) -> String {
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
pub(super) struct Machine {
    ctx: Box<[u8]>,
    body: Body,
    /// Does the language hold the context path alone (it is not empty and the body
    /// accepts `/`)?
    bare: bool,
    /// Bytes every path of the language starts with.
    pub(super) lcp: Vec<u8>,
    /// Bit `b` set: a byte class starts at byte `b`.
    pub(super) classes: [u64; 4],
}

#[derive(Debug)]
pub(super) enum Body {
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
pub(super) enum St {
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

pub(super) fn mark(classes: &mut [u64; 4], bytes: &[u8]) {
    for &b in bytes.iter().chain(b"/") {
        for v in [b as usize, b as usize + 1] {
            if v < 256 {
                classes[v / 64] |= 1 << (v % 64);
            }
        }
    }
}

impl Machine {
    pub(super) fn literal(ctx: &[u8], lit: &[u8]) -> Machine {
        Machine::new(ctx, Body::Literal(lit.into()), lit.to_vec())
    }

    /// `p` without its trailing `/` (empty for the prefix `/`).
    pub(super) fn prefix(ctx: &[u8], p: &[u8]) -> Machine {
        Machine::new(ctx, Body::Prefix(p.into()), p.to_vec())
    }

    /// `None` when the pattern is invalid; `Some(Err)` when its DFA is over the limit.
    pub(super) fn regex(ctx: &[u8], pattern: &str, limits: &AnalysisLimits) -> Option<Result<Machine, ()>> {
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

    pub(super) fn new(ctx: &[u8], body: Body, body_lcp: Vec<u8>) -> Machine {
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

    pub(super) fn body_start(&self) -> St {
        match &self.body {
            Body::Literal(_) | Body::Prefix(_) => St::Lit(0),
            Body::Dfa { start, .. } => St::Dfa(*start),
        }
    }

    pub(super) fn step(&self, s: St, b: u8) -> St {
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
    pub(super) fn next_byte(&self, s: St) -> Next {
        match (s, &self.body) {
            (St::Dead, _) => Next::End,
            (St::Ctx(i), _) => Next::One(self.ctx.get(i as usize).copied().unwrap_or(b'/')),
            (St::Lit(p), Body::Literal(l)) => l.get(p as usize).map_or(Next::End, |&b| Next::One(b)),
            (St::Lit(p), Body::Prefix(l)) => Next::One(l.get(p as usize).copied().unwrap_or(b'/')),
            _ => Next::Any,
        }
    }

    /// Does the machine accept `path`?
    pub(super) fn matches(&self, path: &[u8]) -> bool {
        let end = path.iter().fold(St::Ctx(0), |s, &b| self.step(s, b));
        self.accepts(end)
    }

    /// Does the machine accept when the path ends in state `s`?
    pub(super) fn accepts(&self, s: St) -> bool {
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
pub(super) enum Next {
    Any,
    One(u8),
    End,
}
