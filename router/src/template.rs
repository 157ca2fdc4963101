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
//! - `{#request.pathRest}`: the rest of the normalized path after what the rule
//!   matched — the group's context path and the route's prefix — as `/77`, `/`, or
//!   empty when the path is exactly the prefix. For prefix (and exact) paths; a regex
//!   names its parts with groups. `prefix = "/v1/orders"` with
//!   `to = "{#endpoints['b']}/orders{#request.pathRest}"` sends `/v1/orders/77` to
//!   `/orders/77` (nginx's `proxy_pass http://b/orders;` in a `location /v1/orders`,
//!   Kong's `strip_path`, Traefik's `StripPrefix`).
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
    /// `{#request.pathRest}`.
    Rest,
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
    RestInRegexRule,
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
            TemplateError::RestInRegexRule => f.write_str(
                "{#request.pathRest} needs a prefix or exact path; a regex path names its parts with {#group[N]}",
            ),
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
    PathRest,
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
    if body.trim() == "request.pathRest" {
        return Ok((Expr::PathRest, close + 1));
    }
    let (name, arg) = body
        .split_once('[')
        .and_then(|(n, rest)| rest.strip_suffix(']').map(|a| (n.trim(), a.trim())))
        .ok_or_else(|| {
            err(
                start,
                "expected {#group[N]}, {#groupName['name']}, {#endpoints['name']} or {#request.pathRest}",
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
    /// Parses `s` for a rule whose path has `groups` capture groups named `names`;
    /// `rest`: the rule's path is a prefix or exact one (`{#request.pathRest}` is
    /// allowed).
    pub(crate) fn parse(
        s: &str,
        groups: usize,
        names: &[(String, u16)],
        endpoints: &[String],
        rest: bool,
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
            let rest_next = s[end..].starts_with("{#request.pathRest}");
            if authority.is_empty() || (s[end..].starts_with('{') && !rest_next) {
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
        // `{#request.pathRest}` may follow the origin directly: it starts with `/`.
        let rest_next = s[pos..].starts_with("{#request.pathRest}");
        if pos < s.len() && !s[pos..].starts_with(['/', '?']) && !rest_next {
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
                let piece = match expr {
                    Expr::PathRest if !rest => return Err(TemplateError::RestInRegexRule),
                    Expr::PathRest => Piece::Rest,
                    Expr::Group(i) if i < groups => Piece::Group(i as u16),
                    Expr::Group(index) => return Err(TemplateError::GroupOutOfRange { index, groups }),
                    Expr::GroupName(n) => match names.iter().find(|(name, _)| *name == n) {
                        Some((_, i)) => Piece::Group(*i),
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
                pieces.push(piece);
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
        rest: &[u8],
        query: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        for piece in self.pieces.iter() {
            match piece {
                Piece::Lit(l) => out.extend_from_slice(l),
                Piece::Group(i) => out.extend_from_slice(group(*i).unwrap_or_default()),
                Piece::Rest => out.extend_from_slice(rest),
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
            b"",
            query.map(str::as_bytes),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn path_rest_renders_what_follows_the_prefix() {
        let t = Template::parse(
            "{#endpoints['default']}/orders{#request.pathRest}",
            0,
            &[],
            &eps(),
            true,
        )
        .unwrap();
        let render = |rest: &str, q: Option<&str>| {
            let mut out = Vec::new();
            t.render(|_| None, rest.as_bytes(), q.map(str::as_bytes), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(render("/77", None), "/orders/77");
        assert_eq!(render("", Some("a=1")), "/orders?a=1");
        assert_eq!(render("/", None), "/orders/");
        let t = Template::parse("{#endpoints['default']}{#request.pathRest}", 0, &[], &eps(), true).unwrap();
        let mut out = Vec::new();
        t.render(|_| None, b"", None, &mut out);
        assert_eq!(out, b"/", "an empty target is /");
        assert_eq!(
            Template::parse(
                "{#endpoints['default']}/x{#request.pathRest}",
                1,
                &[],
                &eps(),
                false
            )
            .unwrap_err(),
            TemplateError::RestInRegexRule
        );
        let t = Template::parse("http://b:8080{#request.pathRest}", 0, &[], &eps(), true).unwrap();
        assert_eq!(
            t.origin,
            Origin::Url {
                tls: false,
                authority: "b:8080".into()
            }
        );
    }

    #[test]
    fn gravitee_named_group_example() {
        let names = vec![("version".to_string(), 0)];
        let t = Template::parse(
            "http://host1/products/api/{#groupName['version']}/{#group[0]}",
            1,
            &names,
            &eps(),
            false,
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
        let t = Template::parse("{#endpoints['store12']}/s/{#group[1]}?a=1", 2, &[], &eps(), true).unwrap();
        assert_eq!(t.origin, Origin::Endpoint(EndpointId(1)));
        assert_eq!(render(&t, &["x", "y"], Some("b=2")), "/s/y?a=1&b=2");
        let t = Template::parse("{#endpoints['default']}", 0, &[], &eps(), true).unwrap();
        assert_eq!(render(&t, &[], Some("q=1")), "/?q=1");
        assert_eq!(render(&t, &[], None), "/");
    }

    #[test]
    fn errors_are_specific() {
        let p = |s: &str| Template::parse(s, 1, &[("id".into(), 0)], &eps(), false).unwrap_err();
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
