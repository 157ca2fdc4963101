//! Build errors: what is wrong, with which rule, and where in it.

use std::fmt;

/// Which part of a rule an error is about, so the config layer can point at the
/// right line of the user's file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSite {
    /// The rule as a whole (for example a duplicate name).
    Rule,
    /// The path matcher; `offset` is the byte offset inside a regex when known.
    Path { offset: Option<usize> },
    /// The group's context path.
    ContextPath,
    /// The target template (`to`).
    Target,
    /// The i-th host.
    Host(usize),
    /// The i-th method.
    Method(usize),
    /// The i-th predicate; `offset` inside its regex when known.
    Predicate { index: usize, offset: Option<usize> },
    /// The i-th environment.
    Environment(usize),
    /// Not about one rule (for example too many environments).
    Router,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Invalid,
    SizeLimit,
}

/// Why a [`crate::CompiledRouter`] could not be built.
#[derive(Clone, Debug)]
pub struct BuildError {
    rule: Option<usize>,
    rule_name: Option<String>,
    site: ErrorSite,
    kind: Kind,
    message: String,
}

impl BuildError {
    pub(crate) fn new(rule: Option<(usize, String)>, site: ErrorSite, message: impl Into<String>) -> Self {
        let (rule, rule_name) = match rule {
            Some((i, n)) => (Some(i), Some(n)),
            None => (None, None),
        };
        BuildError {
            rule,
            rule_name,
            site,
            kind: Kind::Invalid,
            message: message.into(),
        }
    }

    pub(crate) fn size_limit(mut self) -> Self {
        self.kind = Kind::SizeLimit;
        self
    }

    /// The index of the offending rule in [`crate::RouterSpec::rules`], if one is to blame.
    pub fn rule_index(&self) -> Option<usize> {
        self.rule
    }

    /// Which part of the rule is wrong.
    pub fn site(&self) -> ErrorSite {
        self.site
    }

    /// The message without the rule's name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when a compile-time size limit ([`crate::BuildLimits`]) was exceeded.
    pub fn is_size_limit_exceeded(&self) -> bool {
        self.kind == Kind::SizeLimit
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.rule_name {
            write!(f, "rule '{name}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}
