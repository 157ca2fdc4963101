//! The request head sent upstream: the client's head with the target
//! rewritten, the Host chosen, hop-by-hop fields removed and the
//! X-Forwarded-* and x-request-id fields added.

use super::fields::{itoa, push_field};
use super::fields::{name_is, HopFilter};
use super::head::{find_header, HeaderSpan};
use super::request::{BodyFraming, RequestHead};

/// What the proxy knows about the client connection and this request.
#[derive(Clone, Copy, Debug)]
pub struct ForwardInfo<'a> {
    /// The client's address as text, e.g. `203.0.113.7` or `2001:db8::1`.
    pub client_ip: &'a [u8],
    /// The scheme the client used: `http` (or `https` behind TLS).
    pub proto: &'a [u8],
    /// Sent as `x-request-id` when the client sent none (or when
    /// `replace_request_id`); see [`client_request_id`] to reuse the client's.
    pub request_id: &'a [u8],
    /// Send the client's Host upstream instead of the upstream authority.
    pub keep_client_host: bool,
    /// Drop the client's `Expect` field: the proxy answers `100 Continue`
    /// itself, so the upstream must not wait to send its own.
    pub drop_expect: bool,
    /// Drop the client's `x-request-id` fields and send `request_id`
    /// instead (the client's id was not usable).
    pub replace_request_id: bool,
    /// The verified client certificate of an mTLS connection, as the value of
    /// `x-forwarded-client-cert` (`Subject="CN=alice"`); a client's own
    /// `x-forwarded-client-cert` is always dropped.
    pub client_cert: Option<&'a [u8]>,
    /// A field the gateway consumed (a subscription key header, the signature's
    /// `authorization`), lowercase: not forwarded.
    pub drop_credential: Option<&'a [u8]>,
    /// Drop the client's fields of the backend signature's names
    /// ([`SIGNATURE_FIELDS`]): ringway adds its own, and a client's must not be
    /// mistaken for them.
    pub drop_signature_fields: bool,
    /// The protocols of an upgrade the route allows (the client's `Upgrade`
    /// value, filtered): sent as `upgrade` with `connection: upgrade`.
    pub upgrade: Option<&'a [u8]>,
}

/// The fields of ringway's backend signature (`access::backend`).
pub const SIGNATURE_FIELDS: [&[u8]; 4] = [
    b"x-ringway-date",
    b"x-ringway-nonce",
    b"x-ringway-content-sha256",
    b"x-ringway-signature",
];

/// Longest client `x-request-id` kept.
pub const MAX_REQUEST_ID: usize = 128;

/// The client's `x-request-id`, if it sent a usable one: 1 to
/// [`MAX_REQUEST_ID`] bytes of letters, digits and `-._:+/=@`, so that it
/// is safe in a header, a log line and an error body. The proxy logs and
/// echoes that id rather than minting one; [`write_upstream_head`]
/// forwards it untouched.
pub fn client_request_id<'b>(buf: &'b [u8], headers: &[HeaderSpan]) -> Option<&'b [u8]> {
    find_header(buf, headers, b"x-request-id").filter(|v| is_usable_request_id(v))
}

/// Whether a client's `x-request-id` value can be adopted as the request id.
pub fn is_usable_request_id(v: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:+/=@".contains(b))
}

