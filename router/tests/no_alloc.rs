//! Matching allocates nothing once the scratch has grown: a counting global allocator
//! watches `match_request` + `render_target` over many requests, covering exact and
//! prefix tiers, context paths, predicates (query and headers), segment captures
//! (class and rest segments included), general-regex captures and lazy-DFA partitions.

// A global allocator cannot be written without unsafe; the SAFETY comment below says
// why this one is sound.
#![allow(unsafe_code)]

use ringway_router::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread while `COUNTING` is set, so the
/// test harness's other threads do not disturb the count.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread-locals may already be gone while a thread shuts down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees carry over; the counting touches only const-initialized
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: as above; `ptr` was allocated by `System` through this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(|a| a.get())
}

fn rule(name: &str, ctx: Option<&str>, path: PathSpec, to: Option<&str>) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        group: "g".into(),
        hosts: vec![],
        methods: vec![],
        context_path: ctx.map(str::to_string),
        path,
        predicates: vec![],
        environments: None,
        action: match to {
            Some(to) => ActionSpec::Proxy { to: to.into() },
            None => ActionSpec::Local,
        },
    }
}

fn spec() -> RouterSpec {
    let mut rules = vec![
        rule(
            "events",
            None,
            PathSpec::Regex("/repos/([^/]+)/(?<repo>[^/]+)/events".into()),
            Some("{#endpoints['gh']}/r/{#group[0]}/{#groupName['repo']}?x=1"),
        ),
        rule(
            "files",
            Some("/store"),
            PathSpec::Regex("/v[0-9]+/files/([a-z]+)(/([0-9]+))?/(.*)".into()),
            Some("http://files/{#group[0]}/{#group[2]}/{#group[3]}"),
        ),
        rule(
            "canary",
            Some("/store"),
            PathSpec::Prefix("/items".into()),
            Some("http://canary/items"),
        ),
        rule(
            "items",
            Some("/store"),
            PathSpec::Prefix("/items".into()),
            Some("http://stable/items"),
        ),
        rule("health", None, PathSpec::Exact("/health".into()), None),
        rule(
            "host_only",
            None,
            PathSpec::Regex("/h/(.*)".into()),
            Some("http://h/{#group[0]}"),
        ),
    ];
    rules[2].predicates = vec![
        PredicateSpec {
            source: Source::Header,
            name: "X-Canary".into(),
            op: PredicateOp::Equals("1".into()),
        },
        PredicateSpec {
            source: Source::Query,
            name: "region".into(),
            op: PredicateOp::Regex("eu-[a-z]+".into()),
        },
        PredicateSpec {
            source: Source::Query,
            name: "debug".into(),
            op: PredicateOp::Absent,
        },
    ];
    rules[5].hosts = vec!["*.example.com".into()];
    rules[5].methods = vec!["GET".into(), "PURGE".into()];
    // Class and rest segments: the segment trie.
    rules.push(rule(
        "versioned",
        None,
        PathSpec::Regex("/api/(?<v>v[0-9]+)/([0-9]+)/(.*)".into()),
        Some("http://api/{#groupName['v']}/{#group[1]}/{#group[2]}"),
    ));
    // Many regex rules under one first segment: a big partition, lazy under a small
    // limit (`(/.*)` is not a whole segment, so they stay out of the trie).
    for i in 0..300 {
        rules.push(rule(
            &format!("svc{i}"),
            None,
            PathSpec::Regex(format!("/svc/r{i}/([0-9]+)/(?:a|b)(/.*)")),
            Some("http://svc/{#group[0]}/{#group[1]}"),
        ));
    }
    RouterSpec {
        rules,
        endpoints: vec!["gh".into()],
        ..Default::default()
    }
}

struct Req {
    method: &'static str,
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    /// Expected winner (rule name), if any.
    winner: Option<&'static str>,
}

