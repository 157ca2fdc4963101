//! The automaton tier: multi-pattern DFAs over the regexes that are neither literals
//! nor whole-segment patterns, one per (context path, first segment) partition.

use super::IndexError;
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::hybrid;
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

#[derive(Clone, Debug)]
enum Engine {
    Dense {
        dfa: dense::DFA<Vec<u32>>,
        start: StateID,
    },
    Lazy {
        dfa: hybrid::dfa::DFA,
        cache: usize,
    },
    /// A dense DFA whose anchored start state depends on look-behind (never for
    /// these patterns, which have no look-around at the start, but kept correct).
    DenseNoUniversalStart(dense::DFA<Vec<u32>>),
}

#[derive(Clone, Debug)]
pub(super) struct Partition {
    engine: Engine,
    /// Pattern id → rule id.
    rules: Box<[u32]>,
}

/// Per-request state of the lazy partitions.
#[derive(Clone, Debug, Default)]
pub(super) struct LazyCaches {
    caches: Vec<Option<hybrid::dfa::Cache>>,
}

/// Size limits of a partition.
#[derive(Clone, Copy, Debug)]
pub(super) struct PartitionLimits {
    /// Heap bytes of one dense DFA (and of the determinizer building it); a larger
    /// partition goes lazy.
    pub automaton: usize,
    /// NFA bytes of one rule's regex. A partition's NFA is bounded by the sum over its
    /// rules, each of which fits this (checked when the rule is compiled).
    pub regex: usize,
}

fn nfa_config(limit: usize) -> thompson::Config {
    thompson::Config::new()
        .which_captures(thompson::WhichCaptures::None)
        .nfa_size_limit(Some(limit))
}

impl Partition {
    pub(super) fn build(
        patterns: &[&str],
        rules: Vec<u32>,
        limits: PartitionLimits,
        lazy_count: &mut usize,
    ) -> Result<Partition, IndexError> {
        // The union of the rules' NFAs, plus slack for the alternation joining them.
        let nfa_limit = limits
            .regex
            .saturating_add(1 << 10)
            .saturating_mul(patterns.len());
        let dense = dense::Builder::new()
            .syntax(crate::pattern::syntax_config())
            .thompson(nfa_config(nfa_limit))
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(limits.automaton))
                    .determinize_size_limit(Some(limits.automaton)),
            )
            .build_many(patterns);
        let engine = match dense {
            Ok(dfa) => match dfa.universal_start_state(Anchored::Yes) {
                Some(start) => Engine::Dense { dfa, start },
                None => Engine::DenseNoUniversalStart(dfa),
            },
            Err(_) => {
                let lazy = hybrid::dfa::Builder::new()
                    .syntax(crate::pattern::syntax_config())
                    .thompson(nfa_config(nfa_limit))
                    .configure(
                        hybrid::dfa::Config::new()
                            .match_kind(MatchKind::All)
                            .cache_capacity((limits.automaton / 4).max(1 << 20))
                            .skip_cache_capacity_check(true),
                    )
                    .build_many(patterns);
                match lazy {
                    Ok(dfa) => {
                        *lazy_count += 1;
                        Engine::Lazy {
                            dfa,
                            cache: *lazy_count - 1,
                        }
                    }
                    Err(e) => {
                        // Single out the rule that is too big on its own, if there is one.
                        let culprit = patterns.iter().zip(&rules).find(|(p, _)| {
                            thompson::Compiler::new()
                                .syntax(crate::pattern::syntax_config())
                                .configure(nfa_config(limits.regex))
                                .build(p)
                                .is_err()
                        });
                        return Err(IndexError {
                            rule: culprit.map(|(_, r)| *r),
                            message: format!(
                                "path automaton exceeds its size limit ({} bytes per rule): {e}",
                                limits.regex
                            ),
                        });
                    }
                }
            }
        };
        Ok(Partition {
            engine,
            rules: rules.into_boxed_slice(),
        })
    }

    /// Appends the rules whose pattern matches the whole of `hay`.
    #[inline]
    pub(super) fn run(&self, hay: &[u8], out: &mut Vec<u32>, lazy: &mut LazyCaches, lazy_total: usize) {
        match &self.engine {
            Engine::Dense { dfa, start } => self.run_dense(dfa, *start, hay, out),
            Engine::DenseNoUniversalStart(dfa) => {
                if let Ok(start) = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)) {
                    self.run_dense(dfa, start, hay, out);
                }
            }
            Engine::Lazy { dfa, cache } => {
                if lazy.caches.len() < lazy_total {
                    lazy.caches.resize_with(lazy_total, || None);
                }
                let cache = lazy.caches[*cache].get_or_insert_with(|| dfa.create_cache());
                let Ok(mut s) = dfa.start_state(cache, &start::Config::new().anchored(Anchored::Yes)) else {
                    return;
                };
                for &b in hay {
                    let Ok(next) = dfa.next_state(cache, s, b) else {
                        return;
                    };
                    s = next;
                    if s.is_dead() || s.is_quit() {
                        return;
                    }
                }
                let Ok(s) = dfa.next_eoi_state(cache, s) else {
                    return;
                };
                if s.is_match() {
                    for i in 0..dfa.match_len(cache, s) {
                        out.push(self.rules[dfa.match_pattern(cache, s, i).as_usize()]);
                    }
                }
            }
        }
    }

    #[inline]
    fn run_dense(&self, dfa: &dense::DFA<Vec<u32>>, start: StateID, hay: &[u8], out: &mut Vec<u32>) {
        let mut s = start;
        for &b in hay {
            s = dfa.next_state(s, b);
            // Match states are delayed by one byte and only the end-of-input
            // transition below matters, so the only special states to stop at are
            // dead and quit (no quit bytes are configured, but stay correct).
            if dfa.is_special_state(s) && (dfa.is_dead_state(s) || dfa.is_quit_state(s)) {
                return;
            }
        }
        s = dfa.next_eoi_state(s);
        if dfa.is_match_state(s) {
            for i in 0..dfa.match_len(s) {
                out.push(self.rules[dfa.match_pattern(s, i).as_usize()]);
            }
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.rules.len() * 4
            + match &self.engine {
                Engine::Dense { dfa, .. } | Engine::DenseNoUniversalStart(dfa) => dfa.memory_usage(),
                Engine::Lazy { dfa, .. } => dfa.memory_usage(),
            }
    }
}
