//! Per-shard load balancing over endpoint groups: round robin, smooth weighted round
//! robin (nginx's algorithm), and power of two choices on in-flight requests.
//!
//! State lives in the shard's view of a snapshot and is touched by that shard's
//! thread only, so it is plain `Cell`s: no atomics on the request path.

use crate::config::Lb;
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
    /// was made for). `None` for an unknown id or an empty group.
    pub fn pick(&self, endpoints: &[Endpoint], id: EndpointId) -> Option<UpstreamId> {
        let state = self.groups.get(id.0 as usize)?;
        match endpoints.get(id.0 as usize)? {
            Endpoint::Single(u) => Some(*u),
            Endpoint::Group { members, .. } if members.is_empty() => None,
            Endpoint::Group {
                lb: Lb::RoundRobin,
                members,
            } => {
                let i = state.next.get() % members.len();
                state.next.set(i + 1);
                Some(members[i].0)
            }
            Endpoint::Group {
                lb: Lb::Weighted,
                members,
            } => {
                // Each pick: every member gains its weight; the largest wins and
                // loses the total. Spreads picks evenly (a,a,b,a,a,b… not a,a,a,a,b,b).
                let mut cur = state.current.borrow_mut();
                let total: i64 = members.iter().map(|(_, w)| i64::from(*w)).sum();
                let mut best = 0;
                for (i, (_, w)) in members.iter().enumerate() {
                    cur[i] += i64::from(*w);
                    if cur[i] > cur[best] {
                        best = i;
                    }
                }
                cur[best] -= total;
                Some(members[best].0)
            }
            Endpoint::Group { lb: Lb::P2c, members } => {
                let n = members.len();
                let a = (self.random() % n as u64) as usize;
                let mut b = (self.random() % n as u64) as usize;
                if n > 1 && b == a {
                    b = (a + 1) % n;
                }
                let inf = self.in_flight.borrow();
                let load = |i: usize| inf.get(members[i].0.index()).copied().unwrap_or(0);
                Some(members[if load(b) < load(a) { b } else { a }].0)
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
                let u = b.pick(&snap.endpoints, EndpointId(0)).expect("a member");
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
