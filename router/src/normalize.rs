//! Request path normalization: what every rule is matched against.
//!
//! A rule protecting `/admin` must not be bypassed by `/public/..%2Fadmin`, `//admin`,
//! `/admin/.` or `/%61dmin`. So before matching, a path is:
//!
//! 1. checked for valid percent-encoding (`%` followed by two hex digits), else rejected;
//! 2. percent-decoded where the octet is an *unreserved* character (RFC 3986 §2.3:
//!    `A-Z a-z 0-9 - . _ ~`), the remaining escapes upper-cased (§6.2.2.1);
//! 3. `%2F` handled per [`EncodedSlash`] (default: reject the request), `\` and `%5C`
//!    per [`Backslash`], `;` per [`Semicolon`] (both default: reject), and any encoded
//!    control byte (`%00`–`%1F`, `%7F`) rejected — `/admin%00.json` is `/admin` to a C
//!    backend;
//! 4. stripped of dot-segments (RFC 3986 §5.2.4), after decoding, so `%2E%2E` counts;
//! 5. merged where `/` repeats (unless [`NormalizeOptions::merge_slashes`] is off).
//!
//! The result always starts with `/`. Captures are taken from it, so anything a
//! template forwards is in this normalized form.

use crate::spec::{Backslash, EncodedSlash, NormalizeOptions, Semicolon};

/// Why a path was rejected. The gateway answers 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// `%2F` under [`EncodedSlash::Reject`].
    EncodedSlash,
    /// The path does not start with `/`.
    NotAbsolute,
    /// `\` or `%5C` under [`Backslash::Reject`].
    Backslash,
    /// `;` under [`Semicolon::Reject`].
    Semicolon,
    /// An encoded control byte (`%00`–`%1F`, `%7F`).
    EncodedControl,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::InvalidPercentEncoding => "invalid percent-encoding in path",
            PathError::EncodedSlash => "encoded slash (%2F) in path",
            PathError::NotAbsolute => "path does not start with '/'",
            PathError::Backslash => "backslash in path",
            PathError::Semicolon => "';' (path parameter) in path",
            PathError::EncodedControl => "encoded control character in path",
        })
    }
}

impl std::error::Error for PathError {}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// True when `path` is already in normal form, so it can be matched as is. The common
/// case: no `%`, `\` or `;`, no `//`, no segment starting with `.`. Checked a word (8
/// bytes) at a time: a byte is flagged when it is `%`, `\` or `;`, or follows a `/`
/// and is `.` (or `/` when slashes are merged).
#[inline]
fn is_normal(path: &[u8], opts: &NormalizeOptions) -> bool {
    use crate::hash::{bytes_equal, load_word};
    let mut after_slash = 0u64;
    let mut at = 0;
    while at < path.len() {
        // Zero padding is none of '%', '.', '/'.
        let (w, n) = load_word(path, at);
        let slashes = bytes_equal(w, b'/');
        let follows_slash = slashes << 8 | after_slash;
        let mut bad = bytes_equal(w, b'.');
        if opts.merge_slashes {
            bad |= slashes;
        }
        let special = bytes_equal(w, b'%') | bytes_equal(w, b'\\') | bytes_equal(w, b';');
        if special | (follows_slash & bad) != 0 {
            return false;
        }
        after_slash = slashes >> 56;
        at += n;
    }
    true
}

