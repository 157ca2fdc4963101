//! Per-shard load balancing over endpoint groups: round robin, smooth weighted round
//! robin (nginx's algorithm), power of two choices on in-flight requests, and
//! consistent hashing (Maglev, `maglev.rs`) — each skipping the members the
//! process's health says are down (`health.rs`).
//!
//! State lives in the shard's view of a snapshot and is touched by that shard's
//! thread only, so it is plain `Cell`s: no atomics on the request path, but for the
//! health reads (relaxed loads of lines written only when a member fails).

use crate::config::health::AllDown;
use crate::config::Lb;
use crate::upstream::health::GroupHealth;
use crate::upstream::{Endpoint, UpstreamId};
use ringway_router::EndpointId;
use std::cell::{Cell, RefCell};

#[derive(Debug, Default)]
struct GroupState {
    next: Cell<usize>,
    /// Smooth weighted round robin: current weights.
    current: RefCell<Vec<i64>>,
}

/// Balancer state for every endpoint group of a snapshot.
#[derive(Debug)]
pub struct Balancer {
    groups: Vec<GroupState>,
    /// In-flight requests per upstream, for p2c.
    in_flight: RefCell<Vec<u32>>,
    rng: Cell<u64>,
}

/// What a pick came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Send to this upstream; `member` is its index in the group (for health).
    To {
        upstream: UpstreamId,
        member: Option<usize>,
    },
    /// Every member of the group is down and the group refuses (`all_down`).
    AllDown,
    /// An unknown endpoint or an empty group.
    Nothing,
}

/// Probes of the Maglev table for a key whose member is down, before the members
/// are scanned in order: keys of members that are up never move.
const HASH_PROBES: u64 = 8;

impl Balancer {
    /// State for `endpoints`, over `upstreams` resolved addresses; `seed` spreads
    /// shards' round-robin starts.
    pub fn new(endpoints: &[Endpoint], upstreams: usize, seed: u64) -> Balancer {
        let groups = endpoints
            .iter()
            .map(|e| {
                let n = match e {
                    Endpoint::Group { members, .. } => members.len(),
                    Endpoint::Single(_) => 0,
                };
                GroupState {
                    next: Cell::new(seed as usize % n.max(1)),
                    current: RefCell::new(vec![0; n]),
                }
            })
            .collect();
        Balancer {
            groups,
            in_flight: RefCell::new(vec![0; upstreams]),
            rng: Cell::new(seed | 1),
        }
    }

    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// Picks the upstream for endpoint `id` of `endpoints` (the list this balancer
    /// was made for), skipping members `health` says are down. `key` is the hash of
    /// the request's key for `lb = "consistent_hash"` (without one, a random
    /// member). `skip`: members already tried by this request, avoided while
    /// another is up.
    pub fn pick(
        &self,
        endpoints: &[Endpoint],
        id: EndpointId,
        health: Option<&GroupHealth>,
        key: Option<u64>,
        skip: &[usize],
    ) -> Pick {
        let Some(state) = self.groups.get(id.0 as usize) else {
            return Pick::Nothing;
        };
        let (lb, members, maglev) = match endpoints.get(id.0 as usize) {
            None => return Pick::Nothing,
            Some(Endpoint::Single(u)) => {
                return Pick::To {
                    upstream: *u,
                    member: None,
                }
            }
            Some(Endpoint::Group { members, .. }) if members.is_empty() => return Pick::Nothing,
            Some(Endpoint::Group { lb, members, maglev }) => (*lb, members, maglev),
        };
        let mut now = 0;
        let mut up = |i: usize| health.is_none_or(|h| h.usable(i, &mut now));
        let fresh = if skip.is_empty() {
            None
        } else {
            let mut untried = |i: usize| !skip.contains(&i) && up(i);
            self.pick_among(state, lb, members, maglev.as_deref(), key, &mut untried)
        };
        let picked = fresh.or_else(|| self.pick_among(state, lb, members, maglev.as_deref(), key, &mut up));
        let i = match picked {
            Some(i) => i,
            None if health.is_some_and(|h| h.policy.all_down == AllDown::Refuse) => return Pick::AllDown,
            // `all_down = "try"`: as if every member were up.
            None => match self.pick_among(state, lb, members, maglev.as_deref(), key, &mut |_| true) {
                Some(i) => i,
                None => return Pick::Nothing,
            },
        };
        Pick::To {
            upstream: members[i].0,
            member: Some(i),
        }
    }

