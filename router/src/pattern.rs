//! Compile-time analysis of one rule's path regex.
//!
//! Every path regex is parsed once with `regex-syntax` (bytes, ASCII classes: paths
//! are bytes and `[^/]` should not expand into UTF-8 automata) to learn
//!
//! - its capture groups (count and names), so templates are checked at compile time;
//! - its *shape*: a plain literal (routed through the exact-path table), a
//!   *segment pattern* — literals and `[^/]+` pieces, the `{param}` routes of most APIs —
//!   whose captures can be read off by splitting at `/` without running a regex, or a
//!   general regex whose captures need a regex engine;
//! - the literal first path segments it can start with, which pick the automaton
//!   partition it is compiled into (see [`crate::paths`]).

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Class, Hir, HirKind};

/// The syntax every path and predicate regex is parsed with.
pub(crate) fn syntax_config() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
}

/// A regex parse error with the byte offset inside the pattern.
#[derive(Clone, Debug)]
pub(crate) struct PatternError {
    pub offset: usize,
    pub message: String,
}

/// One piece of a segment pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SegPart {
    /// These exact bytes.
    Lit(Box<[u8]>),
    /// `[^/]+` (`nonempty`) or `[^/]*`: the bytes up to the next `/` or the end.
    /// `group` is `Some(i)` when it is capture group `i` (0-based, as in `{#group[i]}`).
    Segment { group: Option<u16>, nonempty: bool },
}

/// One path segment of a pattern made of whole segments (see [`segment_shape`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SegMatch {
    /// The segment is exactly these bytes (no `/`; may be empty).
    Lit(Box<[u8]>),
    /// Any segment (`[^/]*`), or any non-empty one (`[^/]+`) when `nonempty`.
    Any { nonempty: bool },
    /// A regex that cannot match `/` (`v[0-9]+`), matched against the whole segment.
    /// Capture-free: a group around the whole segment is recorded separately.
    Class(Box<Hir>),
    /// Last: the segment and everything after it (`(.*)`), every byte in `set`, at
    /// least one when `nonempty`.
    Rest { set: ByteSet, nonempty: bool },
}

/// A set of bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    fn of(class: &Class) -> ByteSet {
        let mut bits = [0u64; 4];
        let mut add = |lo: u32, hi: u32| {
            for b in lo..=hi.min(255) {
                bits[b as usize / 64] |= 1 << (b % 64);
            }
        };
        match class {
            Class::Bytes(c) => c
                .ranges()
                .iter()
                .for_each(|r| add(r.start().into(), r.end().into())),
            Class::Unicode(c) => c
                .ranges()
                .iter()
                .for_each(|r| add(r.start().into(), r.end().into())),
        }
        ByteSet(bits)
    }

    #[inline]
    pub(crate) fn contains(&self, b: u8) -> bool {
        self.0[b as usize / 64] & (1 << (b % 64)) != 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.0 == [u64::MAX; 4]
    }

    /// Every byte but `b`.
    pub(crate) fn is_all_but(&self, b: u8) -> bool {
        let mut all = [u64::MAX; 4];
        all[b as usize / 64] &= !(1 << (b % 64));
        self.0 == all
    }
}

/// A pattern made of whole segments: each a literal, `[^/]+`/`[^/]*`, a regex that
/// cannot match `/`, or, last, a rest (`(.*)`). Its capture groups each wrap a whole
/// segment (or the rest), so they are read off by segment index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentShape {
    pub segs: Vec<SegMatch>,
    /// (segment index, 0-based group).
    pub caps: Vec<(u16, u16)>,
}

#[derive(Clone, Debug)]
pub(crate) enum Shape {
    /// Matches exactly these bytes; no groups.
    Literal(Vec<u8>),
    /// Literals and segment pieces; captures by splitting.
    Segments(Vec<SegPart>),
    /// Anything else.
    General,
}

#[derive(Clone, Debug)]
pub(crate) struct PatternInfo {
    /// Number of explicit capture groups.
    pub groups: usize,
    /// Named groups: (name, 0-based group index).
    pub names: Vec<(String, u16)>,
    pub shape: Shape,
    /// Literal first segments every match starts with (`/repos/...` → `repos`), or
    /// `None` when the first segment is not a literal.
    pub first_segments: Option<Vec<Vec<u8>>>,
    /// The pattern as whole segments, when it is one.
    pub segments: Option<SegmentShape>,
}

