//! One compiled rule: the matchers checked after the path index named it a candidate,
//! and how its captures are read.

use crate::paths::Hay;
use crate::pattern::SegPart;
use crate::predicate::Predicate;
use crate::template::Template;
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::{meta, Anchored, Input};
use std::sync::OnceLock;

/// A host matcher: exact, or a `*.suffix` wildcard (stored as `.suffix`).
#[derive(Clone, Debug)]
pub(crate) enum HostPattern {
    Exact(Box<[u8]>),
    Suffix(Box<[u8]>),
}

impl HostPattern {
    pub(crate) fn parse(s: &str) -> Option<HostPattern> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_suffix('.').unwrap_or(&s);
        let valid = |h: &str| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
                })
        };
        match s.strip_prefix("*.") {
            Some(rest) if valid(rest) => Some(HostPattern::Suffix(format!(".{rest}").into_bytes().into())),
            Some(_) => None,
            None if valid(s) => Some(HostPattern::Exact(s.as_bytes().into())),
            None => None,
        }
    }

    /// `host` is lowercased, without port or trailing dot.
    #[inline]
    pub(crate) fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(h) => host == &**h,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s),
        }
    }
}

/// Lowercases `raw` (a Host header value or an absolute-form authority) into `out`,
/// dropping the port and a trailing dot.
pub(crate) fn normalize_host(raw: &[u8], out: &mut Vec<u8>) {
    let raw = raw.trim_ascii();
    let host = if raw.first() == Some(&b'[') {
        memchr::memchr(b']', raw).map_or(raw, |p| &raw[..=p])
    } else {
        memchr::memchr(b':', raw).map_or(raw, |p| &raw[..p])
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    out.clear();
    out.extend(host.iter().map(u8::to_ascii_lowercase));
}

const STANDARD_METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT",
];

/// The bit of a standard method, or 0 for an extension method.
#[inline]
pub(crate) fn method_bit(m: &[u8]) -> u16 {
    STANDARD_METHODS
        .iter()
        .position(|s| *s == m)
        .map_or(0, |i| 1 << i)
}

/// A set of methods. `any` when the rule names none.
#[derive(Clone, Debug)]
pub(crate) struct MethodSet {
    pub any: bool,
    pub mask: u16,
    pub other: Box<[Box<[u8]>]>,
}

impl MethodSet {
    #[inline]
    pub(crate) fn contains(&self, bit: u16, method: &[u8]) -> bool {
        self.any
            || (bit != 0 && self.mask & bit != 0)
            || (bit == 0 && self.other.iter().any(|o| **o == *method))
    }
}

/// How the winner's captures are read.
#[derive(Clone, Debug)]
pub(crate) enum CaptureKind {
    /// Exact and prefix paths, and regexes without groups.
    None,
    /// Literals and `[^/]+` pieces: split at `/`.
    Segments(Box<[SegPart]>),
    /// Whole-segment patterns ([`crate::pattern::SegmentShape`]): the segment of
    /// each group, by group (`u16::MAX`: none); the group of segment `rest` runs to
    /// the end of the path; `reach` is one past the last segment that has a group.
    BySegment { segs: Box<[u16]>, rest: u16, reach: u16 },
    /// A regex; its capture engine is built on first use (one-pass DFA when the
    /// pattern allows, which the meta regex picks for anchored searches).
    Regex {
        pattern: Box<str>,
        re: OnceLock<Option<meta::Regex>>,
    },
}

/// What the match loop reads of every candidate: a small copy of the rule's
/// environment and method matchers, and whether anything else must be checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hot {
    pub env_mask: u64,
    /// The standard methods accepted ([`ANY_METHOD`] when the rule names none).
    pub methods: u16,
    /// The rule has hosts, predicates or extension methods: run the full check.
    pub slow: bool,
}

/// [`Hot::methods`] of a rule that accepts every method.
pub(crate) const ANY_METHOD: u16 = u16::MAX;

#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub name: Box<str>,
    pub group: Box<str>,
    pub env_mask: u64,
    pub methods: MethodSet,
    pub hosts: Box<[HostPattern]>,
    /// Length of the context path stripped before the path matcher.
    pub ctx_len: usize,
    pub groups: u16,
    pub names: Box<[(Box<str>, u16)]>,
    pub capture: CaptureKind,
    pub predicates: Box<[Predicate]>,
    pub target: Option<Template>,
    /// Where `{#request.pathRest}` starts in the normalized path (`usize::MAX`
    /// for a regex rule, which cannot use it).
    pub rest_from: usize,
}

