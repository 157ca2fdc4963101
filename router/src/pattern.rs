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

/// One path segment of a pattern made of whole segments (see [`whole_segments`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SegMatch {
    /// The segment is exactly these bytes (no `/`; may be empty).
    Lit(Box<[u8]>),
    /// Any segment (`[^/]*`), or any non-empty one (`[^/]+`) when `nonempty`.
    Any { nonempty: bool },
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
    Ok(PatternInfo {
        groups,
        names,
        shape,
        first_segments,
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

/// The path segments of a segment pattern whose `[^/]` pieces each fill a whole
/// segment (`/repos/([^/]+)/events`), or `None` (`/v([^/]+)`, or no leading `/`).
/// Such patterns are matched segment by segment ([`crate::paths`]'s trie tier).
pub(crate) fn whole_segments(parts: &[SegPart]) -> Option<Vec<SegMatch>> {
    // Lay the pattern out as bytes, with 0xFF/0xFE bytes standing for the pieces, then
    // split at '/'. A piece must be alone in its segment.
    let mut segs = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut piece: Option<bool> = None;
    let mut started = false;
    let mut close = |cur: &mut Vec<u8>, piece: &mut Option<bool>| -> Option<()> {
        match piece.take() {
            Some(nonempty) if cur.is_empty() => segs.push(SegMatch::Any { nonempty }),
            Some(_) => return None,
            None => segs.push(SegMatch::Lit(std::mem::take(cur).into())),
        }
        cur.clear();
        Some(())
    };
    for part in parts {
        match part {
            SegPart::Lit(l) => {
                for &b in l.iter() {
                    if !started {
                        if b != b'/' {
                            return None;
                        }
                        started = true;
                    } else if b == b'/' {
                        close(&mut cur, &mut piece)?;
                    } else if piece.is_some() {
                        return None;
                    } else {
                        cur.push(b);
                    }
                }
            }
            SegPart::Segment { nonempty, .. } => {
                if !started || !cur.is_empty() || piece.is_some() {
                    return None;
                }
                piece = Some(*nonempty);
            }
        }
    }
    if !started {
        return None;
    }
    close(&mut cur, &mut piece)?;
    Some(segs)
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

    #[test]
    fn whole_segment_patterns_split_at_slashes() {
        let f = |p: &str| match analyze(p).unwrap().shape {
            Shape::Segments(parts) => whole_segments(&parts),
            _ => panic!("{p}: not segments"),
        };
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
        assert_eq!(f("/a/x([^/]+)"), None);
        assert_eq!(f("a/([^/]+)"), None);
        assert_eq!(f("([^/]+)/a"), None);
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
