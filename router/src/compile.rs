//! Rules in, [`CompiledRouter`] out: validation, the path index and the slot table.

use crate::cache::CompileCache;
use crate::error::{BuildError, ErrorSite};
use crate::normalize::normalize_path;
use crate::paths::{PathIndex, PathKey};
use crate::pattern::{self, Shape};
use crate::predicate::SlotTableBuilder;
use crate::rule::{CaptureKind, HostPattern, MethodSet, Rule};
use crate::spec::{ActionSpec, PathSpec, RouterSpec, RuleSpec};
use crate::template::{Template, TemplateError};
use crate::CompiledRouter;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Environments are a bitmask per rule.
pub const MAX_ENVIRONMENTS: usize = 64;

fn err(i: usize, r: &RuleSpec, site: ErrorSite, msg: impl Into<String>) -> BuildError {
    BuildError::new(Some((i, format!("{}/{}", r.group, r.name))), site, msg)
}

/// Checks that a configured path is in normal form (else it could never match).
fn check_normal(spec: &RouterSpec, p: &str) -> Result<(), String> {
    let mut out = Vec::new();
    match normalize_path(p.as_bytes(), &spec.normalize, &mut out) {
        Err(e) => Err(format!("'{p}': {e}")),
        Ok(false) => Ok(()),
        Ok(true) => Err(format!(
            "'{p}' is not a normalized path and could never match; write '{}'",
            String::from_utf8_lossy(&out)
        )),
    }
}

/// Compiles `spec`, taking what `cache` knows of its path regexes and leaving in it
/// what this build learned (see [`crate::cache`]).
pub(crate) fn build(spec: &RouterSpec, cache: &mut CompileCache) -> Result<CompiledRouter, BuildError> {
    cache.begin();
    let built = build_with(spec, cache);
    cache.finish();
    built
}