impl Rule {
    pub(crate) fn hot(&self) -> Hot {
        Hot {
            env_mask: self.env_mask,
            methods: if self.methods.any {
                ANY_METHOD
            } else {
                self.methods.mask
            },
            slow: !self.hosts.is_empty() || !self.predicates.is_empty() || !self.methods.other.is_empty(),
        }
    }
}

/// A capture span (start, end) into the scratch path; `UNSET` when the group did not
/// participate.
pub(crate) const UNSET: (u32, u32) = (u32::MAX, u32::MAX);

impl Rule {
    /// Reads the captures of a rule whose groups are whole segments (or that has
    /// none) into `caps`, from `hay`, the scratch path as the index read it: `None`
    /// for a rule of another kind ([`Self::other_captures`]), else whether the path
    /// has the segments the rule's pattern matched.
    #[inline(always)]
    pub(crate) fn segment_captures(&self, hay: Hay<'_>, caps: &mut Vec<(u32, u32)>) -> Option<bool> {
        caps.clear();
        let (segs, rest, reach) = match &self.capture {
            CaptureKind::BySegment { segs, rest, reach } => (segs, *rest, *reach),
            CaptureKind::None => {
                caps.resize(self.groups as usize, UNSET);
                return Some(true);
            }
            _ => return None,
        };
        let base = self.ctx_len;
        if base == hay.len {
            // The rule sees "/": one empty segment, just past the path.
            let at = (base + 1) as u32;
            caps.extend(segs.iter().map(|_| (at, at)));
            return Some(true);
        }
        // Segment `seg` of the stripped path starts after `sl[k0 + seg]`.
        let sl = hay.slashes;
        let k0 = if base == 0 {
            0
        } else {
            match sl.binary_search(&(base as u32)) {
                Ok(k) => k,
                Err(_) => return Some(false),
            }
        };
        if k0 + usize::from(reach) >= sl.len() {
            return Some(false);
        }
        let len = hay.len as u32;
        // In group order, one bounds check each (which the check above makes pass).
        caps.extend(segs.iter().map(|&seg| match sl.get(k0 + usize::from(seg)..) {
            Some(&[at, next, ..]) if seg != u16::MAX => (at + 1, if seg == rest { len } else { next }),
            _ => UNSET,
        }));
        Some(true)
    }

    /// The captures of a rule split at `/` or matched by a regex: of `path[base..]`
    /// (the scratch path, with the rule's context path of length `base` stripped).
    /// Returns false if the regex unexpectedly does not match.
    #[inline(never)]
    pub(crate) fn other_captures(
        &self,
        path: &[u8],
        base: usize,
        caps: &mut Vec<(u32, u32)>,
        slots: &mut Vec<Option<NonMaxUsize>>,
    ) -> bool {
        let stripped = &path[base..];
        caps.resize(self.groups as usize, UNSET);
        match &self.capture {
            CaptureKind::None | CaptureKind::BySegment { .. } => true,
            CaptureKind::Segments(parts) => {
                let mut at = 0;
                for part in parts.iter() {
                    match part {
                        SegPart::Lit(l) => at += l.len(),
                        SegPart::Segment { group, .. } => {
                            let end = crate::hash::segment_end(stripped, at);
                            if let Some(g) = group {
                                caps[*g as usize] = ((base + at) as u32, (base + end) as u32);
                            }
                            at = end;
                        }
                    }
                }
                true
            }
            CaptureKind::Regex { pattern, re } => {
                let re = re.get_or_init(|| {
                    meta::Regex::builder()
                        .syntax(crate::pattern::syntax_config())
                        .build(&format!("(?:{pattern})$"))
                        .ok()
                });
                let Some(re) = re else { return false };
                slots.clear();
                slots.resize(
                    re.group_info().implicit_slot_len() + 2 * self.groups as usize,
                    None,
                );
                let input = Input::new(stripped).anchored(Anchored::Yes);
                if re.search_slots(&input, slots).is_none() {
                    return false;
                }
                for (g, cap) in caps.iter_mut().enumerate() {
                    if let (Some(s), Some(e)) = (slots[2 * g + 2], slots[2 * g + 3]) {
                        *cap = ((base + s.get()) as u32, (base + e.get()) as u32);
                    }
                }
                true
            }
        }
    }
}