const REQUESTS: &[Req] = &[
    Req {
        method: "GET",
        host: None,
        path: "/repos/rust-lang/rust/events",
        query: Some("page=2"),
        headers: &[],
        winner: Some("events"),
    },
    Req {
        method: "GET",
        host: None,
        path: "/store/v2/files/abc/42/x/y.txt",
        query: None,
        headers: &[],
        winner: Some("files"),
    },
    Req {
        method: "GET",
        host: None,
        path: "/store/v2/files/abc/x",
        query: None,
        headers: &[],
        winner: Some("files"),
    },
    Req {
        method: "POST",
        host: None,
        path: "/store/items/7",
        query: Some("region=eu-west&x=%41+b"),
        headers: &[("x-canary", "1"), ("accept", "*/*")],
        winner: Some("canary"),
    },
    Req {
        method: "GET",
        host: None,
        path: "/store/items",
        query: Some("region=eu-west&debug"),
        headers: &[("X-Canary", "1")],
        winner: Some("items"),
    },
    Req {
        method: "GET",
        host: None,
        path: "//health",
        query: None,
        headers: &[],
        winner: Some("health"),
    },
    Req {
        method: "PURGE",
        host: Some("Api.Example.com:443"),
        path: "/h/%61/./b/../c",
        query: None,
        headers: &[],
        winner: Some("host_only"),
    },
    Req {
        method: "GET",
        host: Some("example.com"),
        path: "/h/a",
        query: None,
        headers: &[],
        winner: None,
    },
    Req {
        method: "GET",
        host: None,
        path: "/svc/r123/456/b/tail/of/path",
        query: Some("q=1"),
        headers: &[],
        winner: Some("svc123"),
    },
    Req {
        method: "GET",
        host: None,
        path: "/svc/r299/1/a/",
        query: None,
        headers: &[],
        winner: Some("svc299"),
    },
    Req {
        method: "GET",
        host: None,
        path: "/api/v3/12/a/b",
        query: None,
        headers: &[],
        winner: Some("versioned"),
    },
    Req {
        method: "GET",
        host: None,
        path: "/svc/r5/x/a/y",
        query: None,
        headers: &[],
        winner: None,
    },
];

/// Matches and renders every request once; returns the number of winners.
fn run_all(router: &CompiledRouter, s: &mut MatchScratch, out: &mut Vec<u8>) -> usize {
    let mut winners = 0;
    for r in REQUESTS {
        let view = RequestView {
            method: r.method.as_bytes(),
            host: r.host.map(str::as_bytes),
            path: r.path.as_bytes(),
            query: r.query.map(str::as_bytes),
            env: EnvId(0),
        };
        let headers = r.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        let route = router.match_request(&view, headers, s).unwrap();
        assert_eq!(route.map(|id| router.route_name(id).1), r.winner, "{}", r.path);
        if let Some(route) = route {
            out.clear();
            router.render_target(route, s, view.query, out);
            for i in 0..s.group_count() {
                std::hint::black_box(s.group(i));
            }
            winners += 1;
        }
    }
    winners
}

fn assert_no_allocations(router: &CompiledRouter) {
    let mut s = MatchScratch::default();
    let mut out = Vec::with_capacity(1024);
    // Warm up: the scratch grows, lazy DFA caches fill, capture regexes are built.
    for _ in 0..3 {
        run_all(router, &mut s, &mut out);
    }
    let mut winners = 0;
    let n = allocations_in(|| {
        for _ in 0..500 {
            winners += run_all(router, &mut s, &mut out);
        }
    });
    assert_eq!(winners, 500 * 10);
    assert_eq!(n, 0, "{n} allocations in {} matches", 500 * REQUESTS.len());
}

#[test]
fn the_counter_counts() {
    let n = allocations_in(|| {
        std::hint::black_box(vec![1u8; 16]);
    });
    assert_eq!(n, 1);
}

#[test]
fn matching_allocates_nothing_with_dense_partitions() {
    let router = CompiledRouter::build(&spec()).unwrap();
    assert_eq!(router.stats().lazy_partitions, 0);
    assert_no_allocations(&router);
}

#[test]
fn matching_allocates_nothing_with_lazy_partitions() {
    // The limit bounds the partition's NFA too: take the first that builds.
    let router = [64 << 10, 128 << 10, 256 << 10, 512 << 10]
        .into_iter()
        .find_map(|limit| {
            let mut spec = spec();
            spec.limits.max_automaton_bytes = limit;
            CompiledRouter::build(&spec).ok()
        })
        .expect("a small limit builds");
    assert!(router.stats().lazy_partitions > 0, "{:?}", router.stats());
    assert_no_allocations(&router);
}
