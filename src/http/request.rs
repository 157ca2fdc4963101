//! Request head parsing: httparse tokenises, this file applies the RFC 9112
//! rules a proxy must enforce before it forwards anything (framing,
//! Host, request-target form) and answers the questions the proxy asks
//! (where is the path, how is the body framed, does the connection stay).

use super::fields::{fold_content_length, name_is, Codings, CodingsVerdict, ConnectionOptions};
use super::head::{tokenize_request, HeadError, HeadLimits, HeadScratch, Span, Version};

/// How a request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// "If this is a request message and none of the above are true, then
    /// the message body length is zero (no message body is present)."
    None,
    /// "If a valid Content-Length header field is present without
    /// Transfer-Encoding, its decimal value defines the expected message
    /// body length in octets."
    Length(u64),
    /// "If a Transfer-Encoding header field is present and the chunked
    /// transfer coding is the final encoding, the message body length is
    /// determined by reading and decoding the chunked data."
    Chunked,
}

/// The form of the request-target (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`, the usual form.
    Origin,
    /// `http://authority/path?query`, sent to proxies.
    Absolute,
    /// `host:port`, only with CONNECT.
    Authority,
    /// `*`, only with OPTIONS.
    Asterisk,
}

/// A parsed request head; every [`Span`] is an offset into the parsed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes up to and including the blank line; the body (or the next
    /// pipelined request) starts here.
    pub head_len: usize,
    pub method: Span,
    /// The raw request-target.
    pub target: Span,
    pub form: TargetForm,
    /// Path of an origin-form or absolute-form target (scheme and authority
    /// stripped), without the query. Empty for an absolute-form target
    /// without a path (`http://a?x`): treat as `/`. The whole target for
    /// the authority and asterisk forms.
    pub path: Span,
    /// The query, without its `?`.
    pub query: Option<Span>,
    pub version: Version,
    /// The authority of an absolute-form target, else the Host field value.
    pub host: Option<Span>,
    pub framing: BodyFraming,
    /// The client connection may carry another request after this one:
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive` (and no `close`).
    pub keep_alive: bool,
    /// HTTP/1.1 request with `Expect: 100-continue` (RFC 9110 §10.1.1 says
    /// to ignore it in HTTP/1.0 requests).
    pub expect_continue: bool,
    /// The value of the request's Upgrade field, when it asks for one (RFC 9110
    /// §7.8): HTTP/1.1, one Upgrade field, and `upgrade` among the Connection
    /// options. The proxy decides whether to forward it; the field itself is
    /// hop-by-hop and never copied.
    pub upgrade: Option<Span>,
}

impl RequestHead {
    /// The method is `HEAD`: the response has no body whatever it says.
    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method.slice(buf) == b"HEAD"
    }
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: the head is incomplete; read more and call again with the
/// grown buffer. Empty lines before the request line are skipped (RFC 9112
/// §2.2). On success [`HeadScratch::headers`] holds the field lines.
/// Errors carry the status to answer with (400, 431 or 501); the connection
/// must be closed after answering, as the framing is unknown.
pub fn parse_request_head(
    buf: &[u8],
    limits: &HeadLimits,
    scratch: &mut HeadScratch,
) -> Result<Option<RequestHead>, HeadError> {
    let Some(raw) = tokenize_request(buf, limits, scratch)? else {
        return Ok(None);
    };

    let mut host_field = None;
    let mut host_count = 0u32;
    let mut content_length = None;
    let mut bad_content_length = false;
    let mut codings = Codings::default();
    let mut connection = ConnectionOptions::default();
    let mut expect_continue = false;
    let mut upgrade = None;
    let mut upgrade_fields = 0u32;

    for h in scratch.headers() {
        let value = h.value.slice(buf);
        if name_is(buf, h.name, b"host") {
            host_count += 1;
            host_field = Some(h.value);
        } else if name_is(buf, h.name, b"content-length") {
            bad_content_length |= fold_content_length(value, &mut content_length).is_err();
        } else if name_is(buf, h.name, b"transfer-encoding") {
            codings.add(value);
        } else if name_is(buf, h.name, b"connection") {
            connection.add(value);
        } else if name_is(buf, h.name, b"expect") {
            expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name_is(buf, h.name, b"upgrade") {
            upgrade_fields += 1;
            upgrade = Some(h.value);
        }
    }

    let framing = if codings.present {
        if raw.version == Version::Http10 {
            return Err(HeadError::bad_request("transfer-encoding in an HTTP/1.0 request"));
        }
        if content_length.is_some() || bad_content_length {
            return Err(HeadError::bad_request(
                "both content-length and transfer-encoding",
            ));
        }
        match codings.verdict() {
            CodingsVerdict::Chunked => BodyFraming::Chunked,
            CodingsVerdict::ChunkedMisplaced => {
                return Err(HeadError::bad_request("chunked is not the final transfer coding"))
            }
            CodingsVerdict::FinalNotChunked => {
                return Err(HeadError::bad_request("final transfer coding is not chunked"))
            }
            CodingsVerdict::Unknown => return Err(HeadError::not_implemented("unknown transfer coding")),
        }
    } else if bad_content_length {
        return Err(HeadError::bad_request("invalid content-length"));
    } else {
        match content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::None,
        }
    };

    if host_count > 1 {
        return Err(HeadError::bad_request("more than one host field"));
    }
    if let Some(h) = host_field {
        if !is_valid_host(h.slice(buf)) {
            return Err(HeadError::bad_request("invalid host field"));
        }
    }

    let target = split_target(buf, raw.method, raw.target)?;
    let host = target.authority.or(host_field);
    if host.is_none() && raw.version == Version::Http11 {
        return Err(HeadError::bad_request("missing host field"));
    }

    let keep_alive = !connection.close && (raw.version == Version::Http11 || connection.keep_alive);

    Ok(Some(RequestHead {
        head_len: raw.head_len,
        method: raw.method,
        target: raw.target,
        form: target.form,
        path: target.path,
        query: target.query,
        version: raw.version,
        host,
        framing,
        keep_alive,
        expect_continue: expect_continue && raw.version == Version::Http11,
        upgrade: upgrade.filter(|v| {
            upgrade_fields == 1 && connection.upgrade && raw.version == Version::Http11 && !v.is_empty()
        }),
    }))
}

struct SplitTarget {
    form: TargetForm,
    path: Span,
    query: Option<Span>,
    authority: Option<Span>,
}

/// Splits the request-target into its form, path, query and authority.
fn split_target(buf: &[u8], method: Span, target: Span) -> Result<SplitTarget, HeadError> {
    let bytes = target.slice(buf);
    if bytes.is_empty() {
        return Err(HeadError::bad_request("empty request-target"));
    }
    if bytes.contains(&b'#') {
        return Err(HeadError::bad_request("fragment in request-target"));
    }
    let method = method.slice(buf);
    let whole = SplitTarget {
        form: TargetForm::Origin,
        path: target,
        query: None,
        authority: None,
    };

    if bytes[0] == b'/' {
        let (path, query) = split_query(target, bytes, 0);
        return Ok(SplitTarget { path, query, ..whole });
    }
    if bytes == b"*" {
        if method != b"OPTIONS" {
            return Err(HeadError::bad_request("asterisk-form target without OPTIONS"));
        }
        return Ok(SplitTarget {
            form: TargetForm::Asterisk,
            ..whole
        });
    }
    if method == b"CONNECT" {
        return Ok(SplitTarget {
            form: TargetForm::Authority,
            ..whole
        });
    }

    // absolute-form: only http and https URIs name an HTTP origin.
    let after_scheme = if starts_with_ignore_case(bytes, b"http://") {
        7
    } else if starts_with_ignore_case(bytes, b"https://") {
        8
    } else {
        return Err(HeadError::bad_request("invalid request-target"));
    };
    let authority_end = bytes[after_scheme..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(bytes.len(), |i| after_scheme + i);
    let authority = &bytes[after_scheme..authority_end];
    if authority.is_empty() || !is_valid_host(authority) {
        return Err(HeadError::bad_request("invalid authority in request-target"));
    }
    let (path, query) = split_query(target, bytes, authority_end);
    Ok(SplitTarget {
        form: TargetForm::Absolute,
        path,
        query,
        authority: Some(target.sub(after_scheme, authority_end)),
    })
}

/// Path and query of `bytes[from..]`, as spans of `target`.
fn split_query(target: Span, bytes: &[u8], from: usize) -> (Span, Option<Span>) {
    match memchr::memchr(b'?', &bytes[from..]) {
        Some(i) => (
            target.sub(from, from + i),
            Some(target.sub(from + i + 1, bytes.len())),
        ),
        None => (target.sub(from, bytes.len()), None),
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `uri-host [ ":" port ]` characters (RFC 3986 reg-name, IP-literal,
/// port). No userinfo (`@`), no path, no whitespace: the host routes the
/// request, so anything else is refused rather than guessed at.
fn is_valid_host(host: &[u8]) -> bool {
    host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_util::XorShift;

    fn limits() -> HeadLimits {
        HeadLimits {
            max_header_bytes: 8192,
            max_headers: 32,
        }
    }

    fn parse(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request_head(buf, &limits(), &mut HeadScratch::new())
    }

    fn ok(buf: &[u8]) -> RequestHead {
        match parse(buf) {
            Ok(Some(head)) => head,
            other => panic!(
                "expected a head for {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn status(buf: &[u8]) -> u16 {
        match parse(buf) {
            Err(e) => e.status(),
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    #[test]
    fn parses_a_typical_request() {
        let buf = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        let mut scratch = HeadScratch::new();
        let head = parse_request_head(buf, &limits(), &mut scratch).unwrap().unwrap();
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.method.slice(buf), b"GET");
        assert_eq!(head.target.slice(buf), b"/a/b?x=1&y");
        assert_eq!(head.path.slice(buf), b"/a/b");
        assert_eq!(head.query.unwrap().slice(buf), b"x=1&y");
        assert_eq!(head.host.unwrap().slice(buf), b"example.com");
        assert_eq!(head.form, TargetForm::Origin);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive && !head.expect_continue && head.upgrade.is_none());
        let names: Vec<&[u8]> = scratch.headers().iter().map(|h| h.name.slice(buf)).collect();
        assert_eq!(names, [&b"Host"[..], b"Accept"]);
        assert_eq!(scratch.headers()[1].value.slice(buf), b"*/*");
    }

    #[test]
    fn absolute_form_gives_host_and_path() {
        let buf = b"GET HTTP://api.example.com:8080/v1/x?q HTTP/1.1\r\nHost: other\r\n\r\n";
        let head = ok(buf);
        assert_eq!(head.form, TargetForm::Absolute);
        assert_eq!(head.host.unwrap().slice(buf), b"api.example.com:8080");
        assert_eq!(head.path.slice(buf), b"/v1/x");
        assert_eq!(head.query.unwrap().slice(buf), b"q");
    }

    #[test]
    fn absolute_form_counts_as_host() {
        let head = ok(b"GET http://a.example HTTP/1.1\r\n\r\n");
        assert!(head.path.is_empty());
        assert_eq!(head.query, None);
    }

    #[test]
    fn asterisk_and_authority_forms() {
        let buf = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(ok(buf).form, TargetForm::Asterisk);
        let buf = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n";
        assert_eq!(ok(buf).form, TargetForm::Authority);
    }

    #[test]
    fn framing_from_content_length_and_chunked() {
        let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(12));
        let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
    }

    #[test]
    fn accepts_repeated_identical_content_length() {
        let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(5));
        let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5,5\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(5));
    }

    #[test]
    fn accepts_gzip_then_chunked() {
        let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        let h = ok(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(h.framing, BodyFraming::Chunked);
    }

    #[test]
    fn rejects_cl_and_te() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_differing_content_lengths() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_invalid_content_length() {
        for v in [
            &b"-1"[..],
            b"+1",
            b"0x1",
            b"1 1",
            b"",
            b"1,",
            b"18446744073709551616",
            b"\xff",
        ] {
            let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ".to_vec();
            buf.extend_from_slice(v);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(status(&buf), 400, "{v:?}");
        }
    }

    #[test]
    fn rejects_chunked_not_last() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            400
        );
        assert_eq!(status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
    }

    #[test]
    fn rejects_chunked_twice() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_known_final_coding_other_than_chunked() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_unknown_coding_with_501() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n"),
            501
        );
    }

    #[test]
    fn rejects_te_on_http10() {
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_obs_fold() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n"), 400);
    }

    #[test]
    fn rejects_whitespace_before_first_field() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
    }

    #[test]
    fn rejects_space_before_colon() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 1\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_invalid_header_name_bytes() {
        for name in [&b"X(A)"[..], b"X\x00", b"X\x7f", b"X@Y", b"", b"X\xc3\xa9"] {
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            buf.extend_from_slice(name);
            buf.extend_from_slice(b": v\r\n\r\n");
            assert_eq!(status(&buf), 400, "{name:?}");
        }
    }

    #[test]
    fn rejects_invalid_header_value_bytes() {
        for value in [&b"a\x00b"[..], b"a\x7fb", b"a\x01", b"a\rb"] {
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: ".to_vec();
            buf.extend_from_slice(value);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(status(&buf), 400, "{value:?}");
        }
    }

    #[test]
    fn accepts_obs_text_in_values() {
        ok(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\r\n\r\n");
    }

    #[test]
    fn rejects_missing_host_on_http11() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), 400);
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.host, None);
    }

    #[test]
    fn rejects_two_host_fields() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET http://a/ HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            400
        );
    }

    #[test]
    fn rejects_host_with_invalid_bytes() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://user@a/ HTTP/1.1\r\n\r\n"), 400);
        // An empty Host is valid (RFC 9110 §7.2) when the target has no authority.
        assert!(ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host.unwrap().is_empty());
    }

    #[test]
    fn rejects_empty_request_target() {
        assert_eq!(status(b"GET  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn rejects_malformed_request_targets() {
        for t in [
            &b"a/b"[..],
            b"*",
            b"ftp://a/",
            b"http:///x",
            b"/a#frag",
            b"http://",
        ] {
            let mut buf = b"GET ".to_vec();
            buf.extend_from_slice(t);
            buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(status(&buf), 400, "{:?}", String::from_utf8_lossy(t));
        }
    }

    #[test]
    fn rejects_malformed_request_lines() {
        for line in [
            &b"GET / HTTP/1.2\r\n"[..],
            b"GET / HTTP/2.0\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1 \r\n",
            b"G(T / HTTP/1.1\r\n",
            b"GET /\x00 HTTP/1.1\r\n",
            b"GET / http/1.1\r\n",
            b"GET /\r\n",
        ] {
            let mut buf = line.to_vec();
            buf.extend_from_slice(b"Host: a\r\n\r\n");
            assert_eq!(status(&buf), 400, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn rejects_head_over_max_bytes_with_431() {
        let lim = HeadLimits {
            max_header_bytes: 64,
            max_headers: 32,
        };
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".to_vec();
        buf.resize(64, b'a');
        let err = parse_request_head(&buf, &lim, &mut HeadScratch::new()).unwrap_err();
        assert_eq!(err.status(), 431);
        assert!(err.is_too_large());
        // One byte short of the limit and incomplete: wait for more.
        buf.truncate(63);
        assert_eq!(parse_request_head(&buf, &lim, &mut HeadScratch::new()), Ok(None));
        // A complete head within the limit followed by body bytes is fine.
        let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n".to_vec();
        buf.resize(200, b'x');
        assert!(parse_request_head(&buf, &lim, &mut HeadScratch::new())
            .unwrap()
            .is_some());
    }

    #[test]
    fn rejects_too_many_headers_with_431() {
        let lim = HeadLimits {
            max_header_bytes: 8192,
            max_headers: 3,
        };
        let ok3 = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(parse_request_head(ok3, &lim, &mut HeadScratch::new())
            .unwrap()
            .is_some());
        let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let err = parse_request_head(four, &lim, &mut HeadScratch::new()).unwrap_err();
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn skips_leading_empty_lines() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let head = ok(buf);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.method.slice(buf), b"GET");
        assert_eq!(parse(b"\r\n\r\n"), Ok(None));
    }

    #[test]
    fn accepts_bare_lf_line_endings_in_head() {
        // RFC 9112 §2.2 allows it; the head is rewritten with CRLF anyway.
        let buf = b"GET / HTTP/1.1\nHost: a\n\n";
        assert_eq!(ok(buf).head_len, buf.len());
    }

    #[test]
    fn rejects_bare_cr() {
        assert_eq!(status(b"GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\r\n"), 400);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").keep_alive);
    }

    #[test]
    fn expect_and_upgrade_are_reported() {
        let h = ok(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(h.expect_continue);
        let h = ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expect_continue, "ignored on HTTP/1.0");
        let raw =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(ok(raw).upgrade.map(|v| v.slice(raw)), Some(&b"websocket"[..]));
        // Only with `Connection: upgrade`, only in HTTP/1.1, only one field.
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade:\r\n\r\n",
        ] {
            assert_eq!(ok(raw).upgrade, None, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn pipelined_requests_head_len_points_at_the_second() {
        let buf = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let first = ok(buf);
        let rest = &buf[first.head_len..];
        assert_eq!(rest, b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        let second = ok(rest);
        assert_eq!(second.path.slice(rest), b"/2");
        assert_eq!(second.head_len, rest.len());
    }

    #[test]
    fn split_at_every_offset_gives_the_same_head() {
        let buf: &[u8] = b"\r\nPOST http://h.example/p?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let mut scratch = HeadScratch::new();
        let full = parse_request_head(buf, &limits(), &mut scratch).unwrap().unwrap();
        let full_headers = scratch.headers().to_vec();
        let head_len = full.head_len;
        for cut in 0..buf.len() {
            let got = parse_request_head(&buf[..cut], &limits(), &mut scratch).unwrap();
            if cut < head_len {
                assert_eq!(got, None, "cut at {cut}");
            } else {
                assert_eq!(got, Some(full), "cut at {cut}");
                assert_eq!(scratch.headers(), &full_headers[..]);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(0x5eed);
        let mut scratch = HeadScratch::new();
        let lim = HeadLimits {
            max_header_bytes: 256,
            max_headers: 8,
        };
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            let len = rng.below(300);
            for _ in 0..len {
                buf.push(rng.byte_biased());
            }
            let _ = parse_request_head(&buf, &lim, &mut scratch);
        }
    }

    #[test]
    fn mutated_valid_heads_never_panic_and_stay_consistent() {
        let seeds: [&[u8]; 4] = [
            b"GET /a?b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"POST http://x:1/p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n",
            b"PUT /u HTTP/1.0\r\nContent-Length: 5, 5\r\nConnection: keep-alive\r\n\r\nhello",
            b"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\nUpgrade: h2c\r\n\r\n",
        ];
        let mut rng = XorShift::new(42);
        let mut scratch = HeadScratch::new();
        let mut buf = Vec::new();
        for i in 0..40_000 {
            buf.clear();
            buf.extend_from_slice(seeds[i % seeds.len()]);
            rng.mutate(&mut buf);
            if let Ok(Some(head)) = parse_request_head(&buf, &limits(), &mut scratch) {
                assert!(head.head_len <= buf.len());
                for span in [head.method, head.target, head.path] {
                    assert!(span.end as usize <= head.head_len && span.start <= span.end);
                }
                for h in scratch.headers() {
                    assert!(h.value.end as usize <= head.head_len);
                }
            }
        }
    }
}
