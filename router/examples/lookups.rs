//! Runs the bench workloads outside criterion, for stable measurements on a noisy
//! machine:
//!
//! - instruction counts per lookup under callgrind (only `run_lookups` is counted):
//!   `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_lookups*'
//!   target/release/examples/lookups github 1000`, then divide `Ir` by the lookups
//!   printed;
//! - peak memory of a compile: `/usr/bin/time -v target/release/examples/lookups
//!   compile 10000` ("Maximum resident set size").
//!
//! Usage: `lookups github ITERS | matchit ITERS | scale N ITERS | compile N`.

use ringway_router::*;
use std::hint::black_box;

#[path = "../benches/workloads/mod.rs"]
mod workloads;
use workloads::*;

/// The measured loop: every lookup `iters` times, reading every capture.
#[inline(never)]
fn run_lookups(router: &CompiledRouter, paths: &[String], iters: usize, s: &mut MatchScratch) -> usize {
    let mut hits = 0;
    for _ in 0..iters {
        for p in paths {
            let route = router.match_request(&view(black_box(p)), NO_HEADERS, s).unwrap();
            hits += route.is_some() as usize;
            for i in 0..s.group_count() {
                black_box(s.group(i));
            }
        }
    }
    hits
}

#[inline(never)]
fn warm_up(router: &CompiledRouter, paths: &[String], s: &mut MatchScratch) {
    for p in paths {
        let _ = router.match_request(&view(p), NO_HEADERS, s);
    }
}

/// The same loop over matchit, for calibration.
#[inline(never)]
fn run_lookups_matchit(router: &matchit::Router<usize>, paths: &[String], iters: usize) -> usize {
    let mut hits = 0;
    for _ in 0..iters {
        for p in paths {
            if let Ok(m) = router.at(black_box(p)) {
                hits += 1;
                black_box(m.value);
                for p in m.params.iter() {
                    black_box(p);
                }
            }
        }
    }
    hits
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (router, paths) = match args.first().map(String::as_str) {
        Some("github") => {
            let routes = read_lines("github-api-routes.txt");
            let lookups = read_lines("github-api-lookups.txt");
            let router = CompiledRouter::build(&github_spec(&routes)).unwrap();
            (router, lookups)
        }
        Some("matchit") => {
            let routes = read_lines("github-api-routes.txt");
            let lookups = read_lines("github-api-lookups.txt");
            let mut router = matchit::Router::new();
            for (i, r) in routes.iter().enumerate() {
                router.insert(r.as_str(), i).unwrap();
            }
            let iters = num(1, 1000);
            let hits = run_lookups_matchit(&router, &lookups, iters);
            println!(
                "{hits} hits in {} lookups ({} paths × {iters})",
                lookups.len() * iters,
                lookups.len()
            );
            return;
        }
        Some("scale") => {
            let n = num(1, 10_000);
            let router = CompiledRouter::build(&scale_spec(n)).unwrap();
            (router, scale_lookups(n).into_iter().map(|(p, _)| p).collect())
        }
        Some("compile") => {
            let n = num(1, 10_000);
            let spec = scale_spec(n);
            let t = std::time::Instant::now();
            let router = CompiledRouter::build(&spec).unwrap();
            println!("compiled {n} rules in {:?}: {:?}", t.elapsed(), router.stats());
            return;
        }
        _ => {
            eprintln!("usage: lookups github ITERS | matchit ITERS | scale N ITERS | compile N");
            std::process::exit(2);
        }
    };
    let iters = num(if args[0] == "github" { 1 } else { 2 }, 1000);
    let mut s = MatchScratch::default();
    // Warm up outside the measured call: grow the scratch, fill lazy caches, build
    // capture engines.
    warm_up(&router, &paths, &mut s);
    let hits = run_lookups(&router, &paths, iters, &mut s);
    println!(
        "{hits} hits in {} lookups ({} paths × {iters})",
        paths.len() * iters,
        paths.len()
    );
}
