//! `[access]` and the groups' `auth`: who may call which group, with what
//! credentials, and the keys upstream requests are signed with.
//!
//! Secrets (subscription keys, secret keys, backend keys) come from the config, a
//! file or an environment variable, and are held as [`Secret`], whose `Debug` never
//! shows them: neither `check`, `/config` nor a log line can print one.
//! Subscription keys are looked up by their SHA-256, so the lookup's timing depends
//! on the digest of what the caller sent, never on how much of a real key it guessed.

use super::error::Diagnostics;
use super::file::{AccessFile, FileConfig, GroupFile};
use super::resolve::parse_duration;
use super::sections::is_token;
use super::tls::{relative, FileSet};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// JD Cloud's header name for subscription keys.
pub const DEFAULT_KEY_HEADER: &str = "jdcloud-apim-subscription-key";
/// How far a signed request's date may be from the gateway's clock.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(300);
/// Longest skew accepted (nonces live twice as long at most).
pub const MAX_SKEW: Duration = Duration::from_secs(3600);
/// Slots of the nonce store: 32 MiB, room for ~14,000 signed requests a second
/// with the default skew (`docs/access.md`).
pub const DEFAULT_NONCE_CAPACITY: usize = 1 << 22;
/// The largest body a signature group reads whole to check its hash.
pub const DEFAULT_MAX_SIGNED_BODY: u64 = 1 << 20;
/// The largest `max_signed_body` accepted: 64 MiB.
pub const MAX_SIGNED_BODY: u64 = 64 << 20;
/// The request fields a backend signature covers unless a key says otherwise.
pub const DEFAULT_SIGNED_HEADERS: [&str; 3] = ["content-type", "content-length", "x-request-id"];

/// Bytes that must not be shown: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How a group's callers prove who they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may call (the default).
    #[default]
    None,
    /// A subscription key in a header (or query parameter).
    SubscriptionKey,
    /// A request signed with a key pair (`JDCLOUD2-HMAC-SHA256`).
    Signature,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::SubscriptionKey => "subscription_key",
            Auth::Signature => "signature",
        }
    }
}

/// What the runtime knows about an API group. Index == the group's position in the
/// file ([`super::RouteConfig::group_index`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    pub auth: Auth,
    /// Credentials go upstream too (default: consumed by the gateway).
    pub forward_credentials: bool,
    /// Index into [`AccessConfig::backend_keys`]: upstream requests are signed.
    pub backend_key: Option<usize>,
    /// The group's versions and where each is published (`None`: unversioned).
    pub versions: Option<super::versions::Versions>,
}

/// `[[access.subscription_keys]]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionKey {
    pub id: String,
    /// Group indices this key may call, sorted.
    pub groups: Vec<usize>,
}

/// `[[access.key_pairs]]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    pub access_key: String,
    pub secret: Secret,
    /// Group indices this pair may call, sorted.
    pub groups: Vec<usize>,
}

/// `[[access.backend_keys]]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendKey {
    pub id: String,
    pub secret: Secret,
    /// Lowercase field names covered besides the fixed ones.
    pub signed_headers: Vec<String>,
}

/// `[access]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessConfig {
    /// Lowercase.
    pub key_header: String,
    pub key_query: Option<String>,
    pub skew: Duration,
    pub nonce_capacity: usize,
    pub max_signed_body: u64,
    pub subscription_keys: Vec<SubscriptionKey>,
    keys_by_digest: HashMap<[u8; 32], usize>,
    pub key_pairs: Vec<KeyPair>,
    pairs_by_access_key: HashMap<Box<[u8]>, usize>,
    pub backend_keys: Vec<BackendKey>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            key_header: DEFAULT_KEY_HEADER.to_string(),
            key_query: None,
            skew: DEFAULT_SKEW,
            nonce_capacity: DEFAULT_NONCE_CAPACITY,
            max_signed_body: DEFAULT_MAX_SIGNED_BODY,
            subscription_keys: Vec::new(),
            keys_by_digest: HashMap::new(),
            key_pairs: Vec::new(),
            pairs_by_access_key: HashMap::new(),
            backend_keys: Vec::new(),
        }
    }
}

impl AccessConfig {
    /// The index (in [`AccessConfig::subscription_keys`]) of the key whose value
    /// is `presented`.
    pub fn subscription_key(&self, presented: &[u8]) -> Option<usize> {
        self.keys_by_digest.get(&sha256(presented)).copied()
    }

