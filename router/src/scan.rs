//! The request path as the path index reads it, made in one pass per request.
//!
//! The path is copied into a buffer with [`PAD`] bytes after it, so that every segment
//! can be hashed and compared a word (8 bytes) at a time without bounds arithmetic,
//! and the positions of its `/` bytes are listed, so that segment `k` is the bytes
//! between entries `k` and `k + 1` ([`crate::paths::Hay`]): the trie walk and the
//! capture read index the list instead of searching the path. The same pass checks,
//! a word at a time, that the path is already in normal form (the common case); only
//! when it is not does [`crate::normalize::normalize_path`] run, and its output is
//! scanned instead.

use crate::hash::{bytes_equal, load_word, word_at, PAD};
use crate::normalize::{normalize_path, PathError};
use crate::paths::Hay;
use crate::spec::NormalizeOptions;

/// What a 16-byte chunk of the path holds: bit `i` is byte `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    slash: u32,
    dot: u32,
    /// `%`, `\\` or `;`: bytes that always need normalize_path.
    odd: u32,
}

/// [`Chunk`] of 16 bytes: five SSE2 compares.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify(bytes: &[u8; 16]) -> Chunk {
    use safe_arch::*;
    let v = load_unaligned_m128i(bytes);
    let eq = |b: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8));
    let bits = |m| move_mask_i8_m128i(m) as u32;
    Chunk {
        slash: bits(eq(b'/')),
        dot: bits(eq(b'.')),
        odd: bits(bitor_m128i(bitor_m128i(eq(b'%'), eq(b'\\')), eq(b';'))),
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn classify(bytes: &[u8; 16]) -> Chunk {
    classify_words(bytes)
}

/// [`Chunk`] of 16 bytes a word at a time, where SSE2 is not there.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
#[inline(always)]
fn classify_words(bytes: &[u8; 16]) -> Chunk {
    let (lo, hi) = (word_at(bytes, 0), word_at(bytes, 8));
    let bits = |b: u8| (movemask(bytes_equal(lo, b)) | movemask(bytes_equal(hi, b)) << 8) as u32;
    Chunk {
        slash: bits(b'/'),
        dot: bits(b'.'),
        odd: bits(b'%') | bits(b'\\') | bits(b';'),
    }
}

/// The high bits of `m = bytes_equal(w, _)` as 8 bits, byte `i` → bit `i`.
#[inline(always)]
fn movemask(m: u64) -> u64 {
    (m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// The bytes of `raw` (shorter than 16) then zeros, as two words.
#[inline(always)]
fn short_chunk(raw: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..8].copy_from_slice(&load_word(raw, 0).0.to_le_bytes());
    c[8..].copy_from_slice(&load_word(raw, 8).0.to_le_bytes());
    c
}

/// Bytes kept past the path: room for the 16-byte store of a path shorter than 16
/// bytes, for the index's word reads ([`PAD`]) and for
/// [`ScannedPath::put_trailing_slash`]. They hold zeros or stale bytes: every read
/// of them is masked to the path.
const SLACK: usize = 16 + PAD;

#[derive(Clone, Debug, Default)]
pub(crate) struct ScannedPath {
    /// The path, then at least [`SLACK`] bytes of any value.
    buf: Vec<u8>,
    len: usize,
    /// The positions of the path's `/` bytes, in order, then `len` (a sentinel); the
    /// first `count` entries are this path's, the rest stale.
    slashes: Vec<u32>,
    count: usize,
    /// Normalization output, when the path is not in normal form.
    normalized: Vec<u8>,
}

impl ScannedPath {
    /// Reads the request path `raw`, normalizing it if needed.
    #[inline]
    pub(crate) fn read(&mut self, raw: &[u8], opts: &NormalizeOptions) -> Result<(), PathError> {
        if raw.first() != Some(&b'/') {
            return Err(PathError::NotAbsolute);
        }
        if !self.load(raw, opts.merge_slashes) {
            let mut out = std::mem::take(&mut self.normalized);
            let changed = normalize_path(raw, opts, &mut out);
            let ok = changed.map(|changed| {
                self.load(if changed { &out } else { raw }, false);
            });
            self.normalized = out;
            ok?;
        }
        Ok(())
    }

    /// Copies `raw` in and lists its slashes. Returns false when `raw` is not in
    /// normal form: it has a `%`, `\\` or `;`, a segment starting with `.`, or, with
    /// `merge_slashes`, a `//`.
    ///
    /// The path is read 16 bytes at a time and each chunk copied as it is read: the
    /// last, partial chunk is the 16 bytes ending at the path's end (its bits shifted
    /// to their place), or, for a path shorter than 16 bytes, assembled from two
    /// [`load_word`]s — no call to `memcpy`.
    #[inline(always)]
    fn load(&mut self, raw: &[u8], merge_slashes: bool) -> bool {
        let len = raw.len();
        let size = len + SLACK;
        if self.buf.len() < size || self.slashes.len() <= len {
            self.grow(len);
        }
        let buf = &mut self.buf[..size];
        let slashes = &mut self.slashes[..=len];
        // Per chunk, bytes that need normalize_path ('%', '\\', ';', or a '.' — with
        // merge_slashes a '/' too — right after a '/'), and the '/' bytes, whose
        // positions are listed.
        let merge = if merge_slashes { u32::MAX } else { 0 };
        let mut odd = 0u32;
        let mut carry = 0u32;
        let mut n = 0;
        let mut step = |at: usize, c: Chunk| {
            let after_slash = (c.slash << 1) | carry;
            carry = c.slash >> 15;
            odd |= c.odd | (after_slash & (c.dot | (c.slash & merge)));
            let mut m = c.slash;
            while m != 0 {
                if let Some(s) = slashes.get_mut(n) {
                    *s = (at + m.trailing_zeros() as usize) as u32;
                }
                n += 1;
                m &= m - 1;
            }
        };
        let whole = len / 16 * 16;
        for at in (0..whole).step_by(16) {
            let Some(chunk) = raw.get(at..at + 16).and_then(|c| c.first_chunk::<16>()) else {
                break;
            };
            buf[at..at + 16].copy_from_slice(chunk);
            step(at, classify(chunk));
        }
        let tail = len - whole;
        if tail != 0 {
            // `drop`: the chunk's bytes before `whole`.
            let (chunk, drop) = if len >= 16 {
                let chunk = raw.last_chunk::<16>().copied().unwrap_or_default();
                buf[len - 16..len].copy_from_slice(&chunk);
                (chunk, (16 - tail) as u32)
            } else {
                let chunk = short_chunk(raw);
                buf[..16].copy_from_slice(&chunk);
                (chunk, 0)
            };
            let c = classify(&chunk);
            step(
                whole,
                Chunk {
                    slash: c.slash >> drop,
                    dot: c.dot >> drop,
                    odd: c.odd >> drop,
                },
            );
        }
        if let Some(s) = slashes.get_mut(n) {
            *s = len as u32;
        }
        self.count = n + 1;
        self.len = len;
        odd == 0
    }

    /// Makes room for a path of `len` bytes (once per scratch, in practice).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, len: usize) {
        self.buf.resize(self.buf.len().max(len + SLACK), 0);
        self.slashes.resize(self.slashes.len().max(len + 1), 0);
    }

    /// The path as read.
    #[inline]
    pub(crate) fn path(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `buf[s..e]`, for captures (which may point at the `/` of
    /// [`Self::put_trailing_slash`]).
    #[inline]
    pub(crate) fn span(&self, s: usize, e: usize) -> Option<&[u8]> {
        self.buf.get(s..e)
    }

    /// The whole path, for the index.
    #[inline]
    pub(crate) fn hay(&self) -> Hay<'_> {
        Hay {
            buf: &self.buf,
            slashes: &self.slashes[..self.count],
            first: 0,
            start: 0,
            len: self.len,
        }
    }

    /// Writes `/` just past the path (in the padding, where [`Self::span`] can still
    /// reach it): what a rule whose context path is the whole request sees, for its
    /// captures to point into.
    pub(crate) fn put_trailing_slash(&mut self) {
        self.buf[self.len] = b'/';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `load` must answer, byte by byte.
    fn normal(path: &[u8], merge_slashes: bool) -> bool {
        !path.iter().any(|b| matches!(b, b'%' | b'\\' | b';'))
            && !path
                .windows(2)
                .any(|w| w[0] == b'/' && (w[1] == b'.' || (w[1] == b'/' && merge_slashes)))
    }

    #[test]
    fn slashes_padding_and_normal_form_at_every_length() {
        let mut s = ScannedPath::default();
        for len in 1..200 {
            let mut path: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 7 == 0 || i % 11 == 3 {
                        b'/'
                    } else {
                        b'a' + (i % 26) as u8
                    }
                })
                .collect();
            for merge in [true, false] {
                assert_eq!(s.load(&path, merge), normal(&path, merge), "len {len}");
            }
            assert_eq!(s.path(), &path[..]);
            assert!(s.buf.len() >= len + SLACK, "slack at {len}");
            let want: Vec<u32> = (0..len)
                .filter(|&i| path[i] == b'/')
                .chain([len])
                .map(|i| i as u32)
                .collect();
            assert_eq!(s.hay().slashes, &want[..], "len {len}");
            // Each byte that needs normalize_path, at every position (word boundaries
            // included), and a '.' or '/' after each slash.
            for at in 1..len {
                for b in [b'%', b'\\', b';', b'.', b'/'] {
                    let old = std::mem::replace(&mut path[at], b);
                    for merge in [true, false] {
                        assert_eq!(
                            s.load(&path, merge),
                            normal(&path, merge),
                            "len {len}, {b} at {at}"
                        );
                    }
                    path[at] = old;
                }
            }
            // The same bits with and without SSE2, on the path and on its shifts.
            for at in 0..len {
                let mut c = [0u8; 16];
                let n = (len - at).min(16);
                c[..n].copy_from_slice(&path[at..at + n]);
                assert_eq!(classify(&c), classify_words(&c), "len {len}, at {at}");
            }
            // A longer path first must leave nothing behind.
            let mut long = path.clone();
            long.extend_from_slice(&[b'/'; 70]);
            s.load(&long, false);
        }
    }
}
