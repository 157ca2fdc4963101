//! The backend signature: ringway signs each upstream request of a group that
//! names a backend key, so the backend can prove the request came through the
//! gateway, unchanged, recently.
//!
//! The signature covers the request exactly as it is sent upstream — after every
//! rewrite — and is added as four header fields:
//!
//! ```text
//! x-ringway-date:           20261201T120000Z           (UTC)
//! x-ringway-nonce:          32 hex digits, fresh per request
//! x-ringway-content-sha256: hex SHA-256 of the body | UNSIGNED-PAYLOAD
//! x-ringway-signature:      RINGWAY1-HMAC-SHA256 key=ID, headers=a;b;c, signature=HEX
//! ```
//!
//! `signature` is the lowercase hex HMAC-SHA256, under the key's secret, of these
//! lines joined by `\n` (no trailing newline):
//!
//! ```text
//! RINGWAY1-HMAC-SHA256
//! ID
//! METHOD
//! request-target (path and query, exactly as on the request line)
//! host:VALUE
//! x-ringway-date:VALUE
//! x-ringway-nonce:VALUE
//! x-ringway-content-sha256:VALUE
//! name:VALUE           one line per name in headers=, in that order; the values of
//!                      a repeated field joined by ",", empty if the field is absent
//! ```
//!
//! The body: a body that is in memory when the head is written (a `Content-Length`
//! body of up to 64 KiB, or one a signature group read whole) is hashed; a larger
//! or chunked body is streamed, not buffered, and marked `UNSIGNED-PAYLOAD` — its
//! `content-length` is still covered (it is in the default `headers`), so it cannot
//! be cut or extended. A backend that needs the body covered refuses the marker.
//! `docs/access.md` has a verifier a backend can copy.

use super::{format_date, hex_lower};
use ring::hmac;

pub const ALGORITHM: &str = "RINGWAY1-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &[u8] = b"UNSIGNED-PAYLOAD";

/// A key to sign with.
#[derive(Clone, Copy, Debug)]
pub struct SigningKey<'a> {
    pub id: &'a str,
    pub secret: &'a [u8],
    /// Lowercase names of the fields covered besides the fixed ones.
    pub headers: &'a [String],
}

