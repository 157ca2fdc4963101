//! Explain: why a request routes where it does.

use crate::{CompiledRouter, MatchScratch, PathError, RequestView, RouteId};

/// The first matcher of a candidate rule that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Environment,
    Method,
    Host,
    /// Predicate `index` of the rule, described (`query 'region' equals`).
    Predicate {
        index: usize,
        what: String,
    },
    /// The path automaton matched but the capture regex did not (a bug if seen).
    Captures,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Environment => f.write_str("environment"),
            Failure::Method => f.write_str("method"),
            Failure::Host => f.write_str("host"),
            Failure::Predicate { index, what } => write!(f, "predicate {index} ({what})"),
            Failure::Captures => f.write_str("captures"),
        }
    }
}

/// A rule whose path matched, in rule order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub route: RouteId,
    pub group: String,
    pub rule: String,
    /// `None` for the winner (and for candidates after it, which were not checked).
    pub failed: Option<Failure>,
    /// Whether this candidate was checked (candidates after the winner are not).
    pub checked: bool,
}

/// One capture of the winner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureValue {
    pub index: usize,
    pub name: Option<String>,
    pub value: Option<String>,
}

/// Everything explain reports for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub normalized_path: String,
    pub candidates: Vec<Candidate>,
    pub winner: Option<RouteId>,
    pub captures: Vec<CaptureValue>,
    /// The rendered path and query of the winner's target (empty for local rules).
    pub target_path: String,
}

impl CompiledRouter {
    /// Matches `req` like [`CompiledRouter::match_request`] and reports every
    /// candidate, the first failing matcher of each loser, and the winner's captures.
    pub fn explain<'h>(
        &self,
        req: &RequestView<'_>,
        headers: &[(&'h [u8], &'h [u8])],
        s: &mut MatchScratch,
    ) -> Result<Explanation, PathError> {
        self.prepare(req, s)?;
        let normalized_path = String::from_utf8_lossy(s.path()).into_owned();
        let mut cands = s.candidates.clone();
        cands.dedup();
        let mut out = Explanation {
            normalized_path,
            candidates: Vec::with_capacity(cands.len()),
            winner: None,
            captures: Vec::new(),
            target_path: String::new(),
        };
        let mut headers = Some(headers.iter().copied());
        for c in cands {
            let rule = &self.rules[c as usize];
            let route = RouteId(c);
            let mut failed = None;
            let checked = out.winner.is_none();
            if checked {
                failed = self.first_failure(rule, req, &mut headers, s, true);
                if failed.is_none() {
                    if self.capture(rule, s) {
                        out.winner = Some(route);
                    } else {
                        failed = Some(Failure::Captures);
                    }
                }
            }
            out.candidates.push(Candidate {
                route,
                group: rule.group.to_string(),
                rule: rule.name.to_string(),
                failed,
                checked,
            });
        }
        if let Some(w) = out.winner {
            let rule = &self.rules[w.index()];
            out.captures = (0..rule.groups as usize)
                .map(|i| CaptureValue {
                    index: i,
                    name: rule
                        .names
                        .iter()
                        .find(|(_, g)| *g as usize == i)
                        .map(|(n, _)| n.to_string()),
                    value: s.group(i).map(|v| String::from_utf8_lossy(v).into_owned()),
                })
                .collect();
            let mut t = Vec::new();
            self.render_target(w, s, req.query, &mut t);
            out.target_path = String::from_utf8_lossy(&t).into_owned();
        }
        Ok(out)
    }
}
