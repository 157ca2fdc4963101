//! Upstream health, once per process: what every shard's balancer reads before it
//! picks a member, and what every shard's requests and the one health checker
//! (`upstream/check.rs`) write.
//!
//! A [`GroupHealth`] per endpoint group holds one [`MemberHealth`] per member:
//!
//! - **Passive** (outlier ejection): a shard records each request's outcome. A
//!   failure adds one to a consecutive count (an atomic add; failures are rare); a
//!   success clears a count only when it is not zero already, so on the happy path a
//!   request does one relaxed load of a line nobody writes. A count reaching its
//!   threshold ejects the member for `base_ejection_time` × its ejections so far (up
//!   to `max_ejection_time`), unless the group already has its share ejected: at
//!   most `max_ejection_percent` of the members, but always one may be and one always
//!   stays. Counts are the process's: failures seen by any shard add up.
//! - **Active**: the checker marks a member down after `unhealthy_threshold` failed
//!   probes in a row and up after `healthy_threshold` passing ones; a passing probe
//!   also ends an ejection (Envoy does the same).
//!
//! A pick reads two relaxed atomics per member it looks at, and the clock only for
//! a member that is ejected (to see whether its time is up: returning is done by
//! whichever pick sees it first). State lives in the [`HealthRegistry`] by group
//! name, and a reload that keeps a group's members and policy keeps its state.

use crate::config::health::{GroupPolicy, HealthCheck};
use crate::config::{EndpointDef, UpstreamAddr};
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::sync::{Arc, OnceLock, Weak};
// The registry's list: the control thread (once per reload) and the health checker
// take it, never a shard.
#[allow(clippy::disallowed_types)]
use std::sync::Mutex;
use std::time::Instant;

/// Nanoseconds on the process's monotonic clock (never 0: 0 means "not ejected").
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// What a request to a member came to, as health counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A response under 500 (a 4xx is the client's business).
    Ok,
    /// The upstream answered 500 or more.
    Status5xx,
    /// No usable response: connect failure, reset or close before a response,
    /// response timeout, a malformed response (ringway answered 502 or 504).
    Failure,
}

/// One member's health.
#[derive(Debug)]
pub struct MemberHealth {
    /// The member's address as metrics and logs name it.
    pub name: String,
    /// The member as the checker probes it.
    pub target: UpstreamAddr,
    fails_5xx: AtomicU32,
    fails: AtomicU32,
    /// When the current ejection ends ([`now_ns`]); 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections in a row (each one longer), reset after a quiet spell.
    ejections: AtomicU32,
    /// When the last ejection ended.
    returned_at: AtomicU64,
    /// The health checker says it is down.
    down: AtomicBool,
    /// Checker only: probes passed / failed in a row, the next probe's time, a
    /// probe running.
    pub(crate) passed_run: AtomicU32,
    pub(crate) failed_run: AtomicU32,
    pub(crate) next_probe: AtomicU64,
    pub(crate) probing: AtomicBool,
    /// For metrics.
    pub ejections_total: AtomicU64,
    pub probes_failed_total: AtomicU64,
    pub probes_passed_total: AtomicU64,
}

impl MemberHealth {
    fn new(target: &UpstreamAddr) -> MemberHealth {
        MemberHealth {
            name: target.addr.to_string(),
            target: target.clone(),
            fails_5xx: AtomicU32::new(0),
            fails: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            returned_at: AtomicU64::new(0),
            down: AtomicBool::new(false),
            passed_run: AtomicU32::new(0),
            failed_run: AtomicU32::new(0),
            next_probe: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            ejections_total: AtomicU64::new(0),
            probes_failed_total: AtomicU64::new(0),
            probes_passed_total: AtomicU64::new(0),
        }
    }

    /// The health checker's verdict: down.
    pub fn is_down(&self) -> bool {
        self.down.load(Relaxed)
    }

    /// Ejected at `now` (as the metrics see it; a pick also ends a finished one).
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && now < until
    }
}

