//! The decision for one request: environment, route, and what the route does —
//! answer with its mock, proxy to a rendered target, or refuse.
//!
//! [`decide`] is pure: it reads a snapshot, a router and a protocol-neutral view
//! of the request ([`RequestParts`] and the header fields), and writes only the
//! rendered target into the caller's buffer. The gateway calls it for every request
//! and `ringway explain` calls the same function, so what `explain` says is what the
//! gateway does. Picking a member of an endpoint group is left to the caller: it
//! depends on per-shard balancer state, and `explain` shows the members instead.

use crate::snapshot::Snapshot;
use crate::upstream::UpstreamId;
use ringway_router::{
    CompiledRouter, EndpointId, EnvId, MatchScratch, Origin, PathError, RequestView, RouteId,
};
use std::borrow::Cow;

/// What routing needs of a request, whatever protocol carried it.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a [u8],
    /// The authority: an absolute-form target's, else the Host field.
    pub host: Option<&'a [u8]>,
    /// The raw path, as sent (`/` when the target had none).
    pub path: &'a [u8],
    /// The query, without its `?`.
    pub query: Option<&'a [u8]>,
    /// An environment chosen by the caller (`explain --env`); `None`: the stage
    /// header's, else the config's default.
    pub env: Option<EnvId>,
}

/// Where a proxied request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// An endpoint (single or group): the shard's balancer picks the member.
    Endpoint(EndpointId),
    /// A literal origin in the target (`http://host:port/…`), resolved at load.
    Upstream(UpstreamId),
}

/// Why a request is refused before anything is proxied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The stage header names no environment of the config.
    UnknownStage,
    /// The path cannot be normalized.
    BadPath(PathError),
    /// No rule matches.
    NoMatch,
    /// The route's target names nothing to send to.
    NoUpstream,
}

impl Refusal {
    /// The status answered; `no_match_status` is the config's for [`Refusal::NoMatch`].
    pub fn status(self, no_match_status: u16) -> u16 {
        match self {
            Refusal::UnknownStage | Refusal::BadPath(_) => 400,
            Refusal::NoMatch => no_match_status,
            Refusal::NoUpstream => 503,
        }
    }

    /// The problem, as the error body names it.
    pub fn problem(self) -> Cow<'static, str> {
        match self {
            Refusal::UnknownStage => "unknown stage (environment) requested".into(),
            Refusal::BadPath(e) => e.to_string().into(),
            Refusal::NoMatch => "no route matches this request".into(),
            Refusal::NoUpstream => "no upstream endpoint available for this route".into(),
        }
    }
}

/// What a request turned out to need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer with the route's mock response.
    Mock { env: EnvId, route: RouteId },
    /// Proxy to `dest`; the target (path and query) was rendered into the buffer.
    Proxy { env: EnvId, route: RouteId, dest: Dest },
    /// Answer an error naming the problem.
    Refuse {
        env: Option<EnvId>,
        route: Option<RouteId>,
        refusal: Refusal,
    },
}

impl Decision {
    /// The environment served, once known.
    pub fn env(&self) -> Option<EnvId> {
        match self {
            Decision::Mock { env, .. } | Decision::Proxy { env, .. } => Some(*env),
            Decision::Refuse { env, .. } => *env,
        }
    }

    /// The winning rule, if one matched.
    pub fn route(&self) -> Option<RouteId> {
        match self {
            Decision::Mock { route, .. } | Decision::Proxy { route, .. } => Some(*route),
            Decision::Refuse { route, .. } => *route,
        }
    }
}

/// Decides `req`: environment, rule, then mock, proxy (with the target rendered
/// into `target`, which is cleared first) or refusal. `headers` are the request's
/// field lines (names in any case); `router` is the snapshot's router or a shard's
/// clone of it.
pub fn decide<'h, H>(
    snap: &Snapshot,
    router: &CompiledRouter,
    req: &RequestParts<'_>,
    headers: H,
    scratch: &mut MatchScratch,
    target: &mut Vec<u8>,
) -> Decision
where
    H: IntoIterator<Item = (&'h [u8], &'h [u8])> + Clone,
{
    let env = match req.env {
        Some(e) => e,
        None => match stage(snap, router, headers.clone()) {
            Ok(e) => e,
            Err(refusal) => {
                return Decision::Refuse {
                    env: None,
                    route: None,
                    refusal,
                }
            }
        },
    };
    let view = RequestView {
        method: req.method,
        host: req.host,
        path: req.path,
        query: req.query,
        env,
    };
    let route = match router.match_request(&view, headers, scratch) {
        Err(e) => {
            return Decision::Refuse {
                env: Some(env),
                route: None,
                refusal: Refusal::BadPath(e),
            }
        }
        Ok(None) => {
            return Decision::Refuse {
                env: Some(env),
                route: None,
                refusal: Refusal::NoMatch,
            }
        }
        Ok(Some(r)) => r,
    };
    if snap
        .config
        .routes
        .get(route.index())
        .is_some_and(|r| r.mock.is_some())
    {
        return Decision::Mock { env, route };
    }
    target.clear();
    let dest = match router.render_target(route, scratch, req.query, target) {
        Some(Origin::Endpoint(e)) => Some(Dest::Endpoint(snap.endpoint_in(route, env, *e))),
        Some(o) => snap.literal_upstream(o).map(Dest::Upstream),
        None => None,
    };
    match dest {
        Some(dest) => Decision::Proxy { env, route, dest },
        None => Decision::Refuse {
            env: Some(env),
            route: Some(route),
            refusal: Refusal::NoUpstream,
        },
    }
}

