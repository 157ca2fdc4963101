//! A small, fast byte-string hash and an open-addressing table keyed by it.
//!
//! Paths and header names are short, so a multiply-rotate hash over the bytes (the
//! rustc `FxHasher` family) beats SipHash by a wide margin. Tables hash a word (8
//! bytes) at a time; [`segment_key`] reads a path segment in a padded buffer
//! without any bounds arithmetic.

const K: u64 = 0x517c_c1b7_2722_0a95;

/// Mixes one byte into a running hash.
#[inline(always)]
pub(crate) fn mix(h: u64, b: u8) -> u64 {
    (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K)
}

/// The hash of `bytes` from `seed`.
#[inline]
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, &b| mix(h, b))
}

/// The hash of `bytes` folded to ASCII lowercase, for case-insensitive keys.
#[inline]
pub(crate) fn hash_lower(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, &b| mix(h, b.to_ascii_lowercase()))
}

const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of every byte of `w` that is zero, and nothing else (no carries
/// between bytes, unlike the shorter `(x - 0x01…) & !x & 0x80…`).
#[inline(always)]
pub(crate) fn zero_bytes(w: u64) -> u64 {
    !(((w & LO7).wrapping_add(LO7)) | w | LO7)
}

/// The high bit of every byte of `w` equal to `b`.
#[inline(always)]
pub(crate) fn bytes_equal(w: u64, b: u8) -> u64 {
    zero_bytes(w ^ (u64::from(b) * 0x0101_0101_0101_0101))
}

/// Up to 8 bytes of `bytes` from `at`, little-endian, zero-padded: (word, bytes read).
#[inline(always)]
pub(crate) fn load_word(bytes: &[u8], at: usize) -> (u64, usize) {
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or_default());
    if let Some(w) = bytes.get(at..at + 8) {
        return (word(w), 8);
    }
    let n = bytes.len().saturating_sub(at);
    if n == 0 {
        (0, 0)
    } else if bytes.len() >= 8 {
        // The last 8 bytes, shifted so that the ones before `at` fall off.
        (word(&bytes[bytes.len() - 8..]) >> (8 * (8 - n)), n)
    } else {
        let w = bytes[at..].iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b));
        (w, n)
    }
}

/// The end of the segment of `hay` that starts at `start`: the next `/`, or the end.
#[inline]
pub(crate) fn segment_end(hay: &[u8], start: usize) -> usize {
    let mut at = start;
    loop {
        let (w, n) = load_word(hay, at);
        let valid = if n == 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
        let slashes = bytes_equal(w, b'/') & valid;
        if slashes != 0 {
            return at + (slashes.trailing_zeros() / 8) as usize;
        }
        if n < 8 {
            return at + n;
        }
        at += 8;
    }
}

/// `a == b`, a word at a time (short keys: cheaper than a call to `memcmp`).
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut at = 0;
    while at < a.len() {
        let (x, n) = load_word(a, at);
        if x != load_word(b, at).0 {
            return false;
        }
        at += n;
    }
    true
}

/// Mixes one 8-byte word into a running hash.
#[inline(always)]
fn mix_word(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(K)
}

/// The hash of `bytes` from `seed`, a word at a time (the last one zero-padded).
#[inline]
pub(crate) fn hash_words(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    let mut at = 0;
    while at < bytes.len() {
        let (w, n) = load_word(bytes, at);
        h = mix_word(h, w);
        at += n;
    }
    h
}

/// Bytes after the end of a padded buffer (see [`crate::scan::ScannedPath`]), so that an
/// 8-byte load from any position up to the end is in bounds.
pub(crate) const PAD: usize = 8;