pub(crate) fn analyze(pattern: &str) -> Result<PatternInfo, PatternError> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| {
            let (offset, message) = match &e {
                regex_syntax::Error::Parse(p) => (p.span().start.offset, p.kind().to_string()),
                regex_syntax::Error::Translate(t) => (t.span().start.offset, t.kind().to_string()),
                _ => (0, e.to_string()),
            };
            PatternError { offset, message }
        })?;
    let mut names = Vec::new();
    let mut groups = 0;
    collect_groups(&hir, &mut groups, &mut names);
    let shape = shape_of(&hir);
    let first_segments = first_segments(&hir);
    let segments = segment_shape(&hir);
    Ok(PatternInfo {
        groups,
        names,
        shape,
        first_segments,
        segments,
    })
}

fn collect_groups(hir: &Hir, groups: &mut usize, names: &mut Vec<(String, u16)>) {
    match hir.kind() {
        HirKind::Capture(c) => {
            *groups = (*groups).max(c.index as usize);
            if let Some(name) = &c.name {
                names.push((name.to_string(), c.index as u16 - 1));
            }
            collect_groups(&c.sub, groups, names);
        }
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            subs.iter().for_each(|s| collect_groups(s, groups, names))
        }
        HirKind::Repetition(r) => collect_groups(&r.sub, groups, names),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => {}
    }
}

/// `Some(nonempty)` for `[^/]+` and `[^/]*` (any byte but `/`).
fn segment_repeat(hir: &Hir) -> Option<bool> {
    let HirKind::Repetition(r) = hir.kind() else {
        return None;
    };
    if r.min > 1 || r.max.is_some() || !r.greedy {
        return None;
    }
    let HirKind::Class(Class::Bytes(c)) = r.sub.kind() else {
        return None;
    };
    let ranges = c.ranges();
    let any_but_slash = ranges.len() == 2
        && ranges[0].start() == 0
        && ranges[0].end() == b'/' - 1
        && ranges[1].start() == b'/' + 1
        && ranges[1].end() == 255;
    any_but_slash.then_some(r.min == 1)
}

fn shape_of(hir: &Hir) -> Shape {
    let subs: &[Hir] = match hir.kind() {
        HirKind::Literal(l) => return Shape::Literal(l.0.to_vec()),
        HirKind::Concat(subs) => subs,
        HirKind::Capture(_) | HirKind::Repetition(_) => std::slice::from_ref(hir),
        _ => return Shape::General,
    };
    let mut parts: Vec<SegPart> = Vec::with_capacity(subs.len());
    for sub in subs {
        match sub.kind() {
            HirKind::Literal(l) => parts.push(SegPart::Lit(l.0.clone())),
            HirKind::Capture(c) => match segment_repeat(&c.sub) {
                Some(nonempty) => parts.push(SegPart::Segment {
                    group: Some(c.index as u16 - 1),
                    nonempty,
                }),
                None => return Shape::General,
            },
            _ => match segment_repeat(sub) {
                Some(nonempty) => parts.push(SegPart::Segment {
                    group: None,
                    nonempty,
                }),
                None => return Shape::General,
            },
        }
    }
    // A segment piece takes everything up to the next '/', so it must be followed by
    // the end or by a literal that starts with '/'.
    for w in parts.windows(2) {
        if let [SegPart::Segment { .. }, next] = w {
            match next {
                SegPart::Lit(l) if l.first() == Some(&b'/') => {}
                _ => return Shape::General,
            }
        }
    }
    if parts.iter().all(|p| matches!(p, SegPart::Lit(_))) {
        let lit = parts
            .iter()
            .flat_map(|p| match p {
                SegPart::Lit(l) => l.to_vec(),
                SegPart::Segment { .. } => Vec::new(),
            })
            .collect();
        return Shape::Literal(lit);
    }
    Shape::Segments(parts)
}

/// One element of a pattern laid out for splitting at `/`.
enum Item<'a> {
    Byte(u8),
    Piece(&'a Hir),
}

fn has_captures(hir: &Hir) -> bool {
    hir.properties().explicit_captures_len() > 0
}

/// True when no string `hir` matches contains `/` and it has no look-around.
fn slash_free(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty => true,
        HirKind::Literal(l) => !l.0.contains(&b'/'),
        HirKind::Class(c) => !ByteSet::of(c).contains(b'/'),
        HirKind::Look(_) => false,
        HirKind::Repetition(r) => slash_free(&r.sub),
        HirKind::Capture(c) => slash_free(&c.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().all(slash_free),
    }
}

