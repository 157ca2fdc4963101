use super::super::{parse, Config, ConfigError};
use super::*;

const GROUPS: &str = r#"
[[groups]]
name = "stores"
auth = "subscription_key"
[[groups.routes]]
name = "r"
path = { prefix = "/s" }
mock = { body = "s" }

[[groups]]
name = "orders"
auth = "signature"
backend_key = "gw"
[[groups.routes]]
name = "o"
path = { prefix = "/o" }
mock = { body = "o" }
"#;

fn load(access: &str) -> Result<Config, ConfigError> {
    parse(&format!("{access}\n{GROUPS}"), "t.toml")
}

fn errors(access: &str) -> String {
    match load(access) {
        Ok(_) => panic!("expected errors for:\n{access}"),
        Err(e) => e.to_string(),
    }
}

const OK: &str = r#"
[access]
signature_skew = "90s"
[[access.subscription_keys]]
id = "mobile-app"
key = "k-1"
groups = ["stores", "orders", "stores"]
[[access.key_pairs]]
access_key = "AKID01"
secret_key = "sk-1"
groups = ["orders"]
[[access.backend_keys]]
id = "gw"
secret = "bk"
signed_headers = ["Content-Type", "x-tenant"]
"#;

#[test]
fn the_issue_shape_loads_and_resolves() {
    let c = load(OK).unwrap();
    let a = &c.access;
    assert_eq!(a.key_header, DEFAULT_KEY_HEADER);
    assert_eq!(a.skew, Duration::from_secs(90));
    assert_eq!(a.subscription_key(b"k-1"), Some(0));
    assert_eq!(a.subscription_key(b"k-2"), None);
    assert_eq!(
        a.subscription_keys[0].groups,
        [0, 1],
        "sorted, deduplicated indices"
    );
    assert_eq!(a.key_pair(b"AKID01"), Some(0));
    assert_eq!(a.key_pairs[0].secret.expose(), b"sk-1");
    assert_eq!(a.backend_keys[0].signed_headers, ["content-type", "x-tenant"]);
    assert_eq!(c.groups[0].auth, Auth::SubscriptionKey);
    assert_eq!(c.groups[1].auth, Auth::Signature);
    assert_eq!(c.groups[1].backend_key, Some(0));
    assert!(!c.groups[0].forward_credentials);
    assert_eq!(c.routes[1].group_index, 1);
}

#[test]
fn secrets_never_print() {
    let c = load(OK).unwrap();
    let debug = format!("{c:?}");
    for secret in ["k-1", "sk-1", "bk"] {
        assert!(
            !debug.contains(&format!("\"{secret}\"")),
            "{secret} in Debug output"
        );
    }
    assert!(debug.contains("<redacted>"));
    // Nor do errors about them.
    let e = errors("[[access.subscription_keys]]\nid = \"a\"\nkey = \"sekrit\"\ngroups = [\"nope\"]\n");
    assert!(!e.contains("sekrit"), "{e}");
}

#[test]
fn mistakes_are_reported_together_at_their_lines() {
    let e = errors(
        r#"
[[access.subscription_keys]]
id = "a"
key = "k"
groups = ["stores", "billing"]
[[access.subscription_keys]]
id = "a"
key = "k2"
groups = ["stores"]
[[access.subscription_keys]]
id = "b"
key = "k"
groups = ["stores"]
[[access.subscription_keys]]
id = "c"
key = "k3"
key_env = "X"
[[access.key_pairs]]
access_key = "AK"
secret_env = "RINGWAY_SURELY_UNSET_VARIABLE"
groups = ["orders"]
[[access.key_pairs]]
access_key = "AK/1"
secret_key = "s"
[[access.backend_keys]]
id = "gw"
secret_file = "no/such/file"
"#,
    );
    for (line, part) in [
        (5, "group 'billing', which is not defined (known: stores, orders)"),
        (7, "duplicate subscription key id 'a' (first defined on line 3)"),
        (11, "has the same key as 'a'"),
        (14, "give exactly one of `key`, `key_file` or `key_env`"),
        (
            20,
            "environment variable 'RINGWAY_SURELY_UNSET_VARIABLE' is not set",
        ),
        (23, "may hold only letters"),
        (27, "secret_file: cannot read"),
    ] {
        assert!(
            e.contains(&format!("t.toml:{line}:")) && e.contains(part),
            "missing line {line} '{part}' in:\n{e}"
        );
    }
    // The signature group's only pair failed to load: no one could call it.
    assert!(
        e.contains("group 'orders' has auth = \"signature\" but no key pair"),
        "{e}"
    );
}

#[test]
fn group_settings_are_checked() {
    let text = format!(
        "{OK}\n[[groups]]\nname = \"x\"\nauth = \"oauth\"\nbackend_key = \"gw2\"\n[[groups.routes]]\nname = \"x\"\npath = {{ exact = \"/x\" }}\nmock = {{ body = \"x\" }}\n"
    );
    let e = match parse(&format!("{text}\n{GROUPS}"), "t.toml") {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("auth = \"oauth\": expected \"none\", \"subscription_key\" or \"signature\""),
        "{e}"
    );
    assert!(
        e.contains("backend_key 'gw2' is not an [[access.backend_keys]] id (known: gw)"),
        "{e}"
    );
    let e = errors("[access]\nsignature_skew = \"7200s\"\nsubscription_key_header = \"bad header\"\n");
    assert!(
        e.contains("signature_skew must be more than 0 and at most 3600s"),
        "{e}"
    );
    assert!(e.contains("'bad header' is not a header name"), "{e}");
}

#[test]
fn secret_files_are_trimmed_and_watched() {
    let dir = std::env::temp_dir().join(format!("ringway-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pair.key"), "from-a-file\r\n").unwrap();
    let text = format!(
        "[[access.key_pairs]]\naccess_key = \"AK\"\nsecret_file = \"pair.key\"\ngroups = [\"orders\"]\n[[access.backend_keys]]\nid = \"gw\"\nsecret = \"b\"\n[[access.subscription_keys]]\nid = \"s\"\nkey = \"k\"\ngroups = [\"stores\"]\n{GROUPS}"
    );
    let c = parse(&text, dir.join("t.toml").to_str().unwrap()).unwrap();
    assert_eq!(c.access.key_pairs[0].secret.expose(), b"from-a-file");
    assert!(
        c.files.hash_of(&dir.join("pair.key")) != 0,
        "a secret file is in the config's file set"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn duplicate_pairs_and_backend_keys_point_at_the_first() {
    let text = "[[access.key_pairs]]\naccess_key = \"AK\"\nsecret_key = \"a\"\n[[access.key_pairs]]\naccess_key = \"AK\"\nsecret_key = \"b\"\n[[access.backend_keys]]\nid = \"gw\"\nsecret = \"c\"\n[[access.backend_keys]]\nid = \"gw\"\nsecret = \"d\"\n";
    let e = parse(text, "t.toml").map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("t.toml:5:14: duplicate access_key 'AK' (first defined on line 2)"),
        "{e}"
    );
    assert!(
        e.contains("t.toml:11:6: duplicate backend key id 'gw' (first defined on line 8)"),
        "{e}"
    );
}
