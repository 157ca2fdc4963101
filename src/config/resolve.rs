//! Values that need more than a type: durations, upstream URLs and addresses.

use super::UpstreamAddr;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parses `"250ms"`, `"10s"` or `"2m"`: a whole number and one of those units.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration '{s}': write a whole number with a unit, as in \"250ms\", \"10s\" or \"2m\""
        )
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => return Err(bad()),
    };
    d.ok_or_else(|| format!("duration '{s}' is too large"))
}

/// An `http(s)://authority` split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HttpOrigin<'a> {
    pub tls: bool,
    /// `host[:port]` as written.
    pub authority: &'a str,
    /// The host, without IPv6 brackets.
    pub host: &'a str,
    pub port: u16,
}

/// Splits an authority (`host`, `host:port`, `[v6]`, `[v6]:port`).
pub(crate) fn split_authority(authority: &str, tls: bool) -> Result<(&str, u16), String> {
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{authority}': unclosed '[' in an IPv6 address"))?;
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("'{authority}': expected ':port' after ']'")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{authority}': the host is empty"));
    }
    if host.contains(['@', ' ', '/', '\\']) {
        return Err(format!(
            "'{authority}': the host may not contain '@', '/' or spaces"
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(format!("'{authority}': invalid port '{p}'")),
        },
    };
    Ok((host, port))
}

/// Parses an endpoint URL: `http://host[:port]` with no path other than `/`.
pub(crate) fn parse_origin(url: &str) -> Result<HttpOrigin<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!(
            "endpoint URL '{url}' must start with http:// or https:// (as in \"http://10.0.0.1:8080\")"
        ));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(p) => rest.split_at(p),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(format!(
            "endpoint URL '{url}' has a path or query; an endpoint is only \
             scheme://host:port (put paths in the route's `to`)"
        ));
    }
    let (host, port) = split_authority(authority, tls)?;
    Ok(HttpOrigin {
        tls,
        authority,
        host,
        port,
    })
}

/// Resolves an origin's host with the system resolver, preferring IPv4.
pub(crate) fn resolve(origin: &HttpOrigin<'_>) -> Result<UpstreamAddr, String> {
    let addrs: Vec<SocketAddr> = (origin.host, origin.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{}': {e}", origin.host))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("'{}' resolved to no address", origin.host))?;
    Ok(UpstreamAddr {
        authority: origin.authority.to_string(),
        addr,
        tls: None,
    })
}

/// The literal origin a target starts with (`http://store:8080/x` → `http://store:8080`),
/// as the router's template parser reads it; `None` for `{#endpoints[…]}` targets.
pub(crate) fn literal_origin(to: &str) -> Option<(bool, &str)> {
    let (tls, rest) = if let Some(r) = to.strip_prefix("http://") {
        (false, r)
    } else {
        (true, to.strip_prefix("https://")?)
    };
    let end = rest.find(['/', '?', '{']).unwrap_or(rest.len());
    Some((tls, &rest[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "1.5s", "-1s", "10 s", "10h", "1sec", "ms", "+1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("18446744073709551615m").is_err());
    }

    #[test]
    fn origins() {
        let o = parse_origin("http://127.0.0.1:9012").unwrap();
        assert_eq!(
            (o.tls, o.authority, o.host, o.port),
            (false, "127.0.0.1:9012", "127.0.0.1", 9012)
        );
        let o = parse_origin("http://backend/").unwrap();
        assert_eq!((o.authority, o.port), ("backend", 80));
        let o = parse_origin("http://[::1]:81").unwrap();
        assert_eq!((o.host, o.port), ("::1", 81));
        assert!(parse_origin("https://x").unwrap().tls);
        for bad in [
            "127.0.0.1:80",
            "http://",
            "http://h:0",
            "http://h:x",
            "http://h/path",
            "http://u@h",
            "http://[::1",
            "ftp://h",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_loopback() {
        let a = resolve(&parse_origin("http://127.0.0.1:9").unwrap()).unwrap();
        assert_eq!(a.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(a.authority, "127.0.0.1:9");
        let a = resolve(&parse_origin("http://localhost:9").unwrap()).unwrap();
        assert!(a.addr.ip().is_loopback());
    }

    #[test]
    fn literal_origins_of_targets() {
        assert_eq!(literal_origin("http://h:1/x/{#group[0]}"), Some((false, "h:1")));
        assert_eq!(literal_origin("https://h?x"), Some((true, "h")));
        assert_eq!(literal_origin("{#endpoints['a']}/x"), None);
    }
}