    /// The index (in [`AccessConfig::key_pairs`]) of the pair of `access_key`.
    pub fn key_pair(&self, access_key: &[u8]) -> Option<usize> {
        self.pairs_by_access_key.get(access_key).copied()
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Where secrets are read from: the config file's directory, and the files read.
pub(super) struct SecretSource<'a> {
    pub base: &'a Path,
    pub files: &'a mut FileSet,
    /// The environment, as a function (tests give their own).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// The groups' access settings, then `[access]` (which refers to groups by name).
pub(super) fn access(
    f: &FileConfig,
    d: &mut Diagnostics<'_>,
    src: &mut SecretSource<'_>,
) -> (AccessConfig, Vec<GroupConfig>) {
    let a = &f.access;
    let mut out = AccessConfig::default();
    if let Some(h) = &a.subscription_key_header {
        if is_token(h.get_ref()) {
            out.key_header = h.get_ref().to_ascii_lowercase();
        } else {
            d.at(
                h.span(),
                format!(
                    "access.subscription_key_header: '{}' is not a header name",
                    h.get_ref()
                ),
                None,
                None,
            );
        }
    }
    if let Some(q) = &a.subscription_key_query {
        if q.get_ref().is_empty()
            || q.get_ref()
                .bytes()
                .any(|b| b"&=#+% ".contains(&b) || b.is_ascii_control())
        {
            d.at(
                q.span(),
                format!(
                    "access.subscription_key_query: '{}' is not a plain query parameter name",
                    q.get_ref()
                ),
                None,
                None,
            );
        } else {
            out.key_query = Some(q.get_ref().clone());
        }
    }
    if let Some(s) = &a.signature_skew {
        match parse_duration(s.get_ref()) {
            Ok(t) if t.is_zero() || t > MAX_SKEW => d.at(
                s.span(),
                format!(
                    "access.signature_skew must be more than 0 and at most {}s",
                    MAX_SKEW.as_secs()
                ),
                None,
                None,
            ),
            Ok(t) => out.skew = t,
            Err(m) => d.at(s.span(), format!("access.signature_skew: {m}"), None, None),
        }
    }
    if let Some(n) = &a.nonce_capacity {
        let max = crate::access::nonce::MAX_CAPACITY;
        if !(1024..=max).contains(n.get_ref()) {
            let m = format!("access.nonce_capacity must be from 1024 to {max} (8 bytes a slot)");
            d.at(n.span(), m, None, None);
        } else {
            out.nonce_capacity = *n.get_ref();
        }
    }
    if let Some(n) = &a.max_signed_body {
        if *n.get_ref() > MAX_SIGNED_BODY {
            let m = format!(
                "access.max_signed_body may be at most {MAX_SIGNED_BODY} (a signed body is held in memory)"
            );
            d.at(n.span(), m, None, None);
        } else {
            out.max_signed_body = *n.get_ref();
        }
    }

    let names: Vec<&str> = f
        .groups
        .iter()
        .map(|g| g.get_ref().name.get_ref().as_str())
        .collect();
    backend_keys(a, d, src, &mut out);
    let groups = f
        .groups
        .iter()
        .map(|g| group(g.get_ref(), d, &out))
        .collect::<Vec<_>>();
    subscription_keys(a, d, src, &names, &mut out);
    key_pairs(a, d, src, &names, &mut out);
    for (i, (g, spanned)) in groups.iter().zip(&f.groups).enumerate() {
        let callers = match g.auth {
            Auth::None => continue,
            Auth::SubscriptionKey => out
                .subscription_keys
                .iter()
                .filter(|k| k.groups.contains(&i))
                .count(),
            Auth::Signature => out.key_pairs.iter().filter(|k| k.groups.contains(&i)).count(),
        };
        if callers == 0 {
            let what = match g.auth {
                Auth::SubscriptionKey => "subscription key ([[access.subscription_keys]])",
                _ => "key pair ([[access.key_pairs]])",
            };
            let at = spanned
                .get_ref()
                .auth
                .as_ref()
                .map_or(spanned.span(), Spanned::span);
            d.at(
                at,
                format!(
                    "group '{}' has auth = \"{}\" but no {what} lists it in `groups`: no one could call it",
                    g.name,
                    g.auth.as_str()
                ),
                Some(&g.name),
                None,
            );
        }
    }
    (out, groups)
}

fn group(g: &GroupFile, d: &mut Diagnostics<'_>, access: &AccessConfig) -> GroupConfig {
    let name = g.name.get_ref().clone();
    let auth = match g.auth.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "none")) => Auth::None,
        Some((_, "subscription_key")) => Auth::SubscriptionKey,
        Some((_, "signature")) => Auth::Signature,
        Some((a, other)) => {
            d.at(
                a.span(),
                format!("auth = \"{other}\": expected \"none\", \"subscription_key\" or \"signature\""),
                Some(&name),
                None,
            );
            Auth::None
        }
    };
    let backend_key = g.backend_key.as_ref().and_then(|k| {
        let i = access.backend_keys.iter().position(|b| b.id == *k.get_ref());
        if i.is_none() {
            d.at(
                k.span(),
                format!(
                    "backend_key '{}' is not an [[access.backend_keys]] id{}",
                    k.get_ref(),
                    known(access.backend_keys.iter().map(|b| b.id.as_str()))
                ),
                Some(&name),
                None,
            );
        }
        i
    });
    GroupConfig {
        name,
        auth,
        forward_credentials: g.forward_credentials.unwrap_or(false),
        backend_key,
        versions: None,
    }
}