/// Appends the signature fields to `head`, an upstream request head ending with
/// its blank line, as written by `write_upstream_head`. `now` is epoch seconds,
/// `nonce` 16 random bytes, `body_sha256` the body's hash when it is in memory.
/// Returns false (and leaves `head` as it was) if `head` does not parse, which
/// would be a bug in the head writer; the caller must then not send it.
pub fn sign_head(
    head: &mut Vec<u8>,
    key: &SigningKey<'_>,
    now: i64,
    nonce: [u8; 16],
    body_sha256: Option<&[u8; 32]>,
    scratch: &mut Vec<u8>,
) -> bool {
    // One slot per line of the head: never too few, whatever `max_headers` allows.
    let lines = memchr::memchr_iter(b'\n', head).count();
    let mut fields = vec![httparse::EMPTY_HEADER; lines];
    let mut req = httparse::Request::new(&mut fields);
    let (Ok(httparse::Status::Complete(len)), Some(method), Some(target)) =
        (req.parse(head), req.method, req.path)
    else {
        return false;
    };
    if len != head.len() {
        return false;
    }
    let date = format_date(now);
    let mut nonce_hex = Vec::with_capacity(32);
    hex_lower(&mut nonce_hex, &nonce);
    let mut content = Vec::with_capacity(64);
    match body_sha256 {
        Some(h) => hex_lower(&mut content, h),
        None => content.extend_from_slice(UNSIGNED_PAYLOAD),
    }
    let values = |name: &str, out: &mut Vec<u8>| {
        let mut first = true;
        for f in req.headers.iter().filter(|f| f.name.eq_ignore_ascii_case(name)) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(f.value);
        }
    };
    let s = scratch;
    s.clear();
    for part in [
        ALGORITHM.as_bytes(),
        key.id.as_bytes(),
        method.as_bytes(),
        target.as_bytes(),
    ] {
        s.extend_from_slice(part);
        s.push(b'\n');
    }
    s.extend_from_slice(b"host:");
    values("host", s);
    for (name, v) in [
        ("x-ringway-date", &date[..]),
        ("x-ringway-nonce", &nonce_hex),
        ("x-ringway-content-sha256", &content),
    ] {
        s.push(b'\n');
        s.extend_from_slice(name.as_bytes());
        s.push(b':');
        s.extend_from_slice(v);
    }
    for name in key.headers {
        s.push(b'\n');
        s.extend_from_slice(name.as_bytes());
        s.push(b':');
        values(name, s);
    }
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.secret), s);
    // Before the blank line that ends the head.
    head.truncate(head.len() - 2);
    for (name, v) in [
        ("x-ringway-date", &date[..]),
        ("x-ringway-nonce", &nonce_hex),
        ("x-ringway-content-sha256", &content),
    ] {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"x-ringway-signature: ");
    head.extend_from_slice(ALGORITHM.as_bytes());
    head.extend_from_slice(b" key=");
    head.extend_from_slice(key.id.as_bytes());
    head.extend_from_slice(b", headers=");
    for (i, name) in key.headers.iter().enumerate() {
        if i > 0 {
            head.push(b';');
        }
        head.extend_from_slice(name.as_bytes());
    }
    head.extend_from_slice(b", signature=");
    hex_lower(head, tag.as_ref());
    head.extend_from_slice(b"\r\n\r\n");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier written from the module docs, not from `sign_head`.
    fn verify(head: &str, secret: &[u8]) -> bool {
        let mut lines = head.split("\r\n");
        let request_line: Vec<&str> = lines.next().unwrap().split(' ').collect();
        let fields: Vec<(String, String)> = lines
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let get = |n: &str| {
            fields
                .iter()
                .filter(|f| f.0 == n)
                .map(|f| f.1.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let sig = get("x-ringway-signature");
        let params = sig.strip_prefix("RINGWAY1-HMAC-SHA256 ").unwrap();
        let p: Vec<(&str, &str)> = params.split(", ").map(|kv| kv.split_once('=').unwrap()).collect();
        let param = |k: &str| p.iter().find(|x| x.0 == k).unwrap().1;
        let mut s = vec![
            "RINGWAY1-HMAC-SHA256".to_string(),
            param("key").to_string(),
            request_line[0].to_string(),
            request_line[1].to_string(),
        ];
        for n in [
            "host",
            "x-ringway-date",
            "x-ringway-nonce",
            "x-ringway-content-sha256",
        ] {
            s.push(format!("{n}:{}", get(n)));
        }
        for n in param("headers").split(';').filter(|n| !n.is_empty()) {
            s.push(format!("{n}:{}", get(n)));
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut want = Vec::new();
        hex_lower(&mut want, hmac::sign(&key, s.join("\n").as_bytes()).as_ref());
        want == param("signature").as_bytes()
    }

    #[test]
    fn signs_what_is_sent_and_a_change_breaks_it() {
        let headers = vec!["content-type".to_string(), "x-missing".to_string()];
        let key = SigningKey {
            id: "gw-1",
            secret: b"k3y",
            headers: &headers,
        };
        let mut head = b"POST /orders?id=7 HTTP/1.1\r\nhost: orders.internal\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n".to_vec();
        let body: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, b"{}")
            .as_ref()
            .try_into()
            .unwrap();
        assert!(sign_head(
            &mut head,
            &key,
            1_796_126_400,
            [0xab; 16],
            Some(&body),
            &mut Vec::new()
        ));
        let text = String::from_utf8(head).unwrap();
        assert!(text.ends_with("\r\n\r\n"));
        assert!(text.contains("x-ringway-date: 20261201T120000Z\r\n"), "{text}");
        assert!(text.contains(&format!("x-ringway-nonce: {}\r\n", "ab".repeat(16))));
        assert!(text.contains(
            "x-ringway-content-sha256: 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\r\n"
        ));
        assert!(text.contains(
            "x-ringway-signature: RINGWAY1-HMAC-SHA256 key=gw-1, headers=content-type;x-missing, signature="
        ));
        assert!(verify(&text, b"k3y"));
        assert!(!verify(&text, b"other"));
        for (from, to) in [
            ("/orders?id=7", "/orders?id=8"),
            ("POST", "PUT"),
            ("orders.internal", "evil"),
            ("application/json", "text/plain"),
        ] {
            assert!(
                !verify(&text.replacen(from, to, 1), b"k3y"),
                "{from} → {to} still verifies"
            );
        }
    }

    #[test]
    fn many_fields_are_signed_not_skipped() {
        let headers = vec!["x-a".to_string()];
        let key = SigningKey {
            id: "k",
            secret: b"s",
            headers: &headers,
        };
        let mut head = b"GET / HTTP/1.1\r\nhost: h\r\n".to_vec();
        for _ in 0..300 {
            head.extend_from_slice(b"x-a: 1\r\n");
        }
        head.extend_from_slice(b"\r\n");
        assert!(sign_head(&mut head, &key, 0, [0; 16], None, &mut Vec::new()));
        assert!(verify(&String::from_utf8(head).unwrap(), b"s"));
    }

    #[test]
    fn a_streamed_body_is_marked_unsigned() {
        let headers = Vec::new();
        let key = SigningKey {
            id: "k",
            secret: b"s",
            headers: &headers,
        };
        let mut head = b"GET / HTTP/1.1\r\nhost: h\r\n\r\n".to_vec();
        assert!(sign_head(&mut head, &key, 0, [0; 16], None, &mut Vec::new()));
        let text = String::from_utf8(head).unwrap();
        assert!(text.contains("x-ringway-content-sha256: UNSIGNED-PAYLOAD\r\n"));
        assert!(text.contains("headers=, signature="));
        assert!(verify(&text, b"s"));
    }
}
