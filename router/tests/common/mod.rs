//! Shared helpers for the router's integration tests: a TOML mirror of rules (the same
//! shape as the gateway's config) and converters into [`RouterSpec`].

#![allow(dead_code)]

use ringway_router::*;
use serde::Deserialize;

/// A rule as written in `tests/data/*.toml`, mirroring [`RuleSpec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleToml {
    pub name: String,
    #[serde(default = "default_group")]
    pub group: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub context_path: Option<String>,
    pub path: PathToml,
    #[serde(default)]
    pub query: Vec<PredicateToml>,
    #[serde(default)]
    pub headers: Vec<PredicateToml>,
    pub environments: Option<Vec<String>>,
    pub to: Option<String>,
    #[serde(default)]
    pub local: bool,
}

fn default_group() -> String {
    "g".into()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathToml {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// `{ name = "region", equals = "eu" }`: exactly one op.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateToml {
    pub name: String,
    pub equals: Option<String>,
    pub one_of: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    #[serde(default)]
    pub present: bool,
    #[serde(default)]
    pub absent: bool,
}

impl PredicateToml {
    fn to_spec(&self, source: Source) -> PredicateSpec {
        let mut ops = Vec::new();
        if let Some(v) = &self.equals {
            ops.push(PredicateOp::Equals(v.clone()));
        }
        if let Some(v) = &self.one_of {
            ops.push(PredicateOp::OneOf(v.clone()));
        }
        if let Some(v) = &self.prefix {
            ops.push(PredicateOp::Prefix(v.clone()));
        }
        if let Some(v) = &self.regex {
            ops.push(PredicateOp::Regex(v.clone()));
        }
        if self.present {
            ops.push(PredicateOp::Present);
        }
        if self.absent {
            ops.push(PredicateOp::Absent);
        }
        assert_eq!(ops.len(), 1, "predicate {:?} needs exactly one op", self);
        PredicateSpec {
            source,
            name: self.name.clone(),
            op: ops.pop().unwrap(),
        }
    }
}

impl RuleToml {
    pub fn to_spec(&self) -> RuleSpec {
        assert!(
            self.local != self.to.is_some(),
            "rule {}: exactly one of `to` and `local = true`",
            self.name
        );
        let mut predicates: Vec<PredicateSpec> =
            self.query.iter().map(|p| p.to_spec(Source::Query)).collect();
        predicates.extend(self.headers.iter().map(|p| p.to_spec(Source::Header)));
        RuleSpec {
            name: self.name.clone(),
            group: self.group.clone(),
            hosts: self.hosts.clone(),
            methods: self.methods.clone(),
            context_path: self.context_path.clone(),
            path: match &self.path {
                PathToml::Exact(p) => PathSpec::Exact(p.clone()),
                PathToml::Prefix(p) => PathSpec::Prefix(p.clone()),
                PathToml::Regex(p) => PathSpec::Regex(p.clone()),
            },
            predicates,
            environments: self.environments.clone(),
            action: match &self.to {
                Some(to) => ActionSpec::Proxy { to: to.clone() },
                None => ActionSpec::Local,
            },
        }
    }
}

/// Router-wide settings, flattened into each file (or each build-error case).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterToml {
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    pub merge_slashes: Option<bool>,
    /// `reject`, `keep` or `decode`.
    pub encoded_slash: Option<String>,
    /// `reject` or `slash`.
    pub backslash: Option<String>,
    /// `reject`, `strip` or `keep`.
    pub semicolon: Option<String>,
    pub max_predicates_per_rule: Option<usize>,
}

impl RouterToml {
    pub fn to_spec(&self, rules: &[RuleToml]) -> RouterSpec {
        let mut normalize = NormalizeOptions::default();
        if let Some(m) = self.merge_slashes {
            normalize.merge_slashes = m;
        }
        if let Some(e) = &self.encoded_slash {
            normalize.encoded_slash = match e.as_str() {
                "reject" => EncodedSlash::Reject,
                "keep" => EncodedSlash::Keep,
                "decode" => EncodedSlash::Decode,
                other => panic!("encoded_slash = {other:?}: reject, keep or decode"),
            };
        }
        if let Some(b) = &self.backslash {
            normalize.backslash = match b.as_str() {
                "reject" => Backslash::Reject,
                "slash" => Backslash::Slash,
                other => panic!("backslash = {other:?}: reject or slash"),
            };
        }
        if let Some(sc) = &self.semicolon {
            normalize.semicolon = match sc.as_str() {
                "reject" => Semicolon::Reject,
                "strip" => Semicolon::Strip,
                "keep" => Semicolon::Keep,
                other => panic!("semicolon = {other:?}: reject, strip or keep"),
            };
        }
        let mut limits = BuildLimits::default();
        if let Some(m) = self.max_predicates_per_rule {
            limits.max_predicates_per_rule = m;
        }
        RouterSpec {
            rules: rules.iter().map(RuleToml::to_spec).collect(),
            endpoints: self.endpoints.clone(),
            environments: self.environments.clone(),
            normalize,
            limits,
        }
    }
}

/// `path`, `path@3`, `predicate 2`, `predicate 0@4`, `host 1`, … — a stable spelling of
/// an [`ErrorSite`] for data files.
pub fn site_string(site: ErrorSite) -> String {
    let at = |o: Option<usize>| o.map(|o| format!("@{o}")).unwrap_or_default();
    match site {
        ErrorSite::Rule => "rule".into(),
        ErrorSite::Path { offset } => format!("path{}", at(offset)),
        ErrorSite::ContextPath => "context_path".into(),
        ErrorSite::Target => "target".into(),
        ErrorSite::Host(i) => format!("host {i}"),
        ErrorSite::Method(i) => format!("method {i}"),
        ErrorSite::Predicate { index, offset } => format!("predicate {index}{}", at(offset)),
        ErrorSite::Environment(i) => format!("environment {i}"),
        ErrorSite::Router => "router".into(),
    }
}