/// The 8 bytes of `buf` at `at`, little-endian. `buf` must extend [`PAD`] bytes past
/// the data being read.
#[inline(always)]
pub(crate) fn word_at(buf: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The low `n` bytes (`n <= 8`) of a word.
#[inline(always)]
pub(crate) fn low_bytes(w: u64, n: usize) -> u64 {
    w & LOW_BYTES.get(n).copied().unwrap_or(u64::MAX)
}

/// `LOW_BYTES[n]`: a mask of the low `n` bytes of a word (one load instead of a
/// shift, a compare and a select).
const LOW_BYTES: [u64; 9] = {
    let mut t = [0u64; 9];
    let mut n = 1;
    while n <= 8 {
        t[n] = u64::MAX >> (64 - 8 * n);
        n += 1;
    }
    t
};

/// A path segment as the trie compares it: its hash from a seed, its first 8 bytes
/// and, when longer than 8, its last 8 (overlapping the first when shorter than 16).
/// With the length, `first` and `last` are the whole segment up to 16 bytes; only
/// longer ones have middle words to compare ([`middle_words`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentKey {
    pub hash: u64,
    pub first: u64,
    pub last: u64,
}

/// The [`SegmentKey`] of `buf[start..end]`, read from a padded buffer. A segment of
/// up to 8 bytes (most) costs one load, one mask and one multiply; up to 16, two
/// loads and two multiplies. The hash's high bits are the ones to use.
#[inline(always)]
pub(crate) fn segment_key(seed: u64, buf: &[u8], start: usize, end: usize) -> SegmentKey {
    let len = end - start;
    if len <= 8 {
        let first = low_bytes(word_at(buf, start), len);
        return SegmentKey {
            hash: (first ^ seed).wrapping_mul(K),
            first,
            last: 0,
        };
    }
    let (first, last) = (word_at(buf, start), word_at(buf, end - 8));
    let mut h = mix_word((first ^ seed).wrapping_mul(K), last);
    if len > 16 {
        h = middle_words(buf, start, end).fold(h, mix_word);
    }
    SegmentKey { hash: h, first, last }
}

/// The words of a segment longer than 16 bytes between its first and last 8 (the
/// last one masked to the segment's bytes).
#[inline]
pub(crate) fn middle_words(buf: &[u8], start: usize, end: usize) -> impl Iterator<Item = u64> + '_ {
    (start + 8..end - 8)
        .step_by(8)
        .map(move |at| low_bytes(word_at(buf, at), (end - 8 - at).min(8)))
}

