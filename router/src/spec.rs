//! What the router is built from: ordered rules, as plain data.
//!
//! These types are the router's input. The gateway's config layer turns the user's
//! TOML into a [`RouterSpec`]; tests and benches build one directly.

/// Everything a [`crate::CompiledRouter`] is compiled from.
#[derive(Clone, Debug, Default)]
pub struct RouterSpec {
    /// Rules in declaration order: the first whose matchers all hold wins.
    pub rules: Vec<RuleSpec>,
    /// Names that `{#endpoints['name']}` may refer to (single endpoints and endpoint
    /// groups alike). An [`crate::EndpointId`] is an index into this list.
    pub endpoints: Vec<String>,
    /// Environment names (for example `test`, `pre-release`, `online`). An
    /// [`crate::EnvId`] is an index into this list. Rules naming an environment that is
    /// not listed here are a build error.
    pub environments: Vec<String>,
    /// How request paths are normalized before matching.
    pub normalize: NormalizeOptions,
    /// Explicit compile-time limits.
    pub limits: BuildLimits,
}

/// One routing rule.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    /// The rule's name, unique within its group; used in errors, metrics and explain.
    pub name: String,
    /// The API group the rule belongs to.
    pub group: String,
    /// Hosts the rule answers for: exact (`api.example.com`) or a leading wildcard
    /// (`*.example.com`, which matches `a.example.com` and `a.b.example.com` but not
    /// `example.com`). Case-insensitive; the port is ignored. Empty = any host.
    pub hosts: Vec<String>,
    /// Methods the rule answers for, case-sensitive as RFC 9110 says. Empty = any.
    pub methods: Vec<String>,
    /// The group's context path (`/store`), stripped before `path` is matched. `None`
    /// or `"/"` = none.
    pub context_path: Option<String>,
    /// The path matcher.
    pub path: PathSpec,
    /// Query and header predicates; all must hold. At most
    /// [`BuildLimits::max_predicates_per_rule`] per rule.
    pub predicates: Vec<PredicateSpec>,
    /// Environments the rule is live in. `None` = every environment.
    pub environments: Option<Vec<String>>,
    /// What the rule does when it wins.
    pub action: ActionSpec,
}

/// How a rule matches the (normalized, context-stripped) path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSpec {
    /// The whole path equals this string.
    Exact(String),
    /// Segment-aware prefix: `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`.
    Prefix(String),
    /// A regular expression that must match the whole path. Capture groups, indexed
    /// and named (`(?<id>…)`), are available to the target template.
    Regex(String),
}

/// Where a predicate looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A query parameter; names and values are compared percent-decoded.
    Query,
    /// A request header; names are case-insensitive, values compared as sent.
    Header,
}

/// A test on the occurrences of one query parameter or header.
#[derive(Clone, Debug)]
pub struct PredicateSpec {
    pub source: Source,
    pub name: String,
    pub op: PredicateOp,
}

/// The test a predicate applies. A repeated key satisfies a predicate if any
/// occurrence does; [`PredicateOp::Absent`] holds only when no occurrence exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PredicateOp {
    Equals(String),
    OneOf(Vec<String>),
    Prefix(String),
    /// Must match the whole value.
    Regex(String),
    Present,
    Absent,
}

/// What a winning rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionSpec {
    /// Proxy to a target URL template in Gravitee's syntax, for example
    /// `{#endpoints['default']}/stores/{#group[0]}`.
    Proxy { to: String },
    /// Answer locally; the gateway keeps the response itself.
    Local,
}

/// How `%2F` (an encoded `/`) in a request path is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncodedSlash {
    /// The request is rejected (the gateway answers 400). The default: an encoded
    /// slash is the classic way to smuggle a path past a prefix rule.
    #[default]
    Reject,
    /// Kept as `%2F`: it is not a segment separator for matching and is forwarded as is.
    Keep,
    /// Decoded to `/` before dot-segment removal and matching.
    Decode,
}

/// What a backslash (`\`, or `%5C`) in a path does. Windows servers, IIS and some
/// frameworks read it as `/`, so `/public\..\admin` reaches `/admin` there while a
/// prefix rule sees `/public…`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backslash {
    /// The request is rejected (the gateway answers 400). The default.
    #[default]
    Reject,
    /// Read as `/` before dot-segment removal and matching (and forwarded as `/`).
    Slash,
}

/// What a `;` in a path does. Tomcat, Jetty and Spring strip `;` path parameters
/// (`/admin;x=1` is `/admin` to them), so a rule for `/admin` must see it that way
/// or refuse it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Semicolon {
    /// The request is rejected (the gateway answers 400). The default.
    #[default]
    Reject,
    /// Each segment's `;…` parameters are removed before matching (and from what is
    /// forwarded): `/a;x=1/b;y` is `/a/b`.
    Strip,
    /// Kept as an ordinary byte of the segment.
    Keep,
}

/// Path normalization options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Merge runs of `/` into one (default `true`).
    pub merge_slashes: bool,
    /// What to do with `%2F`.
    pub encoded_slash: EncodedSlash,
    /// What to do with `\` and `%5C`.
    pub backslash: Backslash,
    /// What to do with `;`.
    pub semicolon: Semicolon,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        NormalizeOptions {
            merge_slashes: true,
            encoded_slash: EncodedSlash::Reject,
            backslash: Backslash::Reject,
            semicolon: Semicolon::Reject,
        }
    }
}

/// Explicit compile-time limits. Exceeding one is a build error naming the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildLimits {
    /// Predicates (query + header) per rule. JD Cloud API Gateway allows 20.
    pub max_predicates_per_rule: usize,
    /// Size limit of one rule's compiled regex (bytes of heap), passed to regex-automata.
    pub max_regex_bytes: usize,
    /// Size limit of one path automaton partition (bytes of heap).
    pub max_automaton_bytes: usize,
}

impl Default for BuildLimits {
    fn default() -> Self {
        BuildLimits {
            max_predicates_per_rule: 20,
            max_regex_bytes: 1 << 20,
            max_automaton_bytes: 16 << 20,
        }
    }
}