fn build_with(spec: &RouterSpec, cache: &mut CompileCache) -> Result<CompiledRouter, BuildError> {
    if spec.environments.len() > MAX_ENVIRONMENTS {
        return Err(BuildError::new(
            None,
            ErrorSite::Router,
            format!("at most {MAX_ENVIRONMENTS} environments are supported"),
        ));
    }
    let mut rules = Vec::with_capacity(spec.rules.len());
    let mut preds = Vec::with_capacity(spec.rules.len());
    let mut keys: Vec<(u32, PathKey)> = Vec::with_capacity(spec.rules.len());
    let mut slots = SlotTableBuilder::default();
    let mut seen = HashSet::new();
    for (i, r) in spec.rules.iter().enumerate() {
        let id = i as u32;
        if !seen.insert((r.group.as_str(), r.name.as_str())) {
            return Err(err(i, r, ErrorSite::Rule, "duplicate rule name in its group"));
        }
        // Context path: "/x" or none.
        let ctx = match r.context_path.as_deref().map(|c| c.trim_end_matches('/')) {
            None | Some("") => String::new(),
            Some(c) => {
                if !c.starts_with('/') || c.contains(['?', '#']) {
                    return Err(err(
                        i,
                        r,
                        ErrorSite::ContextPath,
                        format!("context path '{c}' must start with '/'"),
                    ));
                }
                check_normal(spec, c).map_err(|m| err(i, r, ErrorSite::ContextPath, m))?;
                c.to_string()
            }
        };
        let path_err = |m: String| err(i, r, ErrorSite::Path { offset: None }, m);
        // Where `{#request.pathRest}` starts in the normalized path: after the
        // context path and the prefix (an exact path leaves nothing).
        let rest_from = match &r.path {
            PathSpec::Prefix(p) => Some(ctx.len() + p.trim_end_matches('/').len()),
            PathSpec::Exact(p) => Some(ctx.len() + p.len()),
            PathSpec::Regex(_) => None,
        };
        let (groups, names, capture, _) = match &r.path {
            PathSpec::Exact(p) | PathSpec::Prefix(p) => {
                if !p.starts_with('/') {
                    return Err(path_err(format!("path '{p}' must start with '/'")));
                }
                check_normal(spec, p).map_err(path_err)?;
                let key = if matches!(r.path, PathSpec::Exact(_)) {
                    if p == "/" && !ctx.is_empty() {
                        keys.push((id, PathKey::Exact(ctx.clone().into_bytes())));
                    }
                    PathKey::Exact(format!("{ctx}{p}").into_bytes())
                } else {
                    PathKey::Prefix(format!("{ctx}{}", p.trim_end_matches('/')).into_bytes())
                };
                keys.push((id, key));
                (0, Vec::new(), CaptureKind::None, p.clone())
            }
            PathSpec::Regex(p) => {
                let info = cache.analyze(p).map_err(|e| {
                    err(
                        i,
                        r,
                        ErrorSite::Path {
                            offset: Some(e.offset),
                        },
                        format!("invalid path regex at offset {}: {}", e.offset, e.message),
                    )
                })?;
                // Every rule's regex must compile on its own within the limits.
                if let Err(e) = cache.fits(p, spec.limits.max_regex_bytes) {
                    return Err(path_err(format!("path regex is too large: {e}")).size_limit());
                }
                let capture = match &info.shape {
                    Shape::Literal(lit) => {
                        if lit == b"/" && !ctx.is_empty() {
                            keys.push((id, PathKey::Exact(ctx.clone().into_bytes())));
                        }
                        let mut k = ctx.clone().into_bytes();
                        k.extend_from_slice(lit);
                        keys.push((id, PathKey::Exact(k)));
                        CaptureKind::None
                    }
                    shape => match &info.segments {
                        Some(segs) => {
                            let rest = match segs.segs.last() {
                                Some(pattern::SegMatch::Rest { .. }) => segs.segs.len() as u16 - 1,
                                _ => u16::MAX,
                            };
                            keys.push((
                                id,
                                PathKey::Segments {
                                    ctx: ctx.clone().into_bytes(),
                                    segs: segs.segs.clone(),
                                    regex: (p.clone(), info.first_segments.clone()),
                                },
                            ));
                            if info.groups == 0 {
                                CaptureKind::None
                            } else {
                                // Every group of a segment shape is a whole
                                // segment: the segment of group `i`, by group.
                                let mut by_group = vec![u16::MAX; info.groups];
                                for &(seg, g) in &segs.caps {
                                    if let Some(slot) = by_group.get_mut(usize::from(g)) {
                                        *slot = seg;
                                    }
                                }
                                let reach = segs
                                    .caps
                                    .iter()
                                    .map(|&(seg, _)| seg.saturating_add(1))
                                    .max()
                                    .unwrap_or(0);
                                CaptureKind::BySegment {
                                    segs: by_group.into(),
                                    rest,
                                    reach,
                                }
                            }
                        }
                        None => {
                            keys.push((
                                id,
                                PathKey::Regex {
                                    ctx: ctx.clone().into_bytes(),
                                    pattern: p.clone(),
                                    first_segments: info.first_segments.clone(),
                                },
                            ));
                            match shape {
                                Shape::Segments(parts) => CaptureKind::Segments(parts.as_slice().into()),
                                _ if info.groups == 0 => CaptureKind::None,
                                _ => CaptureKind::Regex {
                                    pattern: p.as_str().into(),
                                    re: OnceLock::new(),
                                },
                            }
                        }
                    },
                };
                (info.groups, info.names.clone(), capture, p.clone())
            }
        };
        if groups > u16::MAX as usize / 2 {
            return Err(path_err("too many capture groups".into()));
        }
        // Hosts and methods.
        let mut hosts = Vec::with_capacity(r.hosts.len());
        for (hi, h) in r.hosts.iter().enumerate() {
            hosts.push(HostPattern::parse(h).ok_or_else(|| {
                err(
                    i,
                    r,
                    ErrorSite::Host(hi),
                    format!("invalid host '{h}' (exact name or '*.suffix')"),
                )
            })?);
        }
        let mut methods = MethodSet {
            any: r.methods.is_empty(),
            mask: 0,
            other: Box::new([]),
        };
        let mut other = Vec::new();
        for (mi, m) in r.methods.iter().enumerate() {
            if m.is_empty()
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
            {
                return Err(err(i, r, ErrorSite::Method(mi), format!("invalid method '{m}'")));
            }
            match crate::rule::method_bit(m.as_bytes()) {
                0 => other.push(m.as_bytes().into()),
                bit => methods.mask |= bit,
            }
        }
        methods.other = other.into();
        // Environments.
        let env_mask = match &r.environments {
            None => u64::MAX,
            Some(envs) => {
                let mut mask = 0u64;
                for (ei, e) in envs.iter().enumerate() {
                    let pos = spec.environments.iter().position(|x| x == e).ok_or_else(|| {
                        err(
                            i,
                            r,
                            ErrorSite::Environment(ei),
                            format!("unknown environment '{e}'"),
                        )
                    })?;
                    mask |= 1 << pos;
                }
                mask
            }
        };
        // Predicates.
        if r.predicates.len() > spec.limits.max_predicates_per_rule {
            return Err(err(
                i,
                r,
                ErrorSite::Predicate {
                    index: spec.limits.max_predicates_per_rule,
                    offset: None,
                },
                format!(
                    "{} query and header predicates; at most {} are allowed per rule",
                    r.predicates.len(),
                    spec.limits.max_predicates_per_rule
                ),
            ));
        }
        let mut rule_preds = Vec::with_capacity(r.predicates.len());
        for (pi, p) in r.predicates.iter().enumerate() {
            rule_preds.push(
                slots
                    .predicate(p, spec.limits.max_regex_bytes)
                    .map_err(|(off, m)| {
                        err(
                            i,
                            r,
                            ErrorSite::Predicate {
                                index: pi,
                                offset: Some(off),
                            },
                            format!("predicate on '{}': {m}", p.name),
                        )
                    })?,
            );
        }
        preds.push(rule_preds.into_boxed_slice());
        // Target.
        let target = match &r.action {
            ActionSpec::Local => None,
            ActionSpec::Proxy { to } => Some(
                Template::parse(to, groups, &names, &spec.endpoints, rest_from.is_some()).map_err(
                    |e: TemplateError| err(i, r, ErrorSite::Target, format!("target '{to}': {e}")),
                )?,
            ),
        };
        rules.push(Rule {
            name: r.name.as_str().into(),
            group: r.group.as_str().into(),
            env_mask,
            methods,
            hosts: hosts.into(),
            ctx_len: ctx.len(),
            groups: groups as u16,
            names: names.into_iter().map(|(n, g)| (n.into_boxed_str(), g)).collect(),
            capture,
            predicates: Box::new([]),
            target,
            rest_from: rest_from.unwrap_or(usize::MAX),
        });
    }
    let slot_table = slots.finish(&mut preds);
    for (rule, p) in rules.iter_mut().zip(preds) {
        rule.predicates = p;
    }
    let index = PathIndex::build(keys, spec.limits.max_automaton_bytes, spec.limits.max_regex_bytes)
        .map_err(|e| {
            let rule = e.rule.map(|i| {
                (i as usize, {
                    let r = &spec.rules[i as usize];
                    format!("{}/{}", r.group, r.name)
                })
            });
            BuildError::new(rule, ErrorSite::Path { offset: None }, e.message).size_limit()
        })?;
    Ok(CompiledRouter {
        hot: rules.iter().map(Rule::hot).collect(),
        rules: rules.into(),
        index,
        slots: slot_table,
        environments: spec.environments.clone().into(),
        endpoints: spec.endpoints.clone().into(),
        normalize: spec.normalize,
    })
}
