//! Group versions and publishing, in JD Cloud's model: a group has versions
//! (`versions = ["0.0.1", "0.0.2"]`); each environment **publishes** one of them
//! (`publish = { online = "0.0.1", test = "0.0.2" }`), optionally with its own
//! backend endpoints; a route belongs to some of the group's versions (`versions =
//! [...]` on the route, default every one) and is live exactly in the environments
//! that publish one of them. A group without `versions` is what it always was.
//!
//! Publishing another version is an edit of `publish` and goes through the usual
//! all-or-nothing reload.

use super::error::Diagnostics;
use super::file::{EndpointFile, FileConfig, GroupFile, PublishFile};
use super::sections::{endpoint_url, TlsContext};
use super::EndpointDef;

/// A group's versions and where they are published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    /// In file order.
    pub list: Vec<String>,
    /// Environment name → index into `list`, in file order.
    pub published: Vec<(String, usize)>,
}

impl Versions {
    /// The version `env` serves, if it publishes one.
    pub fn in_env(&self, env: &str) -> Option<&str> {
        let (_, v) = self.published.iter().find(|(e, _)| e == env)?;
        self.list.get(*v).map(String::as_str)
    }

    /// The environments that publish one of `versions` (indices; `None`: all).
    pub fn environments_of(&self, versions: Option<&[usize]>) -> Vec<String> {
        self.published
            .iter()
            .filter(|(_, v)| versions.is_none_or(|vs| vs.contains(v)))
            .map(|(e, _)| e.clone())
            .collect()
    }
}

/// An endpoint replaced for one group in one environment: `endpoint` (an index of
/// `[endpoints]`/`[endpoint_groups]`) by `replacement` (an index past them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointOverride {
    pub group: usize,
    pub env: String,
    pub endpoint: usize,
    pub replacement: usize,
}

/// Every group's versions (`None` for a group without them), checked.
pub(super) fn versions(f: &FileConfig, d: &mut Diagnostics<'_>) -> Vec<Option<Versions>> {
    f.groups.iter().map(|g| group_versions(g.get_ref(), d)).collect()
}

fn group_versions(g: &GroupFile, d: &mut Diagnostics<'_>) -> Option<Versions> {
    let name = g.name.get_ref().as_str();
    let Some(list) = &g.versions else {
        if let Some(p) = &g.publish {
            d.at(
                p.span(),
                "`publish` needs `versions`: the group's versions it publishes",
                Some(name),
                None,
            );
        }
        return None;
    };
    if let Some(e) = g.environments.as_ref().and_then(|e| e.first()) {
        d.at(
            e.span(),
            "a group with `versions` is live where `publish` puts it: leave `environments` out",
            Some(name),
            None,
        );
    }
    let mut out = Versions::default();
    for v in list.get_ref() {
        let s = v.get_ref();
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._+".contains(&b))
        {
            d.at(
                v.span(),
                format!("version '{s}' may hold only letters, digits and '-._+' (as in \"0.0.1\")"),
                Some(name),
                None,
            );
        } else if out.list.contains(s) {
            d.at(
                v.span(),
                format!("version '{s}' is listed twice"),
                Some(name),
                None,
            );
        } else {
            out.list.push(s.clone());
        }
    }
    if out.list.is_empty() && list.get_ref().is_empty() {
        d.at(
            list.span(),
            "`versions` needs at least one version (a group starts at \"0.0.1\")",
            Some(name),
            None,
        );
    }
    for (env, p) in g.publish.iter().flat_map(|p| &p.get_ref().0) {
        let version = match p.get_ref() {
            PublishFile::Version(v) => v,
            PublishFile::Table(t) => &t.version,
        };
        match out.list.iter().position(|v| v == version) {
            Some(i) => out.published.push((env.clone(), i)),
            None => d.at(
                p.span(),
                format!(
                    "environment '{env}' publishes version '{version}' of group '{name}', which does not exist (versions: {})",
                    out.list.join(", ")
                ),
                Some(name),
                None,
            ),
        }
    }
    Some(out)
}

/// The routes' `versions`, as indices into their group's (`None`: every version);
/// unknown versions, and `versions` or `environments` where they do not apply, are
/// errors.
pub(super) fn route_versions(
    g: &GroupFile,
    r: &super::file::RouteFile,
    versions: Option<&Versions>,
    d: &mut Diagnostics<'_>,
) -> Option<Vec<usize>> {
    let (group, route) = (g.name.get_ref().as_str(), r.name.get_ref().as_str());
    let Some(vs) = versions else {
        if let Some(v) = r.versions.as_ref().and_then(|v| v.first()) {
            d.at(
                v.span(),
                format!("route versions need the group's `versions` (group '{group}' has none)"),
                Some(group),
                Some(route),
            );
        }
        return None;
    };
    if let Some(e) = r.environments.as_ref().and_then(|e| e.first()) {
        d.at(
            e.span(),
            "a route of a versioned group is live where its versions are published: leave `environments` out",
            Some(group),
            Some(route),
        );
    }
    let list = r.versions.as_ref()?;
    let mut out = Vec::new();
    for v in list {
        match vs.list.iter().position(|x| x == v.get_ref()) {
            Some(i) => out.push(i),
            None => d.at(
                v.span(),
                format!(
                    "route is in version '{}', which group '{group}' does not have (versions: {})",
                    v.get_ref(),
                    vs.list.join(", ")
                ),
                Some(group),
                Some(route),
            ),
        }
    }
    Some(out)
}

