//! `[traffic.redis]`: where `scope = "cluster"` limits share their buckets, and
//! what they do while it cannot be reached.

use super::super::error::Diagnostics;
use super::super::file::RedisFile;
use super::super::resolve::parse_duration;
use std::time::Duration;
use toml::Spanned;

/// Redis defaults: a lease is one command, so a slow Redis costs a request at most this.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
pub const DEFAULT_KEY_PREFIX: &str = "ringway:limit:";

/// What a cluster limit does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnRedisError {
    /// Admit, with the cluster limit applied by this node alone (the floor).
    Allow,
    /// Refuse with 503.
    Deny,
}

impl OnRedisError {
    /// What cluster limits do while Redis is down, for the log.
    pub fn while_down(self) -> &'static str {
        match self {
            OnRedisError::Allow => "apply per node",
            OnRedisError::Deny => "refuse requests (503)",
        }
    }
}

/// `[traffic.redis]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RedisSettings {
    /// `host:port`, resolved when connecting (a restarted Redis may move).
    pub address: String,
    pub on_error: OnRedisError,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub key_prefix: String,
    pub username: Option<String>,
    pub password: Option<SecretText>,
    pub database: u32,
}

/// A password: compared and hashed, never shown.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

pub(super) fn redis(r: &Spanned<RedisFile>, d: &mut Diagnostics<'_>) -> Option<RedisSettings> {
    let r = r.get_ref();
    let address = r.address.get_ref();
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        d.at(
            r.address.span(),
            format!("traffic.redis.address '{address}': write host:port, as in \"127.0.0.1:6379\""),
            None,
            None,
        );
    }
    let dur = |v: &Option<Spanned<String>>, default: Duration, key: &str, d: &mut Diagnostics<'_>| match v {
        None => default,
        Some(s) => match parse_duration(s.get_ref()) {
            Ok(t) if !t.is_zero() => t,
            Ok(_) => {
                d.at(
                    s.span(),
                    format!("traffic.redis.{key}: must be above zero"),
                    None,
                    None,
                );
                default
            }
            Err(m) => {
                d.at(s.span(), format!("traffic.redis.{key}: {m}"), None, None);
                default
            }
        },
    };
    let on_error = match r
        .on_redis_error
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("allow", _)) => OnRedisError::Allow,
        Some(("deny", _)) => OnRedisError::Deny,
        Some((other, span)) => {
            d.at(
                span,
                format!("traffic.redis.on_redis_error '{other}' is not \"allow\" or \"deny\""),
                None,
                None,
            );
            OnRedisError::Allow
        }
    };
    let password = match &r.password_env {
        None => None,
        Some(v) => match std::env::var(v.get_ref()) {
            Ok(p) => Some(SecretText(p)),
            Err(_) => {
                d.at(
                    v.span(),
                    format!("traffic.redis.password_env: ${} is not set", v.get_ref()),
                    None,
                    None,
                );
                None
            }
        },
    };
    Some(RedisSettings {
        address: address.clone(),
        on_error,
        connect_timeout: dur(
            &r.connect_timeout,
            DEFAULT_REDIS_CONNECT_TIMEOUT,
            "connect_timeout",
            d,
        ),
        timeout: dur(&r.timeout, DEFAULT_REDIS_TIMEOUT, "timeout", d),
        key_prefix: r
            .key_prefix
            .as_ref()
            .map_or(DEFAULT_KEY_PREFIX.to_string(), |p| p.get_ref().clone()),
        username: r.username.as_ref().map(|u| u.get_ref().clone()),
        password,
        database: r.database.as_ref().map_or(0, |v| *v.get_ref()),
    })
}
