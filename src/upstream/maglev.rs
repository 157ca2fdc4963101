//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, §3.4), with weights handled the way Envoy's `maglev_lb.cc` does.
//!
//! A key hash is mapped to an upstream member through a fixed-size lookup table, so a pick is one
//! modulo and one array read. When a member is ejected or added, most table slots keep their owner,
//! so most keys keep their member (measured in `tests::disruption`).

/// Candidate table sizes (all prime: every skip in `1..M` then walks a full permutation of the table).
/// 65537 is Envoy's default; larger sizes keep the `M >= 100 * members` rule for big clusters.
pub const TABLE_SIZES: [usize; 5] = [65537, 131071, 262147, 524287, 1048573];

/// Largest `members` slice accepted by [`Maglev::build`]: table entries are `u16` indices into it,
/// which keeps the default table at 128 KiB. Longer slices make `build` return `None`.
pub const MAX_MEMBERS: usize = u16::MAX as usize + 1;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// Little-endian value of the first `n` (4 or 8) bytes of `b`.
fn le(b: &[u8], n: usize) -> u64 {
    b[..n].iter().rev().fold(0, |acc, &x| acc << 8 | u64::from(x))
}

fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn xxh_merge(acc: u64, val: u64) -> u64 {
    (acc ^ xxh_round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

/// XXH64 (Yann Collet, <https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md>), the same
/// function and seeds (0 and 1) Envoy uses for Maglev offsets and skips.
fn xxh64(input: &[u8], seed: u64) -> u64 {
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = xxh_round(*lane, le(&rest[i * 8..], 8));
            }
            rest = &rest[32..];
        }
        let h = v
            .iter()
            .zip([1, 7, 12, 18])
            .fold(0u64, |h, (l, r)| h.wrapping_add(l.rotate_left(r)));
        v.iter().fold(h, |h, &lane| xxh_merge(h, lane))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        h = (h ^ xxh_round(0, le(rest, 8)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h = (h ^ le(rest, 4).wrapping_mul(P1))
            .rotate_left(23)
            .wrapping_mul(P2)
            .wrapping_add(P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        h = (h ^ u64::from(byte).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// Hashes a request key (header value, cookie, client address, ...) for [`Maglev::pick`].
///
/// This is XXH64 with seed 0 (spec: <https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md>),
/// implemented here so it never changes: unlike std's `DefaultHasher`/`RandomState`, it is identical
/// in every process, machine and release, so all gateway replicas send a key to the same member.
pub fn hash_key(key: &[u8]) -> u64 {
    xxh64(key, 0)
}

/// Table size for a `members` slice of length `n`: the first listed prime `>= 100 * n` (the
/// paper's bound for good balance), else the largest. It depends on the configured member count
/// only, never on health, so ejecting a member does not resize (and thereby reshuffle) the table.
fn table_size_for(n: usize) -> usize {
    let want = n.saturating_mul(100);
    TABLE_SIZES
        .iter()
        .copied()
        .find(|&m| m >= want)
        .unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1])
}

/// A built Maglev lookup table; immutable, cheap to share, rebuilt when membership/health changes.
#[derive(Clone)]
pub struct Maglev {
    /// `table[slot]` is the index, into the `members` slice given to `build`, of the slot's owner.
    table: Box<[u16]>,
}

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maglev")
            .field("table_size", &self.table.len())
            .finish()
    }
}

/// Per-member build state (paper's Listing 1 plus Envoy's weight counters).
struct Entry {
    index: u16,
    /// Current position in this member's permutation: `(offset + skip * next) % M`, kept incrementally.
    pos: usize,
    skip: usize,
    weight: u64,
    /// `slots_taken * max_weight`; the member may take a slot in round `r` only if `r * weight >= target`.
    target: u64,
}

impl Maglev {
    /// Builds the lookup table for `members`, each `(name, weight)`.
    ///
    /// `name` is the member's stable identity (its URL text). A member's offset and skip are
    /// `xxh64(name, 0) % M` and `xxh64(name, 1) % (M - 1) + 1` (as in Envoy), and members are filled
    /// in sorted-by-name order, so the table depends on the *set* of members, not their order in
    /// the slice, and is identical in every process. Names should be unique: exact duplicates
    /// (same name and weight) are ordered by slice position, the only case where order matters.
    ///
    /// Members with weight 0, or for which `usable(i)` is false (ejected/unhealthy), get no slots;
    /// their keys spread over the others while everyone else keeps nearly all of theirs.
    ///
    /// Weights follow Envoy: in round `r = 1, 2, ...` a member takes its next preferred free slot
    /// only if `r * weight >= slots_taken * max_weight`, so the heaviest member takes one slot per
    /// round and a member of weight `w` one every `max_weight / w` rounds. Slot counts are then
    /// proportional to weight within about one slot each, except that every usable member gets at
    /// least one slot (round 1), so shares below `1 / M` are rounded up to `1 / M`.
    ///
    /// Always terminates: the heaviest member fills a slot each round (so at most `M` rounds), and
    /// its prime-size permutation reaches every free slot. Arithmetic stays in `u64`: `r <= M < 2^21`
    /// and weights `< 2^32`, so `r * weight` and `target` stay below `2^53`.
    ///
    /// Table size `M` is the first of [`TABLE_SIZES`] with `M >= 100 * members.len()` (else the
    /// largest), counting every entry, usable or not, so that ejections never resize the table. Returns `None` if no member is usable with a non-zero weight, or if
    /// `members.len() > MAX_MEMBERS`.
    pub fn build(members: &[(&[u8], u32)], usable: impl Fn(usize) -> bool) -> Option<Maglev> {
        if members.len() > MAX_MEMBERS {
            return None;
        }
        let m = table_size_for(members.len());
        let mut live: Vec<(&[u8], u32, usize)> = members
            .iter()
            .enumerate()
            .filter(|&(i, &(_, w))| w > 0 && usable(i))
            .map(|(i, &(name, w))| (name, w, i))
            .collect();
        live.sort_unstable();
        let max_weight = live.iter().map(|&(_, w, _)| u64::from(w)).max()?;
        let mut entries = Vec::with_capacity(live.len());
        for &(name, w, i) in &live {
            entries.push(Entry {
                index: u16::try_from(i).ok()?,
                pos: (xxh64(name, 0) % m as u64) as usize,
                skip: (xxh64(name, 1) % (m as u64 - 1)) as usize + 1,
                weight: u64::from(w),
                target: 0,
            });
        }
        let mut table = vec![0u16; m].into_boxed_slice();
        let mut taken = vec![false; m];
        let mut filled = 0usize;
        let mut round = 0u64;
        while filled < m {
            round += 1;
            for e in entries.iter_mut() {
                if filled == m {
                    break;
                }
                if round * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                while taken[e.pos] {
                    e.pos = (e.pos + e.skip) % m;
                }
                table[e.pos] = e.index;
                taken[e.pos] = true;
                e.pos = (e.pos + e.skip) % m;
                filled += 1;
            }
        }
        Some(Maglev { table })
    }

    /// Member index (into the `members` slice given to [`Maglev::build`]) owning `hash`, typically
    /// from [`hash_key`]: `table[hash % M]`. Never returns an unusable or zero-weight member.
    pub fn pick(&self, hash: u64) -> usize {
        usize::from(self.table[(hash % self.table.len() as u64) as usize])
    }

    /// Number of slots `M` (prime); one slot is the finest share of traffic a member can get.
    pub fn table_size(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:8080")).collect()
    }

    fn members<'a>(names: &'a [String], weights: &[u32]) -> Vec<(&'a [u8], u32)> {
        names
            .iter()
            .zip(weights)
            .map(|(n, &w)| (n.as_bytes(), w))
            .collect()
    }

    /// Slot count and slot share of each member index.
    fn counts(t: &Maglev, n: usize) -> (Vec<usize>, Vec<f64>) {
        let mut c = vec![0usize; n];
        t.table.iter().for_each(|&i| c[usize::from(i)] += 1);
        let s = c.iter().map(|&k| k as f64 / t.table_size() as f64).collect();
        (c, s)
    }

    fn keys() -> Vec<u64> {
        (0..100_000)
            .map(|i| hash_key(format!("key-{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn xxh64_known_answers() {
        // Published XXH64 vectors, cross-checked against the reference C library (python `xxhash` 3.x).
        assert_eq!(xxh64(b"", 0), 0xef46_db37_51d8_e999);
        assert_eq!(xxh64(b"a", 0), 0xd24e_c4f1_a98c_6e5b);
        assert_eq!(xxh64(b"abc", 0), 0x44bc_2cf5_ad77_0999);
        assert_eq!(
            xxh64(b"Nobody inspects the spammish repetition", 0),
            0xfbce_a83c_8a37_8bf1
        );
        assert_eq!(xxh64(b"", 1), 0xd5af_ba13_36a3_be4b);
        assert_eq!(xxh64(b"abc", 1), 0xbea9_ca81_9932_8908);
        let long = b"0123456789abcdef0123456789abcdef0123456789"; // 42 bytes: stripes + 8 + 2 tail
        assert_eq!(xxh64(long, 0), 0xa761_90c3_acf0_8a1c);
        assert_eq!(xxh64(long, 1), 0x2b8d_7720_869b_31a6);
        assert_eq!(xxh64(b"http://10.0.0.1:8080", 1), 0xd554_145a_c169_79d5);
        // hash_key is XXH64 seed 0 and must never change (keys are routed by it across replicas).
        assert_eq!(hash_key(b"key-0"), 0x12da_f067_15ff_a373);
        assert_eq!(hash_key(b"key-42"), 0x8bca_139c_4fa6_fa1e);
        assert_eq!(hash_key(b"http://10.0.0.1:8080"), 0x8b8d_f8c1_9702_ea4e);
    }

    #[test]
    fn table_sizes_are_prime_and_scale() {
        for &m in &TABLE_SIZES {
            assert!(
                (2..).take_while(|d| d * d <= m).all(|d| m % d != 0),
                "{m} not prime"
            );
        }
        assert_eq!(table_size_for(655), 65537);
        assert_eq!(table_size_for(656), 131071);
        assert_eq!(table_size_for(MAX_MEMBERS), 1048573);
        let n = names(700);
        let t = Maglev::build(&members(&n, &[1; 700]), |_| true).unwrap();
        assert_eq!(t.table_size(), 131071);
        assert!(counts(&t, 700).0.iter().all(|&c| c > 0));
    }

    #[test]
    fn order_independent() {
        let n = names(12);
        let w: Vec<u32> = (1..=12).collect();
        let a = members(&n, &w);
        let mut b = a.clone();
        b.reverse();
        b.rotate_left(5);
        let (ta, tb) = (
            Maglev::build(&a, |i| i != 3).unwrap(),
            Maglev::build(&b, |i| b[i].0 != a[3].0).unwrap(),
        );
        assert_eq!(ta.table_size(), tb.table_size());
        for slot in 0..ta.table_size() as u64 {
            assert_eq!(a[ta.pick(slot)].0, b[tb.pick(slot)].0, "slot {slot}");
        }
    }

    #[test]
    fn balance_equal_weights() {
        let n = names(10);
        let t = Maglev::build(&members(&n, &[7; 10]), |_| true).unwrap();
        let (c, s) = counts(&t, 10);
        let worst = s.iter().map(|&x| (x / 0.1 - 1.0).abs()).fold(0.0, f64::max);
        eprintln!(
            "balance 10 equal over {}: shares {s:.5?}, worst deviation {:.4}%",
            t.table_size(),
            worst * 100.0
        );
        // Equal weights => strict round-robin => counts differ by at most one slot (6553 or 6554).
        assert!(c.iter().all(|&k| k == 6553 || k == 6554));
        assert!(worst < 0.02);
    }

    #[test]
    fn weights_proportional() {
        let n = names(4);
        let t = Maglev::build(&members(&n, &[1, 2, 3, 4]), |_| true).unwrap();
        let s = counts(&t, 4).1;
        eprintln!("weights 1,2,3,4: shares {s:.5?}");
        for (i, &x) in s.iter().enumerate() {
            assert!((x / (0.1 * (i + 1) as f64) - 1.0).abs() < 0.05, "member {i}: {x}");
        }
    }

    /// Share of keys whose member changes on removal (ejection via `usable`) and on addition.
    #[test]
    fn disruption() {
        let keys = keys();
        let total = keys.len() as f64;
        for n in [5usize, 10, 20] {
            let all = names(n + 1);
            let ms = members(&all, &vec![1; n + 1]);
            let base = Maglev::build(&ms[..n], |_| true).unwrap();
            let (mut worst_rm, mut worst_rm_other, mut sum_rm) = (0.0f64, 0.0f64, 0.0);
            for r in 0..n {
                let ej = Maglev::build(&ms[..n], |i| i != r).unwrap();
                let (mut moved, mut moved_other, mut others) = (0usize, 0usize, 0usize);
                for &k in &keys {
                    let (b, e) = (base.pick(k), ej.pick(k));
                    assert_ne!(e, r);
                    moved += usize::from(b != e);
                    if b != r {
                        others += 1;
                        moved_other += usize::from(b != e);
                    }
                }
                let share = moved as f64 / total;
                sum_rm += share;
                worst_rm = worst_rm.max(share);
                worst_rm_other = worst_rm_other.max(moved_other as f64 / others as f64);
            }
            let added = Maglev::build(&ms, |_| true).unwrap();
            let (mut moved, mut old_to_old) = (0usize, 0usize);
            for &k in &keys {
                let (b, a) = (base.pick(k), added.pick(k));
                moved += usize::from(b != a);
                old_to_old += usize::from(b != a && a != n);
            }
            let (add, add_old) = (moved as f64 / total, old_to_old as f64 / total);
            let mean_rm = sum_rm / n as f64;
            eprintln!(
                "N={n:2} (1/N {:.4}, 1/(N+1) {:.4})",
                1.0 / n as f64,
                1.0 / (n + 1) as f64
            );
            eprintln!(
                "  remove: moved mean {mean_rm:.4} worst {worst_rm:.4}, others' keys moved {worst_rm_other:.4}"
            );
            eprintln!("  add:    moved {add:.4}, moved between old members {add_old:.4}");
            assert!(worst_rm <= 1.25 / n as f64);
            assert!(worst_rm_other <= 0.02);
            assert!(add <= 1.25 / (n + 1) as f64);
            assert!(add_old <= 0.02);
        }
    }

    #[test]
    fn edge_cases() {
        assert!(Maglev::build(&[], |_| true).is_none());
        let n = names(3);
        assert!(Maglev::build(&members(&n, &[0, 0, 0]), |_| true).is_none());
        assert!(Maglev::build(&members(&n, &[1, 2, 3]), |_| false).is_none());
        assert!(Maglev::build(&members(&n, &[0, 5, 5]), |i| i == 0).is_none());
        let one = Maglev::build(&members(&n[..1], &[9]), |_| true).unwrap();
        assert!(keys().iter().all(|&k| one.pick(k) == 0));
        assert!([0, 1, u64::MAX].iter().all(|&k| one.pick(k) == 0));
        let big = vec![(&b"x"[..], 1u32); MAX_MEMBERS + 1];
        assert!(Maglev::build(&big, |_| true).is_none());
        assert!(format!("{one:?}").contains("65537"));
    }

    #[test]
    fn huge_weights() {
        let n = names(3);
        // Resolution limit: a usable member never gets fewer than one slot (1/M of keys).
        let t = Maglev::build(&members(&n[..2], &[u32::MAX, 1]), |_| true).unwrap();
        assert_eq!(counts(&t, 2).0, vec![t.table_size() - 1, 1]);
        let t = Maglev::build(&members(&n, &[u32::MAX, u32::MAX / 2, u32::MAX / 4]), |_| true).unwrap();
        let s = counts(&t, 3).1;
        eprintln!("weights u32::MAX, /2, /4: shares {s:.5?}");
        for (x, want) in s.iter().zip([4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]) {
            assert!((x / want - 1.0).abs() < 0.01, "{x} vs {want}");
        }
        let t = Maglev::build(&members(&n, &[u32::MAX; 3]), |_| true).unwrap();
        assert!(counts(&t, 3).1.iter().all(|&x| (x * 3.0 - 1.0).abs() < 0.001));
    }

    #[test]
    fn build_time() {
        let n = names(20);
        let start = std::time::Instant::now();
        let t = Maglev::build(&members(&n, &[1; 20]), |_| true).unwrap();
        eprintln!("build 20 members, M={}: {:?}", t.table_size(), start.elapsed());
    }
}
