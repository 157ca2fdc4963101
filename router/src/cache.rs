//! What a build learns of each path regex, kept for the next build.
//!
//! A reload of a large config usually changes a few rules, yet a build parses every
//! path regex (its groups, shape and first segments, [`crate::pattern::analyze`]) and
//! compiles its Thompson NFA to check it against
//! [`crate::BuildLimits::max_regex_bytes`]. For 3,334 regex rules that was a third of a
//! reload's CPU (docs/benchmarks.md, "Reload of 10,000 rules under load"). Both
//! results depend only on the pattern's text (and the limit), so a [`CompileCache`]
//! keeps them by pattern and a rebuild works only on the patterns it has not seen.
//!
//! The cache holds what the running config uses (marked by [`CompileCache::commit`]
//! once its build is in service) and what the last attempt used, nothing else: an
//! entry that neither uses is dropped when a build ends, so a long run of edits,
//! good or refused, does not grow it.

use crate::pattern::{self, PatternError, PatternInfo};
use std::collections::HashMap;
use std::sync::Arc;

/// Pattern analyses kept between builds; pass the same one to every
/// [`crate::CompiledRouter::build_cached`] of a process. Not shared: one per
/// thread that builds.
#[derive(Debug, Default)]
pub struct CompileCache {
    patterns: HashMap<Box<str>, Analysis>,
    /// The build under way (or the last one); every entry records the last build
    /// that used it.
    build: u64,
    reused: usize,
}

#[derive(Debug)]
struct Analysis {
    info: Result<Arc<PatternInfo>, PatternError>,
    /// The NFA size check, with the limit it ran under.
    fits: Option<(usize, Result<(), String>)>,
    used: u64,
    /// Used by the config in service ([`CompileCache::commit`]).
    running: bool,
}

/// How much the last build took from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// Patterns the cache holds now.
    pub patterns: usize,
    /// Analyses the last build found in the cache instead of computing.
    pub reused: usize,
}

