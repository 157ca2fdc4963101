//! The request path as the path index reads it, made in one pass per request.
//!
//! The path is copied into a buffer with [`PAD`] bytes after it, so that every segment
//! can be hashed and compared a word (8 bytes) at a time without bounds arithmetic,
//! and a bitmask of its `/` bytes is kept, so that finding the end of a segment is a
//! bit scan ([`crate::paths::Hay`]). The same pass checks that the path is already
//! in normal form (the common case); only when it is not does
//! [`crate::normalize::normalize_path`] run, and its output is scanned instead.

use crate::hash::{bytes_equal, word_at, PAD};
use crate::normalize::{normalize_path, PathError};
use crate::paths::Hay;
use crate::spec::NormalizeOptions;

#[derive(Clone, Debug, Default)]
pub(crate) struct ScannedPath {
    /// The path, then at least [`PAD`] bytes (zeros up to the next multiple of 8, then
    /// possibly stale bytes: every read is masked to the path).
    buf: Vec<u8>,
    len: usize,
    /// Bit `i` is set when `buf[i]` is `/`; bit `len` is set too, as a sentinel.
    slashes: Vec<u64>,
    /// Normalization output, when the path is not in normal form.
    normalized: Vec<u8>,
}

/// True when no segment of the path in `buf` (whose `/` bytes are the set bits of
/// `slashes`, before `len`) starts with `.`, nor, when slashes are merged, with `/`.
#[inline]
fn segment_starts_are_normal(buf: &[u8], slashes: &[u64], len: usize, opts: &NormalizeOptions) -> bool {
    for (i, &word) in slashes.iter().enumerate() {
        let mut m = word;
        while m != 0 {
            let at = i * 64 + m.trailing_zeros() as usize;
            m &= m - 1;
            if at >= len {
                break;
            }
            let next = buf[at + 1];
            if next == b'.' || (next == b'/' && opts.merge_slashes) {
                return false;
            }
        }
    }
    true
}

/// The `/` bytes of `w` as 8 bits, byte `i` → bit `i`, given `m = bytes_equal(w, _)`.
#[inline(always)]
fn movemask(m: u64) -> u64 {
    (m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

impl ScannedPath {
    /// Reads the request path `raw`, normalizing it if needed.
    #[inline]
    pub(crate) fn read(&mut self, raw: &[u8], opts: &NormalizeOptions) -> Result<(), PathError> {
        if raw.first() != Some(&b'/') {
            return Err(PathError::NotAbsolute);
        }
        if !self.load(raw, Some(opts)) {
            let mut out = std::mem::take(&mut self.normalized);
            let changed = normalize_path(raw, opts, &mut out);
            let ok = changed.map(|changed| {
                self.load(if changed { &out } else { raw }, None);
            });
            self.normalized = out;
            ok?;
        }
        Ok(())
    }

    /// Copies `raw` in and records its slashes. With `check`, returns false when
    /// `raw` is not in normal form (it has a `%`, `\\` or `;`, a segment starting
    /// with `.`, or `//` when slashes are merged).
    #[inline]
    fn load(&mut self, raw: &[u8], check: Option<&NormalizeOptions>) -> bool {
        let len = raw.len();
        let words = len.div_ceil(8);
        if self.buf.len() < words * 8 + PAD {
            self.buf.resize(words * 8 + PAD, 0);
        }
        if self.slashes.len() <= len / 64 {
            self.slashes.resize(len / 64 + 1, 0);
        }
        self.buf[..len].copy_from_slice(raw);
        self.buf[len..len + PAD].copy_from_slice(&[0; PAD]);
        let buf = &self.buf[..words * 8 + PAD];
        // Per word: its slashes into the bitmask. Zero padding is no slash.
        let mut bits = 0u64;
        let mut at = 0;
        while at < len {
            let w = word_at(buf, at);

            bits |= movemask(bytes_equal(w, b'/')) << (at % 64);
            at += 8;
            if at % 64 == 0 {
                self.slashes[at / 64 - 1] = bits;
                bits = 0;
            }
        }
        if at % 64 != 0 {
            self.slashes[at / 64] = bits;
        }
        if len % 64 == 0 {
            self.slashes[len / 64] = 0;
        }
        let mut normal = true;
        if let Some(opts) = check {
            // A '%', '\\' or ';' needs normalize_path: decoding, or refusing a
            // spelling a backend would read differently. One SIMD scan for the three.
            normal = memchr::memchr3(b'%', b'\\', b';', raw).is_none()
                && segment_starts_are_normal(buf, &self.slashes[..=len / 64], len, opts);
        }
        self.slashes[len / 64] |= 1 << (len % 64);
        self.len = len;
        normal
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
    /// [`Self::with_trailing_slash`]).
    #[inline]
    pub(crate) fn span(&self, s: usize, e: usize) -> Option<&[u8]> {
        self.buf.get(s..e)
    }

    /// The whole path, for the index.
    #[inline]
    pub(crate) fn hay(&self) -> Hay<'_> {
        Hay {
            buf: &self.buf,
            slashes: &self.slashes,
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

    #[test]
    fn slashes_and_padding_at_every_length() {
        let opts = NormalizeOptions::default();
        let mut s = ScannedPath::default();
        for len in 1..200 {
            let path: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 7 == 0 || i % 11 == 3 {
                        b'/'
                    } else {
                        b'a' + (i % 26) as u8
                    }
                })
                .collect();
            let normal = !path.windows(2).any(|w| w == b"//");
            assert_eq!(s.load(&path, Some(&opts)), normal, "len {len}");
            s.load(&path, None);
            assert_eq!(s.path(), &path[..]);
            let tail = (len / 8 + 1) * 8;
            assert!(s.buf[len..tail].iter().all(|&b| b == 0), "padding at {len}");
            for (i, &b) in path.iter().chain([b'/'].iter()).enumerate() {
                let bit = s.slashes[i / 64] >> (i % 64) & 1 == 1;
                assert_eq!(bit, b == b'/', "len {len}, bit {i}");
            }
            for i in len + 1..s.slashes.len() * 64 {
                if i / 64 == len / 64 {
                    assert_eq!(s.slashes[i / 64] >> (i % 64) & 1, 0, "len {len}, bit {i}");
                }
            }
            // A longer path first must leave nothing behind.
            let mut long = path.clone();
            long.extend_from_slice(&[b'/'; 70]);
            s.load(&long, None);
        }
    }
}
