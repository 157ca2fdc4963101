//! Target URL templates, in Gravitee's expression syntax.
//!
//! ```text
//! {#endpoints['default']}/stores/{#group[0]}      an endpoint (or endpoint group), then a path
//! http://store/stores/{#groupName['id']}          a literal origin, then a path
//! ```
//!
//! - `{#group[N]}`: capture group N of the rule's path regex, 0-based over the groups
//!   (the whole match is not a group); named groups count in that index too.
//! - `{#groupName['name']}`: the named group `name` (`"name"` works too).
//! - `{#endpoints['name']}`: a named endpoint or endpoint group. Only at the very start.
//!
//! A target starts with `{#endpoints[…]}` or with a literal `http://` / `https://`
//! origin; what follows is the path (and optionally a query). Templates are parsed and
//! checked when the router is compiled, so rendering cannot fail.

use crate::EndpointId;

/// Where a rendered target goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `{#endpoints['name']}`: resolved and load-balanced by the gateway.
    Endpoint(EndpointId),
    /// A literal origin such as `http://store:8080`.
    Url {
        /// `true` for `https`.
        tls: bool,
        /// `host[:port]` as written.
        authority: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Lit(Box<[u8]>),
    /// 0-based group index.
    Group(u16),
}

/// A parsed, checked target template.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub origin: Origin,
    pub pieces: Box<[Piece]>,
}

/// What is wrong with a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TemplateError {
    Syntax { offset: usize, message: String },
    GroupOutOfRange { index: usize, groups: usize },
    UnknownGroupName(String),
    UnknownEndpoint(String),
    NoOrigin,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Syntax { offset, message } => write!(f, "at offset {offset}: {message}"),
            TemplateError::GroupOutOfRange { index, groups } => write!(
                f,
                "{{#group[{index}]}} is out of range: the path has {groups} capture group(s)"
            ),
            TemplateError::UnknownGroupName(n) => {
                write!(f, "{{#groupName['{n}']}}: the path has no group named '{n}'")
            }
            TemplateError::UnknownEndpoint(n) => {
                write!(
                    f,
                    "{{#endpoints['{n}']}}: no endpoint or endpoint group named '{n}'"
                )
            }
            TemplateError::NoOrigin => {
                f.write_str("a target must start with {#endpoints['name']} or an http:// or https:// URL")
            }
        }
    }
}

enum Expr {
    Group(usize),
    GroupName(String),
    Endpoint(String),
}

/// Parses `{#…}` at `s[start..]` (which begins with `{#`). Returns the expression and the
/// offset after the closing `}`.
fn parse_expr(s: &str, start: usize) -> Result<(Expr, usize), TemplateError> {
    let err = |offset: usize, message: &str| TemplateError::Syntax {
        offset,
        message: message.into(),
    };
    let close = s[start..]
        .find('}')
        .map(|p| start + p)
        .ok_or_else(|| err(start, "unclosed '{'"))?;
    let body = &s[start + 2..close];
    let (name, arg) = body
        .split_once('[')
        .and_then(|(n, rest)| rest.strip_suffix(']').map(|a| (n.trim(), a.trim())))
        .ok_or_else(|| {
            err(
                start,
                "expected {#group[N]}, {#groupName['name']} or {#endpoints['name']}",
            )
        })?;
    let quoted = || {
        let q = arg.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        arg.strip_prefix(q)?.strip_suffix(q).map(str::to_string)
    };
    let expr = match name {
        "group" => Expr::Group(
            arg.parse()
                .map_err(|_| err(start, "the index in {#group[N]} must be a number"))?,
        ),
        "groupName" => Expr::GroupName(quoted().ok_or_else(|| err(start, "expected a quoted group name"))?),
        "endpoints" => Expr::Endpoint(quoted().ok_or_else(|| err(start, "expected a quoted endpoint name"))?),
        other => return Err(err(start, &format!("unknown expression '#{other}'"))),
    };
    Ok((expr, close + 1))
}