    /// The index of the member to send to among those `up` allows.
    fn pick_among(
        &self,
        state: &GroupState,
        lb: Lb,
        members: &[(UpstreamId, u32)],
        maglev: Option<&super::maglev::Maglev>,
        key: Option<u64>,
        up: &mut dyn FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = members.len();
        match lb {
            Lb::RoundRobin => {
                let start = state.next.get() % n;
                let i = (0..n).map(|k| (start + k) % n).find(|&i| up(i))?;
                state.next.set(i + 1);
                Some(i)
            }
            Lb::Weighted => {
                // Each pick: every member up gains its weight; the largest wins and
                // loses the total. Spreads picks evenly (a,a,b,a,a,b… not a,a,a,a,b,b).
                let mut cur = state.current.borrow_mut();
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, (_, w)) in members.iter().enumerate() {
                    if !up(i) {
                        continue;
                    }
                    cur[i] += i64::from(*w);
                    total += i64::from(*w);
                    if best.is_none_or(|b| cur[i] > cur[b]) {
                        best = Some(i);
                    }
                }
                let best = best?;
                cur[best] -= total;
                Some(best)
            }
            Lb::P2c => {
                let a = (self.random() % n as u64) as usize;
                let mut b = (self.random() % n as u64) as usize;
                if n > 1 && b == a {
                    b = (a + 1) % n;
                }
                let inf = self.in_flight.borrow();
                let load = |i: usize| inf.get(members[i].0.index()).copied().unwrap_or(0);
                match (up(a), up(b)) {
                    (true, true) => Some(if load(b) < load(a) { b } else { a }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => (0..n).map(|k| (a + k) % n).find(|&i| up(i)),
                }
            }
            Lb::ConsistentHash => {
                let Some(table) = maglev else {
                    return (0..n).find(|&i| up(i));
                };
                let key = key.unwrap_or_else(|| self.random());
                let first = table.pick(key);
                if up(first) {
                    return Some(first);
                }
                // The member is down: its keys go where the table's probe sequence
                // says, the same on every shard, and every other key stays put.
                (1..=HASH_PROBES)
                    .map(|p| {
                        table.pick(super::maglev::hash_key(
                            &(key ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes(),
                        ))
                    })
                    .find(|&i| up(i))
                    .or_else(|| (0..n).map(|k| (first + k) % n).find(|&i| up(i)))
            }
        }
    }

    /// A request to `u` started (`+1`) or finished (`-1`).
    pub fn track(&self, u: UpstreamId, started: bool) {
        if let Some(n) = self.in_flight.borrow_mut().get_mut(u.index()) {
            *n = if started {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::snapshot::Snapshot;

    fn balancer(snap: &Snapshot, seed: u64) -> Balancer {
        Balancer::new(&snap.endpoints, snap.upstreams.len(), seed)
    }

    fn snapshot(lb: &str, weights: &[u32]) -> Snapshot {
        let members: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{{ url = \"http://127.0.0.1:{}\", weight = {w} }}", 9001 + i))
            .collect();
        let toml = format!(
            "[endpoint_groups.g]\nendpoints = [{}]\nlb = \"{lb}\"\n\n[[groups]]\nname = \"x\"\n\n[[groups.routes]]\nname = \"r\"\npath = {{ prefix = \"/\" }}\nto = \"{{#endpoints['g']}}\"\n",
            members.join(", ")
        );
        Snapshot::build(parse(&toml, "test.toml").expect("config"), 1).expect("snapshot")
    }

    fn picks(snap: &Snapshot, b: &Balancer, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let Pick::To { upstream: u, .. } = b.pick(&snap.endpoints, EndpointId(0), None, None, &[])
                else {
                    panic!("a member")
                };
                snap.upstreams[u.index()].addr.port()
            })
            .collect()
    }

    #[test]
    fn round_robin_cycles_through_members() {
        let snap = snapshot("round_robin", &[1, 1, 1]);
        let b = balancer(&snap, 0);
        let p = picks(&snap, &b, 6);
        assert_eq!(p, vec![9001, 9002, 9003, 9001, 9002, 9003]);
    }

    #[test]
    fn weighted_is_smooth_and_proportional() {
        let snap = snapshot("weighted", &[5, 1, 1]);
        let b = balancer(&snap, 0);
        let p = picks(&snap, &b, 7);
        // nginx's smooth weighted round robin: a a b a c a a.
        assert_eq!(p, vec![9001, 9001, 9002, 9001, 9003, 9001, 9001]);
        let many = picks(&snap, &b, 700);
        assert_eq!(many.iter().filter(|&&x| x == 9001).count(), 500);
    }

    #[test]
    fn p2c_prefers_the_member_with_fewer_in_flight() {
        let snap = snapshot("p2c", &[1, 1]);
        let b = balancer(&snap, 7);
        // Load the first member heavily: every pick that sees both must avoid it.
        let first = UpstreamId(snap.upstreams.iter().position(|u| u.addr.port() == 9001).unwrap() as u32);
        for _ in 0..10 {
            b.track(first, true);
        }
        let p = picks(&snap, &b, 50);
        assert!(p.iter().all(|&x| x == 9002), "{p:?}");
        for _ in 0..10 {
            b.track(first, false);
        }
        let p = picks(&snap, &b, 200);
        assert!(p.contains(&9001) && p.contains(&9002), "both used when equal");
    }
}