/// The health of one endpoint group's members, in the group's order.
#[derive(Debug)]
pub struct GroupHealth {
    pub name: String,
    pub policy: GroupPolicy,
    pub members: Box<[MemberHealth]>,
    /// Members ejected now.
    ejected: AtomicU32,
    /// Which bind made it: of the live groups of one name, the newest is the one
    /// probed (older ones live on only in retired views).
    generation: u64,
}

impl GroupHealth {
    fn new(
        name: &str,
        members: &[(UpstreamAddr, u32)],
        policy: &GroupPolicy,
        generation: u64,
    ) -> GroupHealth {
        GroupHealth {
            name: name.to_string(),
            policy: policy.clone(),
            members: members.iter().map(|(u, _)| MemberHealth::new(u)).collect(),
            ejected: AtomicU32::new(0),
            generation,
        }
    }

    /// Takes over the state of `old`'s members that are still members (by
    /// [`UpstreamAddr::identity`]): a reload that adds a member or changes a timeout
    /// does not send traffic back to a member known to be down.
    fn carry_over(&self, old: &GroupHealth) {
        let now = now_ns();
        for m in self.members.iter() {
            let id = m.target.identity();
            let Some(o) = old.members.iter().find(|o| o.target.identity() == id) else {
                continue;
            };
            for (to, from) in [
                (&m.fails_5xx, &o.fails_5xx),
                (&m.fails, &o.fails),
                (&m.ejections, &o.ejections),
                (&m.passed_run, &o.passed_run),
                (&m.failed_run, &o.failed_run),
            ] {
                to.store(from.load(Relaxed), Relaxed);
            }
            for (to, from) in [
                (&m.returned_at, &o.returned_at),
                (&m.next_probe, &o.next_probe),
                (&m.ejections_total, &o.ejections_total),
                (&m.probes_failed_total, &o.probes_failed_total),
                (&m.probes_passed_total, &o.probes_passed_total),
            ] {
                to.store(from.load(Relaxed), Relaxed);
            }
            m.down.store(o.down.load(Relaxed), Relaxed);
            let until = o.ejected_until.load(Acquire);
            if until > now {
                m.ejected_until.store(until, Relaxed);
                self.ejected.fetch_add(1, AcqRel);
            }
        }
    }

    /// Whether the group has the same members and policy (its state can carry over).
    fn same_as(&self, members: &[(UpstreamAddr, u32)], policy: &GroupPolicy) -> bool {
        self.policy == *policy
            && self.members.len() == members.len()
            && self.members.iter().zip(members).all(|(m, (u, _))| m.target == *u)
    }

    /// Whether member `i` may be picked. `now` is read once, when an ejected member
    /// is looked at, and kept for the rest of the pick.
    #[inline]
    pub fn usable(&self, i: usize, now: &mut u64) -> bool {
        let Some(m) = self.members.get(i) else {
            return false;
        };
        if m.down.load(Relaxed) {
            return false;
        }
        let until = m.ejected_until.load(Relaxed);
        if until == 0 {
            return true;
        }
        if *now == 0 {
            *now = now_ns();
        }
        if *now < until {
            return false;
        }
        self.end_ejection(i, *now, "its ejection time is over");
        true
    }

    /// Ends member `i`'s ejection (once, whoever sees it first).
    fn end_ejection(&self, i: usize, now: u64, why: &str) {
        let m = &self.members[i];
        let until = m.ejected_until.load(Acquire);
        if until != 0
            && m.ejected_until
                .compare_exchange(until, 0, AcqRel, Acquire)
                .is_ok()
        {
            self.ejected.fetch_sub(1, AcqRel);
            m.returned_at.store(now, Relaxed);
            crate::observe::log(format_args!(
                "upstream {} of endpoint group '{}' is back: {why}",
                m.name, self.name
            ));
        }
    }

