use super::super::{parse, Config, ConfigError};
use super::*;
use std::time::Duration;

const BASE: &str = r#"
[[access.subscription_keys]]
id = "mobile-app"
key = "k-1"
groups = ["stores"]

[[access.key_pairs]]
access_key = "AKID01"
secret_key = "sk"
groups = ["stores"]

[[groups]]
name = "stores"
auth = "subscription_key"
[[groups.routes]]
name = "store-info"
path = { prefix = "/s" }
mock = { body = "s" }

[[groups]]
name = "open"
[[groups.routes]]
name = "o"
path = { prefix = "/o" }
mock = { body = "o" }
"#;

fn load(traffic: &str) -> Result<Config, ConfigError> {
    parse(&format!("{BASE}\n{traffic}"), "t.toml")
}

fn errors(traffic: &str) -> String {
    match load(traffic) {
        Ok(_) => panic!("expected errors for:\n{traffic}"),
        Err(e) => e.to_string(),
    }
}

/// The line of `needle` in the whole file (1-based).
fn line_of(traffic: &str, needle: &str) -> usize {
    let text = format!("{BASE}\n{traffic}");
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[test]
fn limits_resolve_with_their_defaults() {
    let c = load(
        r#"
[traffic]
trusted_proxies = ["10.0.0.0/8", "::1"]
[[traffic.limits]]
name = "stores-total"
groups = ["stores"]
routes = ["stores/store-info"]
rate = 100
burst = 20
[[traffic.limits]]
name = "per-ip"
by = "client_ip"
rate = 5
unit = "minute"
"#,
    )
    .unwrap();
    let t = &c.traffic;
    assert_eq!(t.limits.len(), 2);
    let l = &t.limits[0];
    assert_eq!(
        (l.by, l.rate, l.unit, l.burst, l.scope),
        (By::All, 100, Unit::Second, 20, Scope::Node)
    );
    assert_eq!(l.groups, Some(vec![0]));
    assert_eq!(l.routes, Some(vec![("stores".into(), "store-info".into())]));
    assert!(l.covers(0, "stores", "store-info"));
    assert!(!l.covers(1, "open", "o"));
    assert!(t.limits[1].covers(1, "open", "o"), "no groups: every group");
    assert_eq!(t.headers, HeaderMode::Refused);
    assert_eq!(t.max_clients, DEFAULT_MAX_CLIENTS);
    assert!(t.trusted_proxies[0].contains("10.200.0.1".parse().unwrap()));
    assert!(!t.trusted_proxies[0].contains("11.0.0.1".parse().unwrap()));
    assert!(t.trusted_proxies[1].contains("::1".parse().unwrap()));
    assert!(
        parse_cidr("127.0.0.1")
            .unwrap()
            .contains("::ffff:127.0.0.1".parse().unwrap()),
        "an IPv4-mapped peer is its IPv4 address"
    );
    let mapped = parse_cidr("::ffff:10.0.0.0/104").unwrap();
    assert!(mapped.contains("10.1.2.3".parse().unwrap()) && !mapped.contains("11.0.0.1".parse().unwrap()));
    assert!(parse_cidr("10.0.0.0/33").is_err());
}

#[test]
fn a_groups_caller_limit_is_a_per_key_limit() {
    let c = parse(
        &format!("{BASE}\n").replace(
            "auth = \"subscription_key\"\n",
            "auth = \"subscription_key\"\ncaller_limit = { rate = 10, unit = \"minute\" }\n",
        ),
        "t.toml",
    )
    .unwrap();
    let l = &c.traffic.limits[0];
    assert_eq!(
        (l.name.as_str(), l.by, l.rate, l.unit),
        ("stores/caller", By::Key, 10, Unit::Minute)
    );
    assert_eq!(l.groups, Some(vec![0]));
}

#[test]
fn every_mistake_is_reported_at_its_line() {
    let bad = r#"
[[traffic.limits]]
name = "a"
groups = ["storse"]
rate = 1
[[traffic.limits]]
name = "b"
routes = ["stores/store-inf"]
rate = 1
[[traffic.limits]]
name = "c"
rate = 0
unit = "minutes"
[[traffic.limits]]
name = "d"
rate = 1
scope = "cluster"
[[traffic.limits]]
name = "e"
rate = 1
overrides = [{ key = "mobile-app", rate = 2 }]
[[traffic.limits]]
name = "f"
by = "key"
rate = 1
overrides = [{ key = "mobil-app", rate = 2 }]
[[traffic.limits]]
name = "a"
rate = 1
"#;
    let e = errors(bad);
    let at = |needle: &str| format!("t.toml:{}:", line_of(bad, needle));
    for (needle, says) in [
        (
            "groups = [\"storse\"]",
            "no group 'storse'; did you mean 'stores'?",
        ),
        (
            "routes = [\"stores/store-inf\"]",
            "no route 'stores/store-inf'; did you mean 'stores/store-info'?",
        ),
        ("rate = 0", "rate 0: must be between 1 and"),
        (
            "unit = \"minutes\"",
            "unit 'minutes' is not second, minute, hour or day; did you mean 'minute'?",
        ),
        ("scope = \"cluster\"", "add [traffic.redis]"),
        (
            "overrides = [{ key = \"mobile-app\"",
            "overrides name keys, so the limit must be by = \"key\"",
        ),
        (
            "key = \"mobil-app\"",
            "no subscription key id or access key 'mobil-app'; did you mean 'mobile-app'?",
        ),
    ] {
        let line = e
            .lines()
            .find(|l| l.contains(says))
            .unwrap_or_else(|| panic!("{says}\n{e}"));
        assert!(
            line.starts_with(&at(needle)),
            "{line} should be at {}",
            at(needle)
        );
    }
    assert!(e.contains("limit 'a' is defined twice (first at line"), "{e}");
}

#[test]
fn a_keys_limit_may_not_exceed_its_groups() {
    // JD's rule: 5,000 a minute per key is above the group's 60 a second (3,600 a
    // minute); 1,000 a minute is not. A route's own limit does not bound the group.
    let traffic = r#"
[[traffic.limits]]
name = "stores-total"
groups = ["stores"]
rate = 60
[[traffic.limits]]
name = "store-info-only"
routes = ["stores/store-info"]
rate = 1
[[traffic.limits]]
name = "per-caller"
groups = ["stores"]
by = "key"
rate = 1000
unit = "minute"
overrides = [{ key = "mobile-app", rate = 5000 }]
"#;
    let e = errors(traffic);
    let line = line_of(traffic, "rate = 5000");
    assert!(
        e.contains(&format!("t.toml:{line}:")) && e.contains(
            "limit 'per-caller': 5000 per minute per key is above group 'stores''s limit 'stores-total' (60 per second)"
        ),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "the key's own rate is fine: {e}");
    assert!(
        load(&traffic.replace("rate = 5000", "rate = 3600")).is_ok(),
        "equal is allowed"
    );
}

#[test]
fn redis_settings_and_their_mistakes() {
    let c = load(
        r#"
[traffic.redis]
address = "127.0.0.1:6379"
on_redis_error = "deny"
timeout = "50ms"
[[traffic.limits]]
name = "shared"
rate = 10
scope = "cluster"
"#,
    )
    .unwrap();
    let r = c.traffic.redis.as_ref().unwrap();
    assert_eq!(r.on_error, OnRedisError::Deny);
    assert_eq!(r.timeout, Duration::from_millis(50));
    assert_eq!(r.connect_timeout, DEFAULT_REDIS_CONNECT_TIMEOUT);
    assert_eq!(r.key_prefix, DEFAULT_KEY_PREFIX);
    let e = errors("[traffic.redis]\naddress = \"redis\"\non_redis_error = \"maybe\"\ntimeout = \"0s\"\n");
    assert!(e.contains("write host:port"), "{e}");
    assert!(e.contains("'maybe' is not \"allow\" or \"deny\""), "{e}");
    assert!(e.contains("traffic.redis.timeout: must be above zero"), "{e}");
}

#[test]
fn a_per_key_limit_on_a_group_without_auth_is_a_warning() {
    let c = load(
        r#"
[[traffic.limits]]
name = "per-caller"
groups = ["stores", "open"]
by = "key"
rate = 10
"#,
    )
    .unwrap();
    let n = c.notices.iter().find(|n| n.kind == "limit").expect("a notice");
    assert!(
        n.message.contains("group(s) open take no credentials"),
        "{}",
        n.message
    );
}

#[test]
fn names_overrides_and_cluster_rates_are_checked() {
    let e = errors(
        r#"
[traffic.redis]
address = "127.0.0.1:6379"
[[traffic.limits]]
name = "per-caller"
by = "key"
rate = 10
overrides = [{ key = "mobile-app", rate = 20 }, { key = "mobile-app", rate = 30 }]
[[traffic.limits]]
name = "fast"
rate = 2000000
scope = "cluster"
[[traffic.limits]]
name = "stores/caller"
rate = 1
"#,
    );
    assert!(e.contains("key 'mobile-app' is overridden twice"), "{e}");
    assert!(
        e.contains("a cluster limit holds at most 1000000 a second per key"),
        "{e}"
    );
    // 60,000,000 a minute is the same 1,000,000 a second: allowed.
    assert!(load(
        "[traffic.redis]\naddress = \"127.0.0.1:6379\"\n[[traffic.limits]]\nname = \"m\"\nrate = 60000000\nunit = \"minute\"\nscope = \"cluster\"\n"
    )
    .is_ok());
    // A group's caller_limit may not take the name of a limit defined already.
    let text = format!("{BASE}\n[[traffic.limits]]\nname = \"stores/caller\"\nrate = 1\n").replace(
        "auth = \"subscription_key\"\n",
        "auth = \"subscription_key\"\ncaller_limit = { rate = 10 }\n",
    );
    let e = parse(&text, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("caller_limit: the limit 'stores/caller' is already defined"),
        "{e}"
    );
}