/// Normalizes `raw` (the path part of a request-target, without the query). Returns
/// `None` when `raw` is already normal (match it as is), or `Some(())` with the
/// normalized path written to `out`.
pub fn normalize_path(raw: &[u8], opts: &NormalizeOptions, out: &mut Vec<u8>) -> Result<bool, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw, opts) {
        return Ok(false);
    }
    // Pass 1: percent-decoding into `out`.
    out.clear();
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\\' {
            match opts.backslash {
                Backslash::Reject => return Err(PathError::Backslash),
                Backslash::Slash => out.push(b'/'),
            }
            i += 1;
            continue;
        }
        if b == b';' {
            match opts.semicolon {
                Semicolon::Reject => return Err(PathError::Semicolon),
                Semicolon::Keep => out.push(b';'),
                // Up to the next `/` (raw or, with backslashes as slashes, `\`).
                Semicolon::Strip => {
                    while i < raw.len()
                        && raw[i] != b'/'
                        && !(raw[i] == b'\\' && opts.backslash == Backslash::Slash)
                    {
                        i += 1;
                    }
                    continue;
                }
            }
            i += 1;
            continue;
        }
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(h), Some(l)) = (
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::InvalidPercentEncoding);
        };
        let c = h << 4 | l;
        if c < 0x20 || c == 0x7f {
            return Err(PathError::EncodedControl);
        }
        if is_unreserved(c) {
            out.push(c);
        } else if c == b'\\' {
            match opts.backslash {
                Backslash::Reject => return Err(PathError::Backslash),
                Backslash::Slash => out.push(b'/'),
            }
        } else if c == b'/' {
            match opts.encoded_slash {
                EncodedSlash::Reject => return Err(PathError::EncodedSlash),
                EncodedSlash::Keep => out.extend_from_slice(b"%2F"),
                EncodedSlash::Decode => out.push(b'/'),
            }
        } else {
            out.push(b'%');
            out.push(raw[i + 1].to_ascii_uppercase());
            out.push(raw[i + 2].to_ascii_uppercase());
        }
        i += 3;
    }
    // Pass 2: dot-segments and repeated slashes, in place. `w` is the write cursor;
    // the output so far always ends with '/' between segments.
    let len = out.len();
    let mut w = 1;
    let mut r = 1;
    while r <= len {
        let end = memchr::memchr(b'/', &out[r..len]).map_or(len, |p| r + p);
        let last = end == len;
        let seg_len = end - r;
        let seg_is = |s: &[u8]| seg_len == s.len() && &out[r..end] == s;
        if seg_is(b".") {
            // Nothing to write: "/a/./b" → "/a/b", "/a/." → "/a/".
        } else if seg_is(b"..") {
            // Drop the last written segment: back over its trailing '/', then to the
            // '/' before it.
            if w > 1 {
                w -= 1;
                while w > 1 && out[w - 1] != b'/' {
                    w -= 1;
                }
            }
        } else if seg_len == 0 && (opts.merge_slashes || last) {
            // "//" merged; a trailing "/" is already written.
        } else {
            out.copy_within(r..end, w);
            w += seg_len;
            if !last {
                out[w] = b'/';
                w += 1;
            }
        }
        r = end + 1;
    }
    out.truncate(w);
    Ok(true)
}

/// Percent-decodes a query component (`+` is a space, as in HTML forms and every
/// server-side form parser) and appends it to `out`. Invalid escapes are kept literally.
pub(crate) fn decode_query_component(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%' {
            if let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            out.push(b);
        } else {
            out.push(b);
        }
        i += 1;
    }
}