/// The endpoints each publishing environment replaces: checked against the
/// endpoint names, resolved, and appended to `defs` and `names`.
pub(super) fn overrides(
    f: &FileConfig,
    d: &mut Diagnostics<'_>,
    cx: &mut TlsContext<'_>,
    defs: &mut Vec<Option<EndpointDef>>,
    names: &mut Vec<String>,
) -> Vec<EndpointOverride> {
    let mut out = Vec::new();
    let declared = names.len();
    for (gi, g) in f.groups.iter().enumerate() {
        let gf = g.get_ref();
        let group = gf.name.get_ref().as_str();
        for (env, p) in gf.publish.iter().flat_map(|p| &p.get_ref().0) {
            let PublishFile::Table(t) = p.get_ref() else {
                continue;
            };
            for (name, e) in &t.endpoints.0 {
                let Some(endpoint) = names[..declared].iter().position(|n| n == name) else {
                    d.at(
                        p.span(),
                        format!("publish.{env} overrides endpoint '{name}', which is not defined"),
                        Some(group),
                        None,
                    );
                    continue;
                };
                let (url, settings) = match e {
                    EndpointFile::Url(u) => (u, None),
                    EndpointFile::Table(t) => (&t.url, Some(t)),
                };
                let label = format!("{name}@{group}/{env}");
                let Some(upstream) = endpoint_url(d, cx, url, settings, p.span(), &label) else {
                    continue;
                };
                out.push(EndpointOverride {
                    group: gi,
                    env: env.clone(),
                    endpoint,
                    replacement: defs.len(),
                });
                defs.push(Some(EndpointDef::Single {
                    name: label.clone(),
                    upstream,
                }));
                names.push(label);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Config};

    const BASE: &str = r#"
[server]
stage_header = "x-stage"

[endpoints]
store = "http://127.0.0.1:9001"
other = "http://127.0.0.1:9003"
"#;

    fn load(groups: &str) -> Result<Config, String> {
        parse(&format!("{BASE}\n{groups}"), "t.toml").map_err(|e| e.to_string())
    }

    const VERSIONED: &str = r#"
[[groups]]
name = "stores"
versions = ["0.0.1", "0.0.2", "0.0.3"]
publish = { online = "0.0.1", test = { version = "0.0.2", endpoints = { store = "http://127.0.0.1:9002" } }, pre-release = "0.0.2" }

[[groups.routes]]
name = "list"
path = { exact = "/stores" }
to = "{#endpoints['store']}/list"

[[groups.routes]]
name = "search"
versions = ["0.0.2"]
path = { exact = "/stores/search" }
to = "{#endpoints['store']}/search"

[[groups.routes]]
name = "draft"
versions = ["0.0.3"]
path = { exact = "/stores/draft" }
to = "{#endpoints['other']}/draft"
"#;

    #[test]
    fn a_route_is_live_where_its_versions_are_published() {
        let c = load(VERSIONED).unwrap();
        let envs = |i: usize| c.router.rules[i].environments.clone().unwrap();
        assert_eq!(
            envs(0),
            ["online", "test", "pre-release"],
            "every version: every publishing env"
        );
        assert_eq!(envs(1), ["test", "pre-release"]);
        assert!(envs(2).is_empty(), "0.0.3 is published nowhere: live nowhere");
        let v = c.groups[0].versions.as_ref().unwrap();
        assert_eq!(v.in_env("test"), Some("0.0.2"));
        assert_eq!(v.in_env("online"), Some("0.0.1"));
        assert_eq!(v.in_env("nowhere"), None);
        assert_eq!(c.routes[1].versions.as_deref(), Some(&[1][..]));
        // The test environment's override became an endpoint of its own.
        assert_eq!(c.endpoint_overrides.len(), 1);
        let o = &c.endpoint_overrides[0];
        assert_eq!((o.group, o.env.as_str(), o.endpoint), (0, "test", 0));
        assert_eq!(c.endpoints[o.replacement].name(), "store@stores/test");
    }

    #[test]
    fn todays_files_are_unchanged() {
        let c = load("[[groups]]\nname = \"g\"\nenvironments = [\"online\"]\n[[groups.routes]]\nname = \"r\"\npath = { exact = \"/\" }\nto = \"{#endpoints['store']}/\"\n").unwrap();
        assert!(c.groups[0].versions.is_none());
        assert_eq!(c.routes[0].versions, None);
        assert!(c.endpoint_overrides.is_empty());
    }

    #[test]
    fn version_mistakes_are_errors_at_their_lines() {
        let e = load(
            r#"
[[groups]]
name = "stores"
versions = ["0.0.1", "0.0.1", "bad version"]
environments = ["online"]
publish = { online = "0.0.1", test = "0.0.9", pre = { version = "0.0.1", endpoints = { nosuch = "http://127.0.0.1:1" } } }

[[groups.routes]]
name = "list"
versions = ["0.0.2"]
environments = ["test"]
path = { exact = "/stores" }
to = "{#endpoints['store']}/list"

[[groups]]
name = "plain"
publish = { online = "1" }

[[groups.routes]]
name = "r"
versions = ["1"]
path = { exact = "/p" }
to = "{#endpoints['store']}/p"
"#,
        )
        .unwrap_err();
        for part in [
            ":12:22: version '0.0.1' is listed twice",
            ":12:31: version 'bad version' may hold only",
            ":13:17: a group with `versions` is live where `publish` puts it",
            "environment 'test' publishes version '0.0.9' of group 'stores', which does not exist (versions: 0.0.1)",
            "publish.pre overrides endpoint 'nosuch', which is not defined",
            ":18:13: route is in version '0.0.2', which group 'stores' does not have (versions: 0.0.1)",
            ":19:17: a route of a versioned group is live where its versions are published",
            "`publish` needs `versions`",
            "route versions need the group's `versions` (group 'plain' has none)",
        ] {
            assert!(e.contains(part), "missing '{part}' in:\n{e}");
        }
    }
}