/// Writes the upstream request head for the request parsed from `buf`.
///
/// - `METHOD path_and_query HTTP/1.1`: always HTTP/1.1 and, with no
///   Connection field, always keep-alive, whatever the client spoke.
/// - `host: authority`, or the client's host when `info.keep_client_host`
///   (falling back to `authority` if the client sent none).
/// - Every other field verbatim, in order, except Host, the hop-by-hop
///   fields (Connection and the fields it names, Keep-Alive, TE, Upgrade,
///   Proxy-Connection) and X-Forwarded-For. Content-Length and
///   Transfer-Encoding are kept; a repeated or list-valued Content-Length
///   is sent once as its single value. Expect is kept unless
///   `info.drop_expect`; x-request-id is kept unless
///   `info.replace_request_id`.
/// - `x-forwarded-for`: the client's values, merged, then `client_ip`.
/// - `x-forwarded-proto`: always `info.proto`, the scheme of the client's
///   connection to ringway; a client's own value is dropped (at the edge, a
///   plain-HTTP client must not be able to claim `https`).
/// - `x-forwarded-host` (the client's host) and `x-request-id` when the client
///   sent none.
/// - `x-forwarded-client-cert`: `info.client_cert` when there is one (Envoy's
///   XFCC); the client's own fields are dropped, so none can be forged.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderSpan],
    path_and_query: &[u8],
    authority: &[u8],
    info: &ForwardInfo,
) {
    out.extend_from_slice(head.method.slice(buf));
    out.push(b' ');
    out.extend_from_slice(path_and_query);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    let client_host = head.host.map(|h| h.slice(buf));
    match client_host {
        Some(host) if info.keep_client_host => out.extend_from_slice(host),
        _ => out.extend_from_slice(authority),
    }
    out.extend_from_slice(b"\r\n");

    let filter = HopFilter::new(buf, headers);
    let mut has_xff = false;
    let mut has_fwd_host = false;
    let mut has_request_id = false;
    let mut content_length_sent = false;
    for h in headers {
        let name = h.name.slice(buf);
        let value = h.value.slice(buf);
        if name_is(buf, h.name, b"host") || filter.drops(name) {
            continue;
        }
        if name_is(buf, h.name, b"x-forwarded-for") {
            has_xff = true;
            continue;
        }
        if (info.drop_expect && name_is(buf, h.name, b"expect"))
            || (info.replace_request_id && name_is(buf, h.name, b"x-request-id"))
            || name_is(buf, h.name, b"x-forwarded-proto")
            || name_is(buf, h.name, b"x-forwarded-client-cert")
            || info.drop_credential.is_some_and(|c| name.eq_ignore_ascii_case(c))
            || (info.drop_signature_fields && SIGNATURE_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)))
        {
            continue;
        }
        if name_is(buf, h.name, b"content-length") {
            if content_length_sent {
                continue;
            }
            content_length_sent = true;
            if let (BodyFraming::Length(n), false) = (head.framing, value.iter().all(u8::is_ascii_digit)) {
                push_field(out, b"content-length", itoa(n, &mut [0; 20]));
                continue;
            }
        }
        has_fwd_host |= name_is(buf, h.name, b"x-forwarded-host");
        has_request_id |= name_is(buf, h.name, b"x-request-id");
        push_field(out, name, value);
    }

    out.extend_from_slice(b"x-forwarded-for: ");
    if has_xff {
        for h in headers {
            let value = h.value.slice(buf);
            if name_is(buf, h.name, b"x-forwarded-for") && !value.is_empty() {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(info.client_ip);
    out.extend_from_slice(b"\r\n");
    if let Some(protocols) = info.upgrade {
        push_field(out, b"connection", b"upgrade");
        push_field(out, b"upgrade", protocols);
    }
    push_field(out, b"x-forwarded-proto", info.proto);
    if let Some(cert) = info.client_cert {
        push_field(out, b"x-forwarded-client-cert", cert);
    }
    if let (false, Some(host)) = (has_fwd_host, client_host) {
        push_field(out, b"x-forwarded-host", host);
    }
    if !has_request_id {
        push_field(out, b"x-request-id", info.request_id);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{HeadLimits, HeadScratch};
    use crate::http::request::parse_request_head;
    use crate::http::test_util::XorShift;

    const INFO: ForwardInfo<'static> = ForwardInfo {
        client_ip: b"203.0.113.7",
        proto: b"http",
        request_id: b"rid-1",
        keep_client_host: false,
        drop_expect: false,
        replace_request_id: false,
        client_cert: None,
        drop_credential: None,
        drop_signature_fields: false,
        upgrade: None,
    };

    fn rewrite(raw: &[u8], pq: &[u8], info: &ForwardInfo) -> String {
        let mut scratch = HeadScratch::new();
        let head = parse_request_head(raw, &HeadLimits::default(), &mut scratch)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_upstream_head(
            &mut out,
            raw,
            &head,
            scratch.headers(),
            pq,
            b"10.0.0.2:8080",
            info,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_allowed_upgrade_is_sent_as_connection_upgrade_and_the_protocols_given() {
        let raw =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket, h2c\r\n\
            Sec-WebSocket-Key: k\r\n\r\n";
        let info = ForwardInfo {
            upgrade: Some(b"websocket"),
            ..INFO
        };
        assert_eq!(
            rewrite(raw, b"/ws", &info),
            "GET /ws HTTP/1.1\r\nhost: 10.0.0.2:8080\r\nSec-WebSocket-Key: k\r\n\
            x-forwarded-for: 203.0.113.7\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
            x-forwarded-proto: http\r\nx-forwarded-host: a\r\nx-request-id: rid-1\r\n\r\n"
        );
        // Not allowed: the client's Upgrade and Connection are dropped like any hop field.
        let plain = rewrite(raw, b"/ws", &INFO);
        assert!(!plain.to_ascii_lowercase().contains("upgrade"), "{plain}");
    }

    #[test]
    fn typical_head_exact_bytes() {
        let raw = b"POST /api/v1/users?x=1 HTTP/1.1\r\n\
            Host: api.example.com\r\n\
            User-Agent: curl/8.5.0\r\n\
            Connection: keep-alive, X-Secret\r\n\
            X-Secret: hunter2\r\n\
            Keep-Alive: timeout=5\r\n\
            TE: trailers\r\n\
            X-Forwarded-For: 198.51.100.1\r\n\
            Content-Length: 4\r\n\
            x-forwarded-for: 10.1.1.1, 10.2.2.2\r\n\
            Expect: 100-continue\r\n\
            \r\nbody";
        assert_eq!(
            rewrite(raw, b"/users?x=1", &INFO),
            "POST /users?x=1 HTTP/1.1\r\n\
            host: 10.0.0.2:8080\r\n\
            User-Agent: curl/8.5.0\r\n\
            Content-Length: 4\r\n\
            Expect: 100-continue\r\n\
            x-forwarded-for: 198.51.100.1, 10.1.1.1, 10.2.2.2, 203.0.113.7\r\n\
            x-forwarded-proto: http\r\n\
            x-forwarded-host: api.example.com\r\n\
            x-request-id: rid-1\r\n\
            \r\n"
        );
    }

    #[test]
    fn http10_client_keep_alive_does_not_leak_upstream() {
        let raw = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n\r\n";
        assert_eq!(
            rewrite(raw, b"/", &INFO),
            "GET / HTTP/1.1\r\nhost: 10.0.0.2:8080\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: http\r\nx-request-id: rid-1\r\n\r\n"
        );
    }

    #[test]
    fn keeps_client_host_and_forwarded_host_but_sets_the_proto() {
        let raw = b"GET http://Shop.Example/a HTTP/1.1\r\nHost: ignored\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: orig\r\nX-Request-Id: client-7\r\n\r\n";
        let info = ForwardInfo {
            keep_client_host: true,
            ..INFO
        };
        assert_eq!(
            rewrite(raw, b"/a", &info),
            "GET /a HTTP/1.1\r\nhost: Shop.Example\r\nX-Forwarded-Host: orig\r\nX-Request-Id: client-7\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn forwards_chunked_and_normalizes_listed_content_length() {
        let raw = b"PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(rewrite(raw, b"/u", &INFO).contains("\r\nTransfer-Encoding: gzip, chunked\r\n"));
        let raw = b"PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n";
        let got = rewrite(raw, b"/u", &INFO);
        assert!(got.contains("\r\ncontent-length: 7\r\n"), "{got}");
        assert_eq!(got.matches("ontent-").count(), 1, "{got}");
    }

    #[test]
    fn connection_cannot_remove_framing_headers() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host, Transfer-Encoding\r\nContent-Length: 3\r\n\r\nabc";
        let got = rewrite(raw, b"/", &INFO);
        assert!(got.contains("\r\nContent-Length: 3\r\n"), "{got}");
    }

    #[test]
    fn client_request_id_is_found() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nx-REQUEST-id: abc\r\n\r\n";
        let mut scratch = HeadScratch::new();
        parse_request_head(raw, &HeadLimits::default(), &mut scratch).unwrap();
        assert_eq!(client_request_id(raw, scratch.headers()), Some(&b"abc"[..]));
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nx-request-id:\r\n\r\n";
        parse_request_head(raw, &HeadLimits::default(), &mut scratch).unwrap();
        assert_eq!(client_request_id(raw, scratch.headers()), None);
    }

    #[test]
    fn itoa_writes_decimal() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn mutated_requests_rewrite_without_panic() {
        let seed: &[u8] = b"POST /p?q HTTP/1.1\r\nHost: h\r\nConnection: x, close\r\nX: 1\r\nX-Forwarded-For: a\r\nContent-Length: 2\r\n\r\nhi";
        let mut rng = XorShift::new(3);
        let mut scratch = HeadScratch::new();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            buf.extend_from_slice(seed);
            rng.mutate(&mut buf);
            if let Ok(Some(head)) = parse_request_head(&buf, &HeadLimits::default(), &mut scratch) {
                out.clear();
                write_upstream_head(&mut out, &buf, &head, scratch.headers(), b"/", b"u:1", &INFO);
                // What we send upstream must parse back.
                let again = parse_request_head(&out, &HeadLimits::default(), &mut HeadScratch::new());
                assert!(
                    matches!(again, Ok(Some(_))),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    #[test]
    fn drop_expect_drops_only_that_field() {
        let raw = b"POST / HTTP/1.1\r\nhost: a\r\nExpect: 100-continue\r\nexpected: x\r\nContent-Length: 1\r\n\r\nz";
        let info = ForwardInfo {
            drop_expect: true,
            ..INFO
        };
        let got = rewrite(raw, b"/", &info);
        assert!(!got.to_ascii_lowercase().contains("expect:"), "{got}");
        assert!(got.contains("\r\nexpected: x\r\n"), "{got}");
        assert!(rewrite(raw, b"/", &INFO).contains("\r\nExpect: 100-continue\r\n"));
    }

    #[test]
    fn unusable_client_request_id_is_replaced_by_ours() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad id\"quoted\"\r\n\r\n";
        let info = ForwardInfo {
            replace_request_id: true,
            ..INFO
        };
        let got = rewrite(raw, b"/", &info);
        assert_eq!(got.matches("equest-").count(), 1, "{got}");
        assert!(got.contains("\r\nx-request-id: rid-1\r\n"), "{got}");
    }

    #[test]
    fn usable_request_ids_are_bounded_and_safe() {
        assert!(is_usable_request_id(b"abc-123"));
        assert!(is_usable_request_id(b"5f3a9c01d2e4-0-1a"));
        assert!(is_usable_request_id(b"trace=00-4bf9:b7ad/1@x.y+z_w"));
        assert!(is_usable_request_id(&[b'a'; MAX_REQUEST_ID]));
        assert!(!is_usable_request_id(&[b'a'; MAX_REQUEST_ID + 1]));
        assert!(!is_usable_request_id(b""));
        for bad in [
            &b"a b"[..],
            b"a\"b",
            b"a\\b",
            b"a\x00",
            b"\xc3\xa9",
            b"a,b",
            b"<x>",
        ] {
            assert!(!is_usable_request_id(bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod client_cert_tests {
    use super::*;
    use crate::http::{parse_request_head, HeadLimits, HeadScratch};

    #[test]
    fn the_client_certificate_is_ours_to_say() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Client-Cert: Subject=\"CN=admin\"\r\n\r\n";
        let mut scratch = HeadScratch::new();
        let head = parse_request_head(raw, &HeadLimits::default(), &mut scratch)
            .unwrap()
            .unwrap();
        let mut info = ForwardInfo {
            client_ip: b"203.0.113.7",
            proto: b"https",
            request_id: b"rid",
            keep_client_host: false,
            drop_expect: false,
            replace_request_id: false,
            client_cert: None,
            drop_credential: None,
            drop_signature_fields: false,
            upgrade: None,
        };
        let mut out = Vec::new();
        write_upstream_head(&mut out, raw, &head, scratch.headers(), b"/", b"up", &info);
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.to_ascii_lowercase().contains("x-forwarded-client-cert"),
            "{text}"
        );
        info.client_cert = Some(b"Subject=\"CN=alice\"");
        let mut out = Vec::new();
        write_upstream_head(&mut out, raw, &head, scratch.headers(), b"/", b"up", &info);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.matches("x-forwarded-client-cert: Subject=\"CN=alice\"\r\n")
                .count(),
            1,
            "{text}"
        );
        assert!(!text.contains("CN=admin"), "{text}");
    }
}