/// The property the `normalize` fuzz target checks (and `tests/fuzz_corpus.rs`
/// replays): the first byte picks the options, the rest is a path. Normalizing never
/// panics; its output starts with `/`, has no dot-segment, no `\\` (rejected or read
/// as `/`), no `;` unless kept, no encoded control byte, and normalizing it again
/// changes nothing.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&o, raw)) = data.split_first() else {
        return;
    };
    let opts = NormalizeOptions {
        merge_slashes: o & 1 == 0,
        encoded_slash: [EncodedSlash::Reject, EncodedSlash::Keep, EncodedSlash::Decode]
            [usize::from(o >> 1 & 3) % 3],
        backslash: if o & 8 == 0 {
            Backslash::Reject
        } else {
            Backslash::Slash
        },
        semicolon: [Semicolon::Reject, Semicolon::Strip, Semicolon::Keep][usize::from(o >> 4 & 3) % 3],
    };
    let mut out = Vec::new();
    let Ok(changed) = normalize_path(raw, &opts, &mut out) else {
        return;
    };
    let once: &[u8] = if changed { &out } else { raw };
    assert_eq!(once.first(), Some(&b'/'));
    assert!(!once.contains(&b'\\'), "{once:?}");
    if opts.semicolon != Semicolon::Keep {
        assert!(!once.contains(&b';'), "{once:?}");
    }
    for seg in once.split(|&b| b == b'/') {
        assert!(seg != b"." && seg != b"..", "dot-segment in {once:?}");
    }
    let mut twice = Vec::new();
    let again = normalize_path(once, &opts, &mut twice);
    let again: &[u8] = match again {
        Ok(true) => &twice,
        Ok(false) => once,
        Err(e) => panic!("normal form {once:?} is refused: {e}"),
    };
    assert_eq!(again, once, "normalizing twice changes {raw:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm_with(raw: &str, opts: NormalizeOptions) -> Result<String, PathError> {
        let mut out = Vec::new();
        let changed = normalize_path(raw.as_bytes(), &opts, &mut out)?;
        Ok(if changed {
            String::from_utf8(out).unwrap()
        } else {
            raw.to_string()
        })
    }

    fn norm(raw: &str) -> Result<String, PathError> {
        norm_with(raw, NormalizeOptions::default())
    }

    #[test]
    fn admin_bypass_spellings_all_normalize_to_admin() {
        for p in [
            "/admin",
            "//admin",
            "/admin/.",
            "/%61dmin",
            "/public/../admin",
            "/./admin",
        ] {
            let n = norm(p).unwrap();
            assert!(n == "/admin" || n == "/admin/", "{p} → {n}");
        }
        assert_eq!(norm("/public/..%2Fadmin"), Err(PathError::EncodedSlash));
        let decode = NormalizeOptions {
            encoded_slash: EncodedSlash::Decode,
            ..Default::default()
        };
        assert_eq!(norm_with("/public/..%2Fadmin", decode).unwrap(), "/admin");
        let keep = NormalizeOptions {
            encoded_slash: EncodedSlash::Keep,
            ..Default::default()
        };
        assert_eq!(
            norm_with("/public/..%2fadmin", keep).unwrap(),
            "/public/..%2Fadmin"
        );
        assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/public/.%2E/admin").unwrap(), "/admin");
    }

    #[test]
    fn rfc3986_remove_dot_segments_examples() {
        // RFC 3986 §5.2.4 and §5.4.2's abnormal examples, as paths.
        assert_eq!(norm("/a/b/c/./../../g").unwrap(), "/a/g");
        assert_eq!(norm("/mid/content=5/../6").unwrap(), "/mid/6");
        assert_eq!(norm("/../g").unwrap(), "/g");
        assert_eq!(norm("/../../g").unwrap(), "/g");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/.").unwrap(), "/");
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("/a/.b/..c").unwrap(), "/a/.b/..c");
        assert_eq!(norm("/a/...").unwrap(), "/a/...");
    }

    #[test]
    fn slashes_merge_by_default_and_can_be_kept() {
        assert_eq!(norm("//a///b//").unwrap(), "/a/b/");
        let keep = NormalizeOptions {
            merge_slashes: false,
            ..Default::default()
        };
        assert_eq!(norm_with("//a///b", keep).unwrap(), "//a///b");
        assert_eq!(norm_with("/a//../b", keep).unwrap(), "/a/b");
    }

    #[test]
    fn escapes_are_validated_decoded_or_uppercased() {
        assert_eq!(norm("/a%zz"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(norm("/a%4"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(norm("/a%"), Err(PathError::InvalidPercentEncoding));
        assert_eq!(norm("/%7euser").unwrap(), "/~user");
        assert_eq!(norm("/a%3fb%20c").unwrap(), "/a%3Fb%20c");
        assert_eq!(norm("a"), Err(PathError::NotAbsolute));
        assert_eq!(norm("/plain/path").unwrap(), "/plain/path");
    }

    #[test]
    fn is_normal_agrees_with_a_byte_loop_at_every_offset() {
        let slow = |p: &[u8], merge: bool| {
            !p.contains(&b'%')
                && !p
                    .windows(2)
                    .any(|w| w[0] == b'/' && (w[1] == b'.' || (w[1] == b'/' && merge)))
        };
        let base = b"/abcdefg/hijklmn/opqrstu/vwxyz01/";
        for merge in [true, false] {
            let opts = NormalizeOptions {
                merge_slashes: merge,
                ..Default::default()
            };
            for i in 1..base.len() {
                for ins in [&b"."[..], b"/", b"%", b"/.", b"//", b"a.", b"./"] {
                    let mut p = base[..i].to_vec();
                    p.extend_from_slice(ins);
                    p.extend_from_slice(&base[i..]);
                    assert_eq!(
                        is_normal(&p, &opts),
                        slow(&p, merge),
                        "{}",
                        String::from_utf8_lossy(&p)
                    );
                }
            }
        }
    }

    #[test]
    fn query_components_decode_like_forms() {
        let mut out = Vec::new();
        decode_query_component(b"a+b%20c%2x%41", &mut out);
        assert_eq!(out, b"a b c%2xA");
    }
}