/// The environment the stage header asks for, or the default without one.
fn stage<'h>(
    snap: &Snapshot,
    router: &CompiledRouter,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<EnvId, Refusal> {
    let Some(name) = &snap.stage_header else {
        return Ok(snap.default_env);
    };
    match headers.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        None => Ok(snap.default_env),
        Some((_, v)) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| router.env_id(v))
            .ok_or(Refusal::UnknownStage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const CONFIG: &str = r#"
[server]
stage_header = "x-stage"
no_match_status = 404

[endpoints]
users = "http://127.0.0.1:9001"

[[groups]]
name = "api"

[[groups.routes]]
name = "health"
path = { exact = "/health" }
mock = { status = 204 }

[[groups.routes]]
name = "user"
path = { regex = "/users/([0-9]+)" }
methods = ["GET"]
to = "{#endpoints['users']}/u/{#group[0]}"

[[groups.routes]]
name = "literal"
path = { prefix = "/lit" }
to = "http://127.0.0.1:9002/x"

[[groups.routes]]
name = "beta"
path = { prefix = "/beta" }
environments = ["test"]
to = "{#endpoints['users']}/beta"
"#;

    fn snapshot() -> Snapshot {
        Snapshot::build(parse(CONFIG, "decide.toml").expect("config"), 1).expect("snapshot")
    }

    fn run(snap: &Snapshot, method: &str, path: &str, headers: &[(&str, &str)]) -> (Decision, String) {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q.as_bytes())),
            None => (path, None),
        };
        let req = RequestParts {
            method: method.as_bytes(),
            host: Some(b"api.example"),
            path: path.as_bytes(),
            query,
            env: None,
        };
        let hs: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let mut scratch = MatchScratch::default();
        let mut target = b"stale".to_vec();
        let d = decide(
            snap,
            snap.router(),
            &req,
            hs.iter().copied(),
            &mut scratch,
            &mut target,
        );
        (d, String::from_utf8(target).unwrap())
    }

    fn route_name(snap: &Snapshot, d: &Decision) -> Option<String> {
        d.route().map(|r| snap.router().route_name(r).1.to_string())
    }

    #[test]
    fn mock_route_is_answered_locally() {
        let snap = snapshot();
        let (d, _) = run(&snap, "GET", "/health", &[]);
        assert!(matches!(d, Decision::Mock { .. }), "{d:?}");
        assert_eq!(route_name(&snap, &d).as_deref(), Some("health"));
    }

    #[test]
    fn proxy_route_renders_its_target_with_the_query() {
        let snap = snapshot();
        let (d, target) = run(&snap, "GET", "/users/42?x=1", &[]);
        assert!(
            matches!(
                d,
                Decision::Proxy {
                    dest: Dest::Endpoint(_),
                    ..
                }
            ),
            "{d:?}"
        );
        assert_eq!(target, "/u/42?x=1");
    }

    #[test]
    fn literal_origin_resolves_to_its_upstream() {
        let snap = snapshot();
        let (d, target) = run(&snap, "POST", "/lit/a", &[]);
        let Decision::Proxy {
            dest: Dest::Upstream(u),
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(snap.upstream(u).addr.port(), 9002);
        assert_eq!(target, "/x");
    }

    #[test]
    fn no_match_and_method_mismatch_are_refused_with_the_configured_status() {
        let snap = snapshot();
        let (d, _) = run(&snap, "DELETE", "/users/42", &[]);
        assert_eq!(
            d,
            Decision::Refuse {
                env: Some(snap.default_env),
                route: None,
                refusal: Refusal::NoMatch
            }
        );
        assert_eq!(Refusal::NoMatch.status(snap.config.server.no_match_status), 404);
    }

    #[test]
    fn stage_header_selects_the_environment_in_any_case() {
        let snap = snapshot();
        let (d, _) = run(&snap, "GET", "/beta/x", &[]);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    refusal: Refusal::NoMatch,
                    ..
                }
            ),
            "{d:?}"
        );
        let (d, target) = run(&snap, "GET", "/beta/x", &[("X-Stage", "test")]);
        assert!(matches!(d, Decision::Proxy { .. }), "{d:?}");
        assert_eq!(target, "/beta");
        assert_eq!(route_name(&snap, &d).as_deref(), Some("beta"));
    }

    #[test]
    fn unknown_stage_is_refused_not_routed_elsewhere() {
        let snap = snapshot();
        let (d, _) = run(&snap, "GET", "/health", &[("x-stage", "prod")]);
        assert_eq!(
            d,
            Decision::Refuse {
                env: None,
                route: None,
                refusal: Refusal::UnknownStage
            }
        );
        assert_eq!(Refusal::UnknownStage.status(404), 400);
    }

    #[test]
    fn bad_path_is_refused_400() {
        let snap = snapshot();
        let (d, _) = run(&snap, "GET", "/users/%zz", &[]);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    refusal: Refusal::BadPath(_),
                    ..
                }
            ),
            "{d:?}"
        );
        assert_eq!(
            Refusal::BadPath(PathError::InvalidPercentEncoding).status(404),
            400
        );
    }

    #[test]
    fn explicit_env_overrides_the_stage_header() {
        let snap = snapshot();
        let test = snap.router().env_id("test").unwrap();
        let req = RequestParts {
            method: b"GET",
            host: None,
            path: b"/beta/y",
            query: None,
            env: Some(test),
        };
        let hs: [(&[u8], &[u8]); 1] = [(b"x-stage", b"nonsense")];
        let mut target = Vec::new();
        let d = decide(
            &snap,
            snap.router(),
            &req,
            hs,
            &mut MatchScratch::default(),
            &mut target,
        );
        assert!(matches!(d, Decision::Proxy { env, .. } if env == test), "{d:?}");
    }
}