/// `Some((set, nonempty))` for `C*` / `C+` (greedy or not) over a byte class.
fn rest_repeat(hir: &Hir) -> Option<(ByteSet, bool)> {
    let HirKind::Repetition(r) = hir.kind() else {
        return None;
    };
    let HirKind::Class(c) = r.sub.kind() else {
        return None;
    };
    (r.min <= 1 && r.max.is_none()).then(|| (ByteSet::of(c), r.min == 1))
}

/// One segment's items (between two `/`, or after the last): its matcher and group.
fn segment(items: &[Item<'_>], last: bool) -> Option<(SegMatch, Option<u16>)> {
    if let [Item::Piece(p)] = items {
        let (inner, group) = match p.kind() {
            HirKind::Capture(c) if !has_captures(&c.sub) => (&*c.sub, Some(c.index as u16 - 1)),
            _ if !has_captures(p) => (*p, None),
            _ => return None,
        };
        return if let Some(nonempty) = segment_repeat(inner) {
            Some((SegMatch::Any { nonempty }, group))
        } else if slash_free(inner) {
            Some((SegMatch::Class(Box::new(inner.clone())), group))
        } else if last {
            rest_repeat(inner).map(|(set, nonempty)| (SegMatch::Rest { set, nonempty }, group))
        } else {
            None
        };
    }
    let mut lit = Vec::new();
    let mut hirs = Vec::new();
    for item in items {
        match item {
            Item::Byte(b) => lit.push(*b),
            Item::Piece(p) => {
                if has_captures(p) || !slash_free(p) {
                    return None;
                }
                if !lit.is_empty() {
                    hirs.push(Hir::literal(std::mem::take(&mut lit)));
                }
                hirs.push((*p).clone());
            }
        }
    }
    if hirs.is_empty() {
        return Some((SegMatch::Lit(lit.into()), None));
    }
    if !lit.is_empty() {
        hirs.push(Hir::literal(lit));
    }
    Some((SegMatch::Class(Box::new(Hir::concat(hirs))), None))
}

/// The pattern as whole path segments (`/repos/([^/]+)/v[0-9]+/(.*)`), or `None`
/// (`/v([0-9]+)`: a group inside a segment; `/a(/.*)?`; no leading `/`). Such patterns
/// are matched segment by segment ([`crate::paths`]'s trie tier).
pub(crate) fn segment_shape(hir: &Hir) -> Option<SegmentShape> {
    let subs: &[Hir] = match hir.kind() {
        HirKind::Concat(subs) => subs,
        _ => std::slice::from_ref(hir),
    };
    let mut items = Vec::new();
    for sub in subs {
        match sub.kind() {
            HirKind::Literal(l) => items.extend(l.0.iter().map(|&b| Item::Byte(b))),
            _ => items.push(Item::Piece(sub)),
        }
    }
    let Some(Item::Byte(b'/')) = items.first() else {
        return None;
    };
    let parts: Vec<&[Item<'_>]> = items[1..].split(|i| matches!(i, Item::Byte(b'/'))).collect();
    let mut shape = SegmentShape {
        segs: Vec::with_capacity(parts.len()),
        caps: Vec::new(),
    };
    for (k, part) in parts.iter().enumerate() {
        let (m, group) = segment(part, k + 1 == parts.len())?;
        if let Some(g) = group {
            shape.caps.push((k as u16, g));
        }
        shape.segs.push(m);
    }
    Some(shape)
}

/// The literal first segments of every string `hir` can match, when they are finite
/// and few.
fn first_segments(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    const MAX_KEYS: usize = 32;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_KEYS {
        return None;
    }
    let mut keys = Vec::with_capacity(lits.len());
    for lit in lits {
        let bytes = lit.as_bytes();
        if bytes.first() != Some(&b'/') {
            return None;
        }
        let key = match memchr::memchr(b'/', &bytes[1..]) {
            Some(p) => &bytes[1..=p],
            None if lit.is_exact() => &bytes[1..],
            None => return None,
        };
        keys.push(key.to_vec());
    }
    keys.sort();
    keys.dedup();
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_names_are_counted_gravitee_style() {
        let p = analyze("/api/(?<version>v[0-9]+)/(x|y)/(.*)").unwrap();
        assert_eq!(p.groups, 3);
        assert_eq!(p.names, vec![("version".to_string(), 0)]);
    }

    #[test]
    fn parse_errors_carry_the_offset() {
        let e = analyze("/a/(b").unwrap_err();
        assert_eq!(e.offset, 3);
        let e = analyze("/a/[z-a]").unwrap_err();
        assert!(e.offset >= 3, "{e:?}");
    }

    #[test]
    fn shapes() {
        assert!(matches!(analyze("/events").unwrap().shape, Shape::Literal(l) if l == b"/events"));
        let Shape::Segments(parts) = analyze("/repos/([^/]+)/(?<r>[^/]+)/events").unwrap().shape else {
            panic!("not segments")
        };
        assert_eq!(
            parts,
            vec![
                SegPart::Lit(b"/repos/".to_vec().into()),
                SegPart::Segment {
                    group: Some(0),
                    nonempty: true
                },
                SegPart::Lit(b"/".to_vec().into()),
                SegPart::Segment {
                    group: Some(1),
                    nonempty: true
                },
                SegPart::Lit(b"/events".to_vec().into()),
            ]
        );
        assert!(matches!(analyze("/a/([^/]+)x").unwrap().shape, Shape::General));
        assert!(matches!(analyze("/a/(.*)").unwrap().shape, Shape::General));
        assert!(matches!(analyze("/a/([0-9]+)").unwrap().shape, Shape::General));
    }

    fn shape_of_pattern(p: &str) -> Option<SegmentShape> {
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(p)
            .unwrap();
        segment_shape(&hir)
    }

    #[test]
    fn whole_segment_patterns_split_at_slashes() {
        let f = |p: &str| shape_of_pattern(p).map(|s| s.segs);
        let lit = |s: &str| SegMatch::Lit(s.as_bytes().into());
        let plus = SegMatch::Any { nonempty: true };
        assert_eq!(
            f("/repos/([^/]+)/(?<r>[^/]*)/events/"),
            Some(vec![
                lit("repos"),
                plus.clone(),
                SegMatch::Any { nonempty: false },
                lit("events"),
                lit("")
            ])
        );
        assert_eq!(f("/([^/]+)"), Some(vec![plus.clone()]));
        assert_eq!(f("a/([^/]+)"), None);
        assert_eq!(f("([^/]+)/a"), None);
        // A group inside a segment, a group that may not participate, a '/'-matching
        // piece that is not last, look-around: not whole segments.
        assert_eq!(f("/a/x([^/]+)"), None);
        assert_eq!(f("/a/(a)?(b)?"), None);
        assert_eq!(f("/(.*)/a"), None);
        assert_eq!(f("/a(/.*)?"), None);
        assert_eq!(f("/a/\\bx"), None);
        assert_eq!(f("/v1/ecome.*"), None);
    }

    #[test]
    fn class_and_rest_segments_with_their_groups() {
        let s = shape_of_pattern("/svc1/v[0-9]+/res2/([0-9]+)/(.*)").unwrap();
        assert_eq!(s.caps, vec![(3, 0), (4, 1)]);
        assert!(matches!(&s.segs[1], SegMatch::Class(_)));
        assert!(matches!(&s.segs[3], SegMatch::Class(_)));
        let SegMatch::Rest { set, nonempty } = &s.segs[4] else {
            panic!("{:?}", s.segs[4])
        };
        assert!(set.is_all_but(b'\n') && !nonempty);
        let s = shape_of_pattern("/(?<v>a|b)/(?s:.+)").unwrap();
        assert_eq!(s.caps, vec![(0, 0)]);
        assert!(matches!(&s.segs[1], SegMatch::Rest { set, nonempty: true } if set.is_full()));
        assert!(shape_of_pattern("/api/(?<version>v[0-9]+)/ecome.*").is_none());
    }

    #[test]
    fn first_segments_are_found_when_literal() {
        let f = |p: &str| analyze(p).unwrap().first_segments;
        assert_eq!(f("/repos/([^/]+)"), Some(vec![b"repos".to_vec()]));
        assert_eq!(f("/(a|b)/x"), Some(vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(f("/health"), Some(vec![b"health".to_vec()]));
        assert_eq!(f("/v1/ecome.*"), Some(vec![b"v1".to_vec()]));
        assert_eq!(f("/(.*)"), None);
        assert_eq!(f("/ab[0-9]*/x"), None);
    }
}