impl CompileCache {
    /// What the last build reused, and what the cache holds.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            patterns: self.patterns.len(),
            reused: self.reused,
        }
    }

    pub(crate) fn begin(&mut self) {
        self.build += 1;
        self.reused = 0;
    }

    /// The last build's router is now the one in service: what it used is kept
    /// until another build is committed, whatever builds fail in between.
    pub fn commit(&mut self) {
        let now = self.build;
        for a in self.patterns.values_mut() {
            a.running = a.used == now;
        }
    }

    /// Drops what neither this build nor the config in service used.
    pub(crate) fn finish(&mut self) {
        let now = self.build;
        self.patterns.retain(|_, a| a.used == now || a.running);
    }

    /// [`pattern::analyze`] of `p`.
    pub(crate) fn analyze(&mut self, p: &str) -> Result<Arc<PatternInfo>, PatternError> {
        let now = self.build;
        if let Some(a) = self.patterns.get_mut(p) {
            if a.used != now {
                a.used = now;
                self.reused += 1;
            }
            return a.info.clone();
        }
        let info = pattern::analyze(p).map(Arc::new);
        let a = Analysis {
            info: info.clone(),
            fits: None,
            used: now,
            running: false,
        };
        self.patterns.insert(p.into(), a);
        info
    }

    /// Whether `p` compiles to a Thompson NFA within `limit` bytes (the error says
    /// why not). Remembered only for a pattern [`CompileCache::analyze`] has seen.
    pub(crate) fn fits(&mut self, p: &str, limit: usize) -> Result<(), String> {
        let known = self.patterns.get(p).and_then(|a| a.fits.as_ref());
        if let Some((_, r)) = known.filter(|(l, _)| *l == limit) {
            return r.clone();
        }
        let r = regex_automata::nfa::thompson::Compiler::new()
            .syntax(pattern::syntax_config())
            .configure(regex_automata::nfa::thompson::Config::new().nfa_size_limit(Some(limit)))
            .build(p)
            .map(drop)
            .map_err(|e| e.to_string());
        if let Some(a) = self.patterns.get_mut(p) {
            a.fits = Some((limit, r.clone()));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActionSpec, CompiledRouter, PathSpec, RouterSpec, RuleSpec};

    fn spec(paths: &[&str]) -> RouterSpec {
        RouterSpec {
            rules: paths
                .iter()
                .enumerate()
                .map(|(i, p)| RuleSpec {
                    name: format!("r{i}"),
                    group: "g".into(),
                    hosts: vec![],
                    methods: vec![],
                    context_path: None,
                    path: PathSpec::Regex(p.to_string()),
                    predicates: vec![],
                    environments: None,
                    action: ActionSpec::Local,
                })
                .collect(),
            environments: vec!["online".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_rebuild_reuses_every_pattern_and_keeps_only_the_used_ones() {
        let mut cache = CompileCache::default();
        let a = spec(&["/a/([^/]+)", "/b/(.*)", "/c/v[0-9]+"]);
        CompiledRouter::build_cached(&a, &mut cache).unwrap();
        let first = cache.stats();
        assert_eq!(
            first,
            CacheStats {
                patterns: 3,
                reused: 0
            }
        );
        CompiledRouter::build_cached(&a, &mut cache).unwrap();
        assert_eq!(
            cache.stats(),
            CacheStats {
                patterns: 3,
                reused: 3
            }
        );
        // One pattern changed: two reused, the old one dropped, the new one kept.
        let b = spec(&["/a/([^/]+)", "/b/(.*)", "/d/x(y|z)"]);
        CompiledRouter::build_cached(&b, &mut cache).unwrap();
        assert_eq!(
            cache.stats(),
            CacheStats {
                patterns: 3,
                reused: 2
            }
        );
        assert!(cache.patterns.contains_key("/d/x(y|z)") && !cache.patterns.contains_key("/c/v[0-9]+"));
    }

    #[test]
    fn failed_builds_keep_the_running_config_s_patterns() {
        let mut cache = CompileCache::default();
        let good = spec(&["/a/([^/]+)", "/b/(.*)"]);
        CompiledRouter::build_cached(&good, &mut cache).unwrap();
        cache.commit();
        // A refused build that shares a pattern with the running config, then one
        // that shares none: both keep the running config's patterns.
        let bad = spec(&["/a/([^/]+)", "/y/(unclosed"]);
        let e = CompiledRouter::build_cached(&bad, &mut cache).unwrap_err();
        assert!(e.to_string().contains("invalid path regex"), "{e}");
        let worse = spec(&["/z/(unclosed"]);
        let e2 = CompiledRouter::build_cached(&worse, &mut cache).unwrap_err();
        assert!(e2.to_string().contains("invalid path regex"), "{e2}");
        assert_eq!(
            cache.stats().patterns,
            3,
            "the running two and the last attempt's one"
        );
        // A refused build's error is remembered like any analysis.
        let again = CompiledRouter::build_cached(&worse, &mut cache).unwrap_err();
        assert_eq!((e2.to_string(), cache.stats().reused), (again.to_string(), 1));
        CompiledRouter::build_cached(&good, &mut cache).unwrap();
        assert_eq!(
            cache.stats(),
            CacheStats {
                patterns: 2,
                reused: 2
            }
        );
    }

    #[test]
    fn a_build_not_committed_does_not_replace_the_running_one() {
        let mut cache = CompileCache::default();
        CompiledRouter::build_cached(&spec(&["/a/([^/]+)"]), &mut cache).unwrap();
        cache.commit();
        // Built, but (say) refused later by the gateway: not committed.
        CompiledRouter::build_cached(&spec(&["/b/([^/]+)"]), &mut cache).unwrap();
        CompiledRouter::build_cached(&spec(&["/c/([^/]+)"]), &mut cache).unwrap();
        assert!(cache.patterns.contains_key("/a/([^/]+)") && !cache.patterns.contains_key("/b/([^/]+)"));
        cache.commit();
        CompiledRouter::build_cached(&spec(&["/d/([^/]+)"]), &mut cache).unwrap();
        assert!(!cache.patterns.contains_key("/a/([^/]+)") && cache.patterns.contains_key("/c/([^/]+)"));
    }

    #[test]
    fn the_size_check_runs_again_under_another_limit() {
        let mut cache = CompileCache::default();
        let mut s = spec(&["/a/(x|y|z)+[0-9]{1,30}"]);
        CompiledRouter::build_cached(&s, &mut cache).unwrap();
        s.limits.max_regex_bytes = 64;
        let e = CompiledRouter::build_cached(&s, &mut cache).unwrap_err();
        assert!(
            e.is_size_limit_exceeded() && e.to_string().contains("too large"),
            "{e}"
        );
        s.limits.max_regex_bytes = 1 << 20;
        CompiledRouter::build_cached(&s, &mut cache).unwrap();
    }
}