    /// Counts a request's outcome on member `i`.
    #[inline]
    pub fn record(&self, i: usize, seen: Observed) {
        let Some(m) = self.members.get(i) else { return };
        let o = &self.policy.outlier;
        match seen {
            Observed::Ok => {
                for c in [&m.fails, &m.fails_5xx] {
                    if c.load(Relaxed) != 0 {
                        c.store(0, Relaxed);
                    }
                }
            }
            Observed::Status5xx => {
                if m.fails.load(Relaxed) != 0 {
                    m.fails.store(0, Relaxed);
                }
                let n = m.fails_5xx.fetch_add(1, Relaxed) + 1;
                if o.consecutive_5xx != 0 && n >= o.consecutive_5xx {
                    self.eject(i, format_args!("{n} responses of 500 or more in a row"));
                }
            }
            Observed::Failure => {
                let n = m.fails.fetch_add(1, Relaxed) + 1;
                let n5 = m.fails_5xx.fetch_add(1, Relaxed) + 1;
                if o.consecutive_failures != 0 && n >= o.consecutive_failures {
                    self.eject(i, format_args!("{n} failed attempts in a row"));
                } else if o.consecutive_5xx != 0 && n5 >= o.consecutive_5xx {
                    self.eject(i, format_args!("{n5} responses of 500 or more in a row"));
                }
            }
        }
    }

    /// How many members may be ejected at once: `max_ejection_percent` of them, at
    /// least one, never all.
    pub fn max_ejected(&self) -> u32 {
        let n = self.members.len() as u32;
        let share = (u64::from(n) * u64::from(self.policy.outlier.max_ejection_percent) / 100) as u32;
        share.max(1).min(n.saturating_sub(1))
    }

    /// Ejects member `i` if the group's share allows and another member stays up
    /// (not ejected, not failing its health checks); its counts start again.
    fn eject(&self, i: usize, why: std::fmt::Arguments<'_>) {
        let m = &self.members[i];
        m.fails.store(0, Relaxed);
        m.fails_5xx.store(0, Relaxed);
        if m.ejected_until.load(Acquire) != 0 {
            return;
        }
        let now = now_ns();
        // Ejections whose time is up but that no pick has ended yet hold no share.
        for (j, o) in self.members.iter().enumerate() {
            let until = o.ejected_until.load(Acquire);
            if until != 0 && now >= until {
                self.end_ejection(j, now, "its ejection time is over");
            }
        }
        let up = |j: usize, o: &MemberHealth| j != i && !o.is_down() && !o.is_ejected(now);
        if !self.members.iter().enumerate().any(|(j, o)| up(j, o)) {
            return;
        }
        let max = self.max_ejected();
        if self
            .ejected
            .fetch_update(AcqRel, Acquire, |e| (e < max).then_some(e + 1))
            .is_err()
        {
            return;
        }
        let o = &self.policy.outlier;
        // After a quiet spell as long as the longest ejection, the multiplier starts over.
        let quiet = now.saturating_sub(m.returned_at.load(Relaxed)) > o.max_ejection_time.as_nanos() as u64;
        let n = if quiet {
            1
        } else {
            m.ejections.load(Relaxed).saturating_add(1)
        };
        m.ejections.store(n, Relaxed);
        let time = o.base_ejection_time.saturating_mul(n).min(o.max_ejection_time);
        if m.ejected_until
            .compare_exchange(0, now + time.as_nanos() as u64, AcqRel, Acquire)
            .is_err()
        {
            // Another shard ejected it at the same moment.
            self.ejected.fetch_sub(1, AcqRel);
            return;
        }
        m.ejections_total.fetch_add(1, Relaxed);
        crate::observe::log(format_args!(
            "upstream {} of endpoint group '{}' ejected for {}s after {why}",
            m.name,
            self.name,
            time.as_secs_f64()
        ));
    }

    /// The checker's verdict on a probe of member `i`.
    pub fn probed(&self, i: usize, check: &HealthCheck, passed: bool, detail: &str) {
        let Some(m) = self.members.get(i) else { return };
        if passed {
            m.probes_passed_total.fetch_add(1, Relaxed);
            m.failed_run.store(0, Relaxed);
            let run = m.passed_run.fetch_add(1, Relaxed) + 1;
            if m.down.load(Relaxed) && run >= check.healthy_threshold {
                m.down.store(false, Relaxed);
                crate::observe::log(format_args!(
                    "upstream {} of endpoint group '{}' is healthy: {run} checks passed",
                    m.name, self.name
                ));
            }
            self.end_ejection(i, now_ns(), "a health check passed");
        } else {
            m.probes_failed_total.fetch_add(1, Relaxed);
            m.passed_run.store(0, Relaxed);
            let run = m.failed_run.fetch_add(1, Relaxed) + 1;
            if !m.down.load(Relaxed) && run >= check.unhealthy_threshold {
                m.down.store(true, Relaxed);
                crate::observe::log(format_args!(
                    "upstream {} of endpoint group '{}' is down: {run} checks failed, the last: {detail}",
                    m.name, self.name
                ));
            }
        }
    }
}