/// `" (known: a, b)"`, or nothing when there are none.
fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = names.collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" (known: {})", list.join(", "))
    }
}

/// Group names → sorted indices; unknown names are errors.
fn group_indices(
    list: &[Spanned<String>],
    names: &[&str],
    d: &mut Diagnostics<'_>,
    what: &str,
) -> Vec<usize> {
    let mut out = Vec::new();
    for g in list {
        match names.iter().position(|n| n == g.get_ref()) {
            Some(i) => out.push(i),
            None => {
                let near = super::error::did_you_mean_suffix(g.get_ref(), names.iter().copied());
                d.at(
                    g.span(),
                    format!(
                        "{what} is authorized for group '{}', which is not defined{}{near}",
                        g.get_ref(),
                        known(names.iter().copied())
                    ),
                    None,
                    None,
                )
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Reads the one secret given as `inline`, `file` or `env` (`names`: the three keys
/// as the user writes them). A file's trailing newline (and whitespace) is not part
/// of the secret.
fn secret(
    inline: Option<&Spanned<String>>,
    file: Option<&Spanned<String>>,
    env: Option<&Spanned<String>>,
    names: [&str; 3],
    whole: Range<usize>,
    d: &mut Diagnostics<'_>,
    src: &mut SecretSource<'_>,
) -> Option<Secret> {
    let given = [inline.is_some(), file.is_some(), env.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        d.at(
            whole,
            format!(
                "give exactly one of `{}`, `{}` or `{}`",
                names[0], names[1], names[2]
            ),
            None,
            None,
        );
        return None;
    }
    let (bytes, span) = if let Some(v) = inline {
        (v.get_ref().as_bytes().to_vec(), v.span())
    } else if let Some(p) = file {
        let path = relative(src.base, p.get_ref());
        match src.files.read(&path) {
            Ok(mut b) => {
                while b.last().is_some_and(u8::is_ascii_whitespace) {
                    b.pop();
                }
                (b, p.span())
            }
            Err(m) => {
                d.at(p.span(), format!("{}: {m}", names[1]), None, None);
                return None;
            }
        }
    } else {
        let v = env?;
        match (src.env)(v.get_ref()) {
            Some(s) => (s.into_bytes(), v.span()),
            None => {
                d.at(
                    v.span(),
                    format!("{}: environment variable '{}' is not set", names[2], v.get_ref()),
                    None,
                    None,
                );
                return None;
            }
        }
    };
    if bytes.is_empty() {
        d.at(
            span,
            format!("the secret from `{}` is empty", names.join("`/`")),
            None,
            None,
        );
        return None;
    }
    Some(Secret(bytes.into()))
}

fn subscription_keys(
    a: &AccessFile,
    d: &mut Diagnostics<'_>,
    src: &mut SecretSource<'_>,
    names: &[&str],
    out: &mut AccessConfig,
) {
    let mut first: HashMap<String, Range<usize>> = HashMap::new();
    for k in &a.subscription_keys {
        let kf = k.get_ref();
        let id = kf.id.get_ref();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            d.at(
                kf.id.span(),
                format!(
                    "subscription key id '{id}' must be printable ASCII without spaces (it goes into logs)"
                ),
                None,
                None,
            );
        }
        if let Some(prev) = first.get(id) {
            let (line, _) = d.line_col(prev.start);
            d.at(
                kf.id.span(),
                format!("duplicate subscription key id '{id}' (first defined on line {line})"),
                None,
                None,
            );
            continue;
        }
        first.insert(id.clone(), kf.id.span());
        let what = format!("subscription key '{id}'");
        let groups = group_indices(&kf.groups, names, d, &what);
        let Some(key) = secret(
            kf.key.as_ref(),
            kf.key_file.as_ref(),
            kf.key_env.as_ref(),
            ["key", "key_file", "key_env"],
            k.span(),
            d,
            src,
        ) else {
            continue;
        };
        let digest = sha256(key.expose());
        if let Some(&other) = out.keys_by_digest.get(&digest) {
            d.at(
                kf.id.span(),
                format!(
                    "subscription key '{id}' has the same key as '{}'; a key must name one caller",
                    out.subscription_keys[other].id
                ),
                None,
                None,
            );
            continue;
        }
        out.keys_by_digest.insert(digest, out.subscription_keys.len());
        out.subscription_keys.push(SubscriptionKey {
            id: id.clone(),
            groups,
        });
    }
}

fn key_pairs(
    a: &AccessFile,
    d: &mut Diagnostics<'_>,
    src: &mut SecretSource<'_>,
    names: &[&str],
    out: &mut AccessConfig,
) {
    for k in &a.key_pairs {
        let kf = k.get_ref();
        let ak = kf.access_key.get_ref();
        // The access key travels in the Authorization header's Credential, between
        // '/' separators: it cannot hold one.
        if ak.is_empty()
            || !ak
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            d.at(
                kf.access_key.span(),
                format!("access_key '{ak}' may hold only letters, digits, '-', '_' and '.'"),
                None,
                None,
            );
            continue;
        }
        if out.pairs_by_access_key.contains_key(ak.as_bytes()) {
            let first = a
                .key_pairs
                .iter()
                .find(|o| o.get_ref().access_key.get_ref() == ak)
                .map_or(0, |o| d.line_col(o.get_ref().access_key.span().start).0);
            d.at(
                kf.access_key.span(),
                format!("duplicate access_key '{ak}' (first defined on line {first})"),
                None,
                None,
            );
            continue;
        }
        let what = format!("key pair '{ak}'");
        let groups = group_indices(&kf.groups, names, d, &what);
        let Some(secret) = secret(
            kf.secret_key.as_ref(),
            kf.secret_file.as_ref(),
            kf.secret_env.as_ref(),
            ["secret_key", "secret_file", "secret_env"],
            k.span(),
            d,
            src,
        ) else {
            continue;
        };
        out.pairs_by_access_key
            .insert(ak.as_bytes().into(), out.key_pairs.len());
        out.key_pairs.push(KeyPair {
            access_key: ak.clone(),
            secret,
            groups,
        });
    }
}

fn backend_keys(a: &AccessFile, d: &mut Diagnostics<'_>, src: &mut SecretSource<'_>, out: &mut AccessConfig) {
    for k in &a.backend_keys {
        let kf = k.get_ref();
        let id = kf.id.get_ref();
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            d.at(
                kf.id.span(),
                format!("backend key id '{id}' may hold only letters, digits, '-', '_' and '.'"),
                None,
                None,
            );
            continue;
        }
        if out.backend_keys.iter().any(|b| b.id == *id) {
            let first = a
                .backend_keys
                .iter()
                .find(|o| o.get_ref().id.get_ref() == id)
                .map_or(0, |o| d.line_col(o.get_ref().id.span().start).0);
            d.at(
                kf.id.span(),
                format!("duplicate backend key id '{id}' (first defined on line {first})"),
                None,
                None,
            );
            continue;
        }
        let mut signed_headers = Vec::new();
        match &kf.signed_headers {
            None => signed_headers.extend(DEFAULT_SIGNED_HEADERS.iter().map(|h| h.to_string())),
            Some(list) => {
                for h in list {
                    let name = h.get_ref().to_ascii_lowercase();
                    if !is_token(&name) {
                        d.at(
                            h.span(),
                            format!("signed_headers: '{}' is not a header name", h.get_ref()),
                            None,
                            None,
                        );
                    } else if name == "host" || name.starts_with("x-ringway-") {
                        d.at(
                            h.span(),
                            format!("signed_headers: '{name}' is always covered; leave it out"),
                            None,
                            None,
                        );
                    } else if !signed_headers.contains(&name) {
                        signed_headers.push(name);
                    }
                }
            }
        }
        let Some(secret) = secret(
            kf.secret.as_ref(),
            kf.secret_file.as_ref(),
            kf.secret_env.as_ref(),
            ["secret", "secret_file", "secret_env"],
            k.span(),
            d,
            src,
        ) else {
            continue;
        };
        out.backend_keys.push(BackendKey {
            id: id.clone(),
            secret,
            signed_headers,
        });
    }
}

#[cfg(test)]
mod tests;