impl Template {
    /// Parses `s` for a rule whose path has `groups` capture groups named `names`.
    pub(crate) fn parse(
        s: &str,
        groups: usize,
        names: &[(String, u16)],
        endpoints: &[String],
    ) -> Result<Template, TemplateError> {
        // The origin.
        let (origin, mut pos) = if s.starts_with("{#") {
            match parse_expr(s, 0)? {
                (Expr::Endpoint(name), end) => {
                    let id = endpoints
                        .iter()
                        .position(|e| *e == name)
                        .ok_or(TemplateError::UnknownEndpoint(name))?;
                    (Origin::Endpoint(EndpointId(id as u32)), end)
                }
                _ => return Err(TemplateError::NoOrigin),
            }
        } else {
            let (tls, rest_at) = if s.starts_with("http://") {
                (false, 7)
            } else if s.starts_with("https://") {
                (true, 8)
            } else {
                return Err(TemplateError::NoOrigin);
            };
            let end = s[rest_at..]
                .find(['/', '?', '{'])
                .map_or(s.len(), |p| rest_at + p);
            let authority = &s[rest_at..end];
            if authority.is_empty() || s[end..].starts_with('{') {
                return Err(TemplateError::Syntax {
                    offset: end,
                    message: "the authority of a literal target must be literal and non-empty".into(),
                });
            }
            (
                Origin::Url {
                    tls,
                    authority: authority.to_string(),
                },
                end,
            )
        };
        if pos < s.len() && !s[pos..].starts_with(['/', '?']) {
            return Err(TemplateError::Syntax {
                offset: pos,
                message: "after the origin, a target continues with '/' or '?'".into(),
            });
        }
        // The path and query.
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        while pos < s.len() {
            if s[pos..].starts_with("{#") {
                let (expr, end) = parse_expr(s, pos)?;
                let index = match expr {
                    Expr::Group(i) if i < groups => i as u16,
                    Expr::Group(index) => return Err(TemplateError::GroupOutOfRange { index, groups }),
                    Expr::GroupName(n) => match names.iter().find(|(name, _)| *name == n) {
                        Some((_, i)) => *i,
                        None => return Err(TemplateError::UnknownGroupName(n)),
                    },
                    Expr::Endpoint(_) => {
                        return Err(TemplateError::Syntax {
                            offset: pos,
                            message: "{#endpoints[…]} may only start a target".into(),
                        })
                    }
                };
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit).into_boxed_slice()));
                }
                pieces.push(Piece::Group(index));
                pos = end;
            } else {
                let c = s[pos..].chars().next().map_or(1, char::len_utf8);
                lit.extend_from_slice(&s.as_bytes()[pos..pos + c]);
                pos += c;
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit.into_boxed_slice()));
        }
        Ok(Template {
            origin,
            pieces: pieces.into_boxed_slice(),
        })
    }

    /// Writes the path and query: the rendered template (`/` when empty), then the
    /// request's original query, merged after the template's own (`?` or `&`).
    pub(crate) fn render<'p>(
        &self,
        group: impl Fn(u16) -> Option<&'p [u8]>,
        query: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        for piece in self.pieces.iter() {
            match piece {
                Piece::Lit(l) => out.extend_from_slice(l),
                Piece::Group(i) => out.extend_from_slice(group(*i).unwrap_or_default()),
            }
        }
        if out.len() == start || out[start] == b'?' {
            out.insert(start, b'/');
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            let has_query = memchr::memchr(b'?', &out[start..]).is_some();
            out.push(if has_query { b'&' } else { b'?' });
            out.extend_from_slice(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps() -> Vec<String> {
        vec!["default".into(), "store12".into()]
    }

    fn render(t: &Template, groups: &[&str], query: Option<&str>) -> String {
        let mut out = Vec::new();
        t.render(
            |i| groups.get(i as usize).map(|g| g.as_bytes()),
            query.map(str::as_bytes),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn gravitee_named_group_example() {
        let names = vec![("version".to_string(), 0)];
        let t = Template::parse(
            "http://host1/products/api/{#groupName['version']}/{#group[0]}",
            1,
            &names,
            &eps(),
        )
        .unwrap();
        assert_eq!(
            t.origin,
            Origin::Url {
                tls: false,
                authority: "host1".into()
            }
        );
        assert_eq!(render(&t, &["v12"], None), "/products/api/v12/v12");
    }

    #[test]
    fn endpoint_origin_and_query_merge() {
        let t = Template::parse("{#endpoints['store12']}/s/{#group[1]}?a=1", 2, &[], &eps()).unwrap();
        assert_eq!(t.origin, Origin::Endpoint(EndpointId(1)));
        assert_eq!(render(&t, &["x", "y"], Some("b=2")), "/s/y?a=1&b=2");
        let t = Template::parse("{#endpoints['default']}", 0, &[], &eps()).unwrap();
        assert_eq!(render(&t, &[], Some("q=1")), "/?q=1");
        assert_eq!(render(&t, &[], None), "/");
    }

    #[test]
    fn errors_are_specific() {
        let p = |s: &str| Template::parse(s, 1, &[("id".into(), 0)], &eps()).unwrap_err();
        assert_eq!(
            p("{#endpoints['nope']}/x"),
            TemplateError::UnknownEndpoint("nope".into())
        );
        assert_eq!(
            p("http://h/{#group[1]}"),
            TemplateError::GroupOutOfRange { index: 1, groups: 1 }
        );
        assert_eq!(
            p("http://h/{#groupName['x']}"),
            TemplateError::UnknownGroupName("x".into())
        );
        assert_eq!(p("/relative"), TemplateError::NoOrigin);
        assert!(matches!(p("http://h/{#group[0]"), TemplateError::Syntax { .. }));
        assert!(matches!(p("http://h/{#foo[0]}"), TemplateError::Syntax { .. }));
        assert!(matches!(p("http://{#group[0]}/x"), TemplateError::Syntax { .. }));
        assert!(matches!(
            p("{#endpoints['default']}x"),
            TemplateError::Syntax { .. }
        ));
        assert!(matches!(
            p("http://h/{#endpoints['default']}"),
            TemplateError::Syntax { .. }
        ));
    }
}