/// Every group's health, by name, kept across reloads.
#[allow(clippy::disallowed_types)]
#[derive(Debug, Default)]
pub struct HealthRegistry {
    /// The live groups, and the generation the last one got.
    groups: Mutex<(Vec<Weak<GroupHealth>>, u64)>,
}

impl HealthRegistry {
    /// The health of each of `endpoints` (indexed like it; `None` for a single
    /// endpoint): the newest live group of that name when its members and policy
    /// are the same, else a new one that takes over the state of the members it
    /// keeps.
    pub fn bind(&self, endpoints: &[EndpointDef]) -> Vec<Option<Arc<GroupHealth>>> {
        let mut guard = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let (groups, generation) = &mut *guard;
        groups.retain(|w| w.strong_count() > 0);
        endpoints
            .iter()
            .map(|e| {
                let EndpointDef::Group {
                    name,
                    members,
                    policy,
                    ..
                } = e
                else {
                    return None;
                };
                let newest = groups
                    .iter()
                    .filter_map(Weak::upgrade)
                    .filter(|g| g.name == *name)
                    .max_by_key(|g| g.generation);
                if let Some(g) = newest.as_ref().filter(|g| g.same_as(members, policy)) {
                    return Some(g.clone());
                }
                *generation += 1;
                let g = Arc::new(GroupHealth::new(name, members, policy, *generation));
                if let Some(old) = &newest {
                    g.carry_over(old);
                }
                groups.push(Arc::downgrade(&g));
                Some(g)
            })
            .collect()
    }

