//! The gateway started in-process with `Gateway::start`, as benches and tests can:
//! the handle reports the bound address (port 0 resolved), reloads on request, and
//! drains to exit code 0.

// Tests drive the gateway from plain std threads: the shard-code lints
// (clippy.toml) do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use ringway::runtime::Command;
use ringway::Gateway;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn config(body: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshards = 2\n\n[[groups]]\nname = \"g\"\n\n\
         [[groups.routes]]\nname = \"which\"\npath = {{ exact = \"/which\" }}\nmock = {{ status = 200, body = \"{body}\" }}\n"
    )
}

/// One request on a new connection: (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("response");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[test]
fn in_process_gateway_serves_reloads_and_drains() {
    let dir = std::env::temp_dir().join(format!("ringway-inproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ringway.toml");
    std::fs::write(&file, config("one")).unwrap();
    let gw = Gateway::new(ringway::config::load_file(&file).expect("config"))
        .start()
        .expect("start");
    assert_eq!(gw.shards(), 2);
    let addr = gw.listen_addrs()[0];
    assert_ne!(addr.port(), 0, "port 0 is resolved");
    assert_eq!(
        get(addr, "/which"),
        ("HTTP/1.1 200 OK".to_string(), "one".to_string())
    );
    let (status, body) = get(addr, "/nothing");
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    assert!(body.contains("no route matches"), "{body}");

    std::fs::write(&file, config("two")).unwrap();
    gw.send(Command::Reload);
    let start = Instant::now();
    while get(addr, "/which").1 != "two" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the reload never landed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    assert_eq!(gw.shutdown(), 0, "a drain exits 0");
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens after the drain"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_taken_port_fails_the_start_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let toml = config("x").replace("127.0.0.1:0", &addr.to_string());
    let err = Gateway::new(ringway::config::parse(&toml, "taken.toml").unwrap())
        .start()
        .expect_err("the port is taken");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
