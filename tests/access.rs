//! Access authorization end to end with the real binary: subscription keys (inline,
//! from a file, from the environment; header and query), the authorization list,
//! credentials consumed, and keys and publishing reloaded without a restart. Signed
//! requests and the backend signature are in `tests/signatures.rs`.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod access_support;
mod common;

use access_support::*;
use common::{Backend, Gateway};
use std::time::Duration;

#[test]
fn subscription_keys_admit_refuse_and_are_consumed() {
    let backend = Backend::echo("b");
    let dir = std::env::temp_dir().join(format!("ringway-access-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The gateway inherits the test's environment (set once, before it starts).
    std::env::set_var("RINGWAY_TEST_ACCESS_KEY_ENV", KEY_ENV);
    let (gw, admin) = start_with_admin(&key_config(&backend, &dir));
    let hdr = |k: &str| vec![("jdcloud-apim-subscription-key".to_string(), k.to_string())];
    let get = |target: &str, h: &[(String, String)]| send(gw.addr, "GET", target, "it.test", h, "");

    // No key, an unknown key, a key for another group, the header twice.
    let r = get("/stores/1", &[]);
    assert_eq!(outcome(&r), (401, "missing_credentials".into()));
    assert_eq!(r.header("www-authenticate"), Some("SubscriptionKey"));
    assert!(json(&r)["message"]
        .as_str()
        .unwrap()
        .contains("jdcloud-apim-subscription-key"));
    assert_eq!(
        outcome(&get("/stores/1", &hdr("nope"))),
        (401, "unknown_key".into())
    );
    assert_eq!(
        outcome(&get("/stores/1", &hdr(&KEY_STORES[..KEY_STORES.len() - 1]))),
        (401, "unknown_key".into())
    );
    let r = get("/orders/1", &hdr(KEY_STORES));
    assert_eq!(outcome(&r), (403, "not_authorized".into()));
    assert!(
        json(&r)["message"].as_str().unwrap().contains("'mobile-app'"),
        "{}",
        r.text()
    );
    let mut twice = hdr(KEY_STORES);
    twice.extend(hdr(KEY_STORES));
    assert_eq!(
        outcome(&get("/stores/1", &twice)),
        (401, "ambiguous_credentials".into())
    );
    // A mock route of the group is covered too.
    assert_eq!(
        outcome(&get("/stores-info", &[])),
        (401, "missing_credentials".into())
    );
    assert_eq!(get("/stores-info", &hdr(KEY_STORES)).text(), "info");
    assert_eq!(backend.requests().len(), 0, "nothing refused reached the backend");

    // Admitted: the key is consumed, unless the group forwards it.
    assert_eq!(get("/stores/1", &hdr(KEY_STORES)).status, 200);
    assert_eq!(
        backend.requests()[0].header("jdcloud-apim-subscription-key"),
        None
    );
    assert_eq!(
        get("/orders/1", &hdr(KEY_ORDERS)).status,
        200,
        "a key from key_file"
    );
    assert_eq!(
        backend.requests()[1].header("jdcloud-apim-subscription-key"),
        Some(KEY_ORDERS)
    );
    assert_eq!(get("/orders/2", &hdr(KEY_ENV)).status, 200, "a key from key_env");
    assert_eq!(
        outcome(&get("/stores/2", &hdr(KEY_ENV))),
        (403, "not_authorized".into())
    );
    // In the query parameter: admitted, and the parameter leaves the query.
    let r = get(&format!("/stores/q?a=1&apikey={KEY_STORES}&b=2"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-target"), Some("/stores?a=1&b=2"));
    // A free group needs nothing, and a key sent to it is not consumed.
    assert_eq!(get("/free/1", &[]).status, 200);

    // Metrics name the caller, never the key; /config holds no secret.
    let metrics = admin_get(admin, "/metrics");
    assert!(
        metrics.contains("ringway_auth_allowed_total{group=\"stores\",caller=\"mobile-app\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringway_auth_allowed_total{group=\"orders\",caller=\"batch\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringway_auth_denied_total{group=\"stores\",code=\"missing_credentials\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringway_auth_denied_total{group=\"orders\",code=\"not_authorized\"} 1"),
        "{metrics}"
    );
    let config = admin_get(admin, "/config");
    assert!(
        config.contains("\"mobile-app\"") && config.contains("\"subscription_key\""),
        "{config}"
    );
    for secret in [KEY_STORES, KEY_ORDERS, KEY_ENV] {
        assert!(
            !config.contains(secret) && !metrics.contains(secret),
            "a secret in /config or /metrics"
        );
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rotated_key_file_and_a_new_publish_reload_without_a_restart() {
    let (online, next) = (Backend::echo("v1"), Backend::echo("v2"));
    let dir = std::env::temp_dir().join(format!("ringway-access-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("app.key");
    std::fs::write(&key_file, "old-key\n").unwrap();
    let config = |published: &str| {
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
shards = 1

[endpoints]
v1 = "{v1}"
v2 = "{v2}"

[[access.subscription_keys]]
id = "app"
key_file = "{key}"
groups = ["api"]

[[groups]]
name = "api"
auth = "subscription_key"
versions = ["1", "2"]
publish = {{ online = "{published}" }}

[[groups.routes]]
name = "one"
versions = ["1"]
path = {{ exact = "/x" }}
to = "{{#endpoints['v1']}}/x"

[[groups.routes]]
name = "two"
versions = ["2"]
path = {{ exact = "/x" }}
to = "{{#endpoints['v2']}}/x"
"#,
            v1 = online.url(),
            v2 = next.url(),
            key = key_file.display()
        )
    };
    let gw = Gateway::start(&config("1"));
    let call = |key: &str| {
        let h = vec![("jdcloud-apim-subscription-key".to_string(), key.to_string())];
        let r = send(gw.addr, "GET", "/x", "it.test", &h, "");
        (r.status, r.header("x-backend").map(str::to_string))
    };
    assert_eq!(call("old-key"), (200, Some("v1".into())));
    // The key file is renewed in place: the old key stops working, the new one works.
    std::fs::write(&key_file, "new-key\n").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || call("new-key").0 == 200),
        "the renewed key file was not picked up: {}",
        gw.stderr()
    );
    assert_eq!(call("old-key").0, 401);
    // Publishing version 2 is a config edit: the same path now goes to its backend.
    std::fs::write(gw.config_file(), config("2")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || call("new-key")
            == (200, Some("v2".into()))),
        "publishing version 2 did not take: {}",
        gw.stderr()
    );
    // A publish of a version that does not exist is refused; version 2 keeps serving.
    std::fs::write(gw.config_file(), config("3")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || gw
            .stderr()
            .contains("publishes version '3'")),
        "no reload error: {}",
        gw.stderr()
    );
    assert_eq!(call("new-key"), (200, Some("v2".into())));
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}