    /// The groups to probe: of each name, the newest live one.
    pub fn checked(&self) -> Vec<Arc<GroupHealth>> {
        let guard = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut newest: Vec<Arc<GroupHealth>> = Vec::new();
        for g in guard.0.iter().filter_map(Weak::upgrade) {
            if g.policy.health_check.is_none() {
                continue;
            }
            match newest.iter_mut().find(|n| n.name == g.name) {
                Some(n) if n.generation < g.generation => *n = g,
                Some(_) => {}
                None => newest.push(g),
            }
        }
        newest
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // sleeps in tests, on the test's thread
mod tests {
    use super::*;
    use crate::config::health::Outlier;
    use std::time::Duration;

    fn group(n: usize, outlier: Outlier) -> GroupHealth {
        let members: Vec<(UpstreamAddr, u32)> = (0..n)
            .map(|i| {
                let addr: std::net::SocketAddr = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
                (
                    UpstreamAddr {
                        addr,
                        authority: addr.to_string(),
                        tls: None,
                    },
                    1,
                )
            })
            .collect();
        let policy = GroupPolicy {
            outlier,
            health_check: None,
            hash_on: None,
            all_down: Default::default(),
        };
        GroupHealth::new("g", &members, &policy, 1)
    }

    fn usable(g: &GroupHealth) -> Vec<bool> {
        let mut now = 0;
        (0..g.members.len()).map(|i| g.usable(i, &mut now)).collect()
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_between_resets_the_count() {
        let g = group(10, Outlier::default());
        for _ in 0..4 {
            g.record(0, Observed::Failure);
        }
        g.record(0, Observed::Ok);
        for _ in 0..4 {
            g.record(0, Observed::Failure);
        }
        assert!(usable(&g)[0], "4 in a row, twice, is not 5 in a row");
        g.record(0, Observed::Failure);
        assert!(!usable(&g)[0]);
        // 5xx counts on their own, and gateway failures count as 5xx too.
        for _ in 0..3 {
            g.record(1, Observed::Status5xx);
        }
        g.record(1, Observed::Failure);
        assert!(usable(&g)[1], "share: one of ten is ejected already");
        assert_eq!(g.max_ejected(), 1);
        assert_eq!(g.members[0].ejections_total.load(Relaxed), 1);
    }

    #[test]
    fn never_more_than_the_share_and_one_always_stays() {
        let half = Outlier {
            max_ejection_percent: 100,
            ..Outlier::default()
        };
        let g = group(3, half);
        assert_eq!(g.max_ejected(), 2, "100% of three still leaves one");
        for i in 0..3 {
            for _ in 0..5 {
                g.record(i, Observed::Failure);
            }
        }
        assert_eq!(usable(&g), [false, false, true]);
        let single = group(1, Outlier::default());
        for _ in 0..50 {
            single.record(0, Observed::Failure);
        }
        assert_eq!(usable(&single), [true], "a group's only member is never ejected");
    }

    #[test]
    fn the_last_member_up_is_never_ejected_whatever_the_checks_say() {
        let all = Outlier {
            max_ejection_percent: 100,
            ..Outlier::default()
        };
        let g = group(3, all);
        let check = HealthCheck {
            path: "/h".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            expect_status: vec![],
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            host: None,
        };
        g.probed(0, &check, false, "down");
        for _ in 0..5 {
            g.record(1, Observed::Failure);
        }
        assert_eq!(usable(&g), [false, false, true]);
        for _ in 0..50 {
            g.record(2, Observed::Status5xx);
        }
        assert_eq!(usable(&g), [false, false, true], "2 is all that is left");
    }

    #[test]
    fn a_new_group_takes_over_its_members_state() {
        let g = group(2, Outlier::default());
        for _ in 0..5 {
            g.record(1, Observed::Failure);
        }
        let mut next = group(2, Outlier::default());
        next.generation = 2;
        next.carry_over(&g);
        assert_eq!(usable(&next), [true, false]);
        assert_eq!(next.ejected.load(Relaxed), 1);
        assert_eq!(next.members[1].ejections_total.load(Relaxed), 1);
    }

    #[test]
    fn ejections_end_on_time_and_grow_when_repeated() {
        let o = Outlier {
            base_ejection_time: Duration::from_millis(30),
            max_ejection_time: Duration::from_millis(70),
            max_ejection_percent: 50,
            ..Outlier::default()
        };
        let g = group(2, o);
        let eject = |g: &GroupHealth| {
            for _ in 0..5 {
                g.record(0, Observed::Failure);
            }
        };
        eject(&g);
        let t0 = g.members[0].ejected_until.load(Relaxed);
        assert!(!usable(&g)[0]);
        std::thread::sleep(Duration::from_millis(40));
        assert!(usable(&g)[0], "back after the base time");
        eject(&g);
        let second = g.members[0].ejected_until.load(Relaxed) - now_ns();
        assert!(
            second > 40_000_000,
            "the second ejection is twice as long: {second} ns"
        );
        eject(&g);
        assert!(t0 > 0);
        std::thread::sleep(Duration::from_millis(80));
        assert!(usable(&g)[0]);
        assert!(g.members[0].ejections.load(Relaxed) == 2);
    }

    #[test]
    fn probes_take_members_down_and_bring_them_back_with_thresholds() {
        let g = group(2, Outlier::default());
        let check = HealthCheck {
            path: "/h".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            expect_status: vec![],
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            host: None,
        };
        g.probed(1, &check, false, "x");
        g.probed(1, &check, false, "x");
        assert!(usable(&g)[1]);
        g.probed(1, &check, false, "x");
        assert_eq!(usable(&g), [true, false]);
        g.probed(1, &check, true, "");
        assert!(!usable(&g)[1], "one pass is not two");
        g.probed(1, &check, true, "");
        assert_eq!(usable(&g), [true, true]);
        // A passing probe ends a passive ejection.
        for _ in 0..5 {
            g.record(0, Observed::Failure);
        }
        assert!(!usable(&g)[0]);
        g.probed(0, &check, true, "");
        assert!(usable(&g)[0]);
    }
}