/// Final avalanche so the low bits used for the bucket depend on every byte.
#[inline(always)]
pub(crate) fn finish(h: u64) -> u64 {
    (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
}

/// An immutable map from byte strings to `V`, with open addressing and linear probing.
/// Built once; lookups take a precomputed (unfinished) hash so that callers can hash
/// incrementally.
#[derive(Clone, Debug)]
pub(crate) struct BytesTable<V> {
    mask: usize,
    /// `(finished hash, entry index + 1)`; 0 = empty.
    slots: Box<[(u64, u32)]>,
    keys: Vec<Box<[u8]>>,
    values: Vec<V>,
}

impl<V> BytesTable<V> {
    pub(crate) fn from_entries(entries: Vec<(Vec<u8>, V)>) -> Self {
        let cap = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![(0u64, 0u32); cap].into_boxed_slice();
        let mut keys = Vec::with_capacity(entries.len());
        let mut values = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let h = finish(hash_words(0, &key));
            let mut i = (h as usize) & (cap - 1);
            while slots[i].1 != 0 {
                i = (i + 1) & (cap - 1);
            }
            keys.push(key.into_boxed_slice());
            values.push(value);
            slots[i] = (h, keys.len() as u32);
        }
        BytesTable {
            mask: cap - 1,
            slots,
            keys,
            values,
        }
    }

    /// Looks `key` up, given `raw = hash_words(0, key)` (not finished).
    #[inline]
    pub(crate) fn get_hashed(&self, raw: u64, key: &[u8]) -> Option<&V> {
        let h = finish(raw);
        let mut i = (h as usize) & self.mask;
        loop {
            let (sh, idx) = self.slots[i];
            if idx == 0 {
                return None;
            }
            if sh == h && bytes_eq(&self.keys[idx as usize - 1], key) {
                return Some(&self.values[idx as usize - 1]);
            }
            i = (i + 1) & self.mask;
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&V> {
        self.get_hashed(hash_words(0, key), key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len() * 16 + self.keys.iter().map(|k| k.len() + 16).sum::<usize>()
    }
}

/// A perfect hash over a fixed set of keys: every key lands in its own bucket, so a
/// lookup is one hash, one bucket read and one comparison. Used for the header names
/// and query keys that predicates refer to ([`crate::predicate`]).
#[derive(Clone, Debug)]
pub(crate) struct PerfectHash {
    seed: u64,
    mask: usize,
    /// Bucket → key index + 1 (0 = empty).
    buckets: Box<[u16]>,
    keys: Vec<Box<[u8]>>,
    case_insensitive: bool,
}

impl PerfectHash {
    /// Builds a collision-free table for `keys` (already lowercased when
    /// `case_insensitive`). Keys must be distinct and fewer than 65,535.
    pub(crate) fn build(keys: Vec<Vec<u8>>, case_insensitive: bool) -> Self {
        let mut size = (keys.len() * 2).next_power_of_two().max(4);
        loop {
            for seed in 1..=256u64 {
                let seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut buckets = vec![0u16; size].into_boxed_slice();
                let ok = keys.iter().enumerate().all(|(i, k)| {
                    let b = (finish(hash_bytes(seed, k)) as usize) & (size - 1);
                    let free = buckets[b] == 0;
                    buckets[b] = i as u16 + 1;
                    free
                });
                if ok {
                    return PerfectHash {
                        seed,
                        mask: size - 1,
                        buckets,
                        keys: keys.into_iter().map(Vec::into_boxed_slice).collect(),
                        case_insensitive,
                    };
                }
            }
            size *= 2;
        }
    }

    /// The index of `key` among the keys the table was built from.
    #[inline]
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        let h = if self.case_insensitive {
            hash_lower(self.seed, key)
        } else {
            hash_bytes(self.seed, key)
        };
        let b = self.buckets[(finish(h) as usize) & self.mask];
        if b == 0 {
            return None;
        }
        let stored = &*self.keys[b as usize - 1];
        let eq = if self.case_insensitive {
            stored.eq_ignore_ascii_case(key)
        } else {
            stored == key
        };
        eq.then_some(b as usize - 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn key(&self, i: usize) -> &[u8] {
        &self.keys[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_finds_every_key_and_nothing_else() {
        let entries: Vec<(Vec<u8>, usize)> = (0..1000).map(|i| (format!("/k/{i}").into_bytes(), i)).collect();
        let t = BytesTable::from_entries(entries);
        for i in 0..1000 {
            assert_eq!(t.get(format!("/k/{i}").as_bytes()), Some(&i));
        }
        assert_eq!(t.get(b"/k/1000"), None);
        assert_eq!(t.get(b""), None);
    }

    #[test]
    fn segment_hash_is_the_same_at_any_offset_and_padding() {
        let path = b"/repos/rust-lang/rust/releases/1.51.0/x/abcdefgh/abcdefghi/";
        let mut buf = path.to_vec();
        buf.extend_from_slice(&[0xAA; PAD]);
        let mut at = 0;
        while at < path.len() {
            let end = segment_end(path, at + 1);
            let seg = &path[at + 1..end];
            let mut own = seg.to_vec();
            own.resize(seg.len() + PAD, 0);
            assert_eq!(
                segment_key(7, &buf, at + 1, end),
                segment_key(7, &own, 0, seg.len())
            );
            at = end;
        }
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'/', 0, b'/', b, 1, b'.', 0xff]);
            let m = bytes_equal(w, b'/');
            for (i, &x) in w.to_le_bytes().iter().enumerate() {
                assert_eq!(m >> (8 * i + 7) & 1 == 1, x == b'/');
            }
        }
    }

    #[test]
    fn perfect_hash_is_collision_free_and_case_folds() {
        let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("x-h-{i}").into_bytes()).collect();
        let ph = PerfectHash::build(keys, true);
        for i in 0..300 {
            assert_eq!(ph.find(format!("X-H-{i}").as_bytes()), Some(i));
        }
        assert_eq!(ph.find(b"x-h-300"), None);
        let empty = PerfectHash::build(vec![], false);
        assert_eq!(empty.find(b"a"), None);
    }
}
