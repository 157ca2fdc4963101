//! Upstream response heads: parsing with the RFC 9112 §6.3 body-length
//! rules, and writing the head we send to the client.

use super::fields::{
    fold_content_length, itoa, name_is, push_field, Codings, CodingsVerdict, ConnectionOptions, HopFilter,
};
use super::head::{tokenize_response, HeadError, HeadLimits, HeadScratch, HeaderSpan, Span, Version};

/// How an upstream response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespFraming {
    /// "Any response to a HEAD request and any response with a 1xx
    /// (Informational), 204 (No Content), or 304 (Not Modified) status code
    /// is always terminated by the first empty line after the header fields."
    None,
    /// "If a valid Content-Length header field is present without
    /// Transfer-Encoding, its decimal value defines the expected message
    /// body length in octets."
    Length(u64),
    /// "If a Transfer-Encoding header field is present and the chunked
    /// transfer coding is the final encoding, the message body length is
    /// determined by reading and decoding the chunked data."
    Chunked,
    /// "If a Transfer-Encoding header field is present in a response and the
    /// chunked transfer coding is not the final encoding, the message body
    /// length is determined by reading the connection until it is closed by
    /// the server." Also: "Otherwise, this is a response message without a
    /// declared message body length, so the message body length is
    /// determined by the number of octets received prior to the server
    /// closing the connection."
    UntilClose,
}

/// A parsed upstream response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes up to and including the blank line.
    pub head_len: usize,
    pub status: u16,
    /// The reason phrase (possibly empty).
    pub reason: Span,
    pub version: Version,
    pub framing: RespFraming,
    /// The upstream connection can be reused after this response's body.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// A 1xx other than 101: forward it and read the next head from the same
    /// connection (RFC 9110 §15.2).
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Whether the client connection can stay open after this response,
    /// given what the client asked for. A body delimited by the upstream
    /// closing the connection must be delimited the same way downstream.
    pub fn downstream_keep_alive(&self, client_keep_alive: bool) -> bool {
        client_keep_alive && self.framing != RespFraming::UntilClose && self.status != 101
    }
}

/// Parses the response head at the start of `buf`. `request_was_head`:
/// the request was a HEAD, so the response has no body whatever its
/// fields say. `Ok(None)`: incomplete, read more. Errors are answered 502
/// and the upstream connection closed.
pub fn parse_response_head(
    buf: &[u8],
    request_was_head: bool,
    limits: &HeadLimits,
    scratch: &mut HeadScratch,
) -> Result<Option<ResponseHead>, HeadError> {
    let Some(raw) = tokenize_response(buf, limits, scratch)? else {
        return Ok(None);
    };
    if raw.status < 100 {
        return Err(HeadError::bad_response("response status below 100"));
    }
    if raw.status > 599 {
        // RFC 9110 §15: status codes are 100–599; anything else is not HTTP.
        return Err(HeadError::bad_response("response status above 599"));
    }

    let mut content_length = None;
    let mut bad_content_length = false;
    let mut codings = Codings::default();
    let mut connection = ConnectionOptions::default();
    for h in scratch.headers() {
        let value = h.value.slice(buf);
        if name_is(buf, h.name, b"content-length") {
            bad_content_length |= fold_content_length(value, &mut content_length).is_err();
        } else if name_is(buf, h.name, b"transfer-encoding") {
            codings.add(value);
        } else if name_is(buf, h.name, b"connection") {
            connection.add(value);
        }
    }

    let mut keep_alive = !connection.close && (raw.version == Version::Http11 || connection.keep_alive);

    let no_body =
        request_was_head || (100..200).contains(&raw.status) || raw.status == 204 || raw.status == 304;
    let framing = if no_body {
        RespFraming::None
    } else if codings.present {
        if raw.version == Version::Http10 {
            // RFC 9112 §6.1: "MUST treat the message as if the framing is faulty".
            return Err(HeadError::bad_response(
                "transfer-encoding in an HTTP/1.0 response",
            ));
        }
        if content_length.is_some() || bad_content_length {
            // RFC 9112 §6.3: Transfer-Encoding overrides; the connection
            // must not be reused.
            keep_alive = false;
        }
        match codings.verdict() {
            CodingsVerdict::Chunked => RespFraming::Chunked,
            CodingsVerdict::ChunkedMisplaced => {
                return Err(HeadError::bad_response(
                    "response chunked is not the final coding",
                ))
            }
            CodingsVerdict::FinalNotChunked | CodingsVerdict::Unknown => RespFraming::UntilClose,
        }
    } else if bad_content_length {
        return Err(HeadError::bad_response("response has an invalid content-length"));
    } else {
        match content_length {
            Some(n) => RespFraming::Length(n),
            None => RespFraming::UntilClose,
        }
    };
    if framing == RespFraming::UntilClose || raw.status == 101 {
        keep_alive = false;
    }

    Ok(Some(ResponseHead {
        head_len: raw.head_len,
        status: raw.status,
        reason: raw.reason,
        version: raw.version,
        framing,
        keep_alive,
    }))
}

/// How [`write_downstream_head_with`] edits the upstream's head.
#[derive(Clone, Copy, Debug, Default)]
pub struct DownstreamHead<'a> {
    /// The client connection stays open after this response (else
    /// `connection: close` is added).
    pub client_keep_alive: bool,
    /// The body is de-chunked for the client (an HTTP/1.0 client): drop
    /// Transfer-Encoding, as the body that follows is the bare data.
    pub dechunk: bool,
    /// Fields added at the end (e.g. `x-request-id`; an HTTP/1.0 keep-alive
    /// client also needs `connection: keep-alive` here).
    pub extra: &'a [(&'a [u8], &'a [u8])],
    /// A `101` that switches the client's connection: `connection: upgrade` and
    /// this as `upgrade` (the upstream's value), instead of `connection: close`.
    pub upgrade: Option<&'a [u8]>,
}

/// Writes the head sent to the client for an upstream response: an
/// `HTTP/1.1` status line with the upstream's status and reason, the
/// upstream's fields minus hop-by-hop ones (Connection and the fields it
/// names, Keep-Alive, Proxy-Connection, TE, Upgrade), `connection: close`
/// when the client connection will close after this response, then
/// `extra`. As [`write_downstream_head_with`] with no de-chunking.
pub fn write_downstream_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderSpan],
    client_keep_alive: bool,
    extra: &[(&[u8], &[u8])],
) {
    let opts = DownstreamHead {
        client_keep_alive,
        dechunk: false,
        extra,
        upgrade: None,
    };
    write_downstream_head_with(out, buf, head, headers, &opts)
}

/// Writes the head sent to the client for an upstream response, edited as
/// `opts` says (see [`write_downstream_head`] for what is always done).
///
/// Transfer-Encoding is kept, the chunked body being relayed verbatim,
/// unless `opts.dechunk`; a Content-Length next to it is dropped (RFC 9112
/// §6.3: "an intermediary that chooses to forward the message MUST first
/// remove the received Content-Length field").
pub fn write_downstream_head_with(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderSpan],
    opts: &DownstreamHead<'_>,
) {
    let status = head.status.min(999);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(head.reason.slice(buf));
    out.extend_from_slice(b"\r\n");

    let filter = HopFilter::new(buf, headers);
    let has_te = headers.iter().any(|h| name_is(buf, h.name, b"transfer-encoding"));
    let mut content_length_sent = false;
    for h in headers {
        let name = h.name.slice(buf);
        if filter.drops(name)
            || (has_te && name_is(buf, h.name, b"content-length"))
            || (opts.dechunk && name_is(buf, h.name, b"transfer-encoding"))
        {
            continue;
        }
        if name_is(buf, h.name, b"content-length") {
            // Repeated or list-valued (the same value, or parsing would have
            // failed): sent once, as its single value, as requests are.
            if content_length_sent {
                continue;
            }
            content_length_sent = true;
            let value = h.value.slice(buf);
            if let (RespFraming::Length(n), false) = (head.framing, value.iter().all(u8::is_ascii_digit)) {
                push_field(out, b"content-length", itoa(n, &mut [0; 20]));
                continue;
            }
        }
        push_field(out, name, h.value.slice(buf));
    }
    match opts.upgrade {
        Some(protocol) if head.status == 101 => {
            push_field(out, b"connection", b"upgrade");
            push_field(out, b"upgrade", protocol);
        }
        _ if !head.is_interim() && !head.downstream_keep_alive(opts.client_keep_alive) => {
            out.extend_from_slice(b"connection: close\r\n");
        }
        _ => {}
    }
    for (name, value) in opts.extra {
        push_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_util::XorShift;

    fn parse_with(buf: &[u8], head_req: bool) -> Result<Option<ResponseHead>, HeadError> {
        parse_response_head(buf, head_req, &HeadLimits::default(), &mut HeadScratch::new())
    }

    fn ok(buf: &[u8]) -> ResponseHead {
        parse_with(buf, false).unwrap().unwrap()
    }

    #[test]
    fn framing_by_length_chunked_and_close() {
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (200, RespFraming::Length(5), true)
        );
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (RespFraming::Chunked, true));
        let h = ok(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (RespFraming::UntilClose, false));
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (RespFraming::UntilClose, false));
    }

    #[test]
    fn no_body_statuses_and_head() {
        for s in [
            &b"204 No Content"[..],
            b"304 Not Modified",
            b"100 Continue",
            b"103 Early Hints",
        ] {
            let mut buf = b"HTTP/1.1 ".to_vec();
            buf.extend_from_slice(s);
            buf.extend_from_slice(b"\r\nContent-Length: 10\r\n\r\n");
            assert_eq!(ok(&buf).framing, RespFraming::None);
        }
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let h = parse_with(buf, true).unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (RespFraming::None, true));
    }

    #[test]
    fn interim_responses() {
        assert!(ok(b"HTTP/1.1 100 Continue\r\n\r\n").is_interim());
        assert!(ok(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").is_interim());
        let switching = ok(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n");
        assert!(!switching.is_interim() && !switching.keep_alive);
        assert!(!ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_interim());
    }

    #[test]
    fn cl_and_te_is_chunked_and_not_reusable() {
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (RespFraming::Chunked, false));
    }

    #[test]
    fn rejects_invalid_content_length_in_response() {
        let e = parse_with(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            false,
        )
        .unwrap_err();
        assert_eq!(e.status(), 502);
        assert!(e.is_from_upstream());
        assert!(parse_with(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", false).is_err());
        // A HEAD response's Content-Length is not framing; still parsed.
        assert!(parse_with(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", true).is_ok());
    }

    #[test]
    fn rejects_te_in_http10_response() {
        assert!(parse_with(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false).is_err());
    }

    #[test]
    fn rejects_malformed_status_lines() {
        for buf in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n",
        ] {
            let e = parse_with(buf, false).unwrap_err();
            assert_eq!(e.status(), 502, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn response_keep_alive_rules() {
        assert!(!ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive);
    }

    #[test]
    fn split_at_every_offset_gives_the_same_head() {
        let buf: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
        let full = ok(buf);
        for cut in 0..buf.len() {
            let got = parse_with(&buf[..cut], false).unwrap();
            if cut < full.head_len {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(full));
            }
        }
    }

    fn downstream(raw: &[u8], client_keep_alive: bool, extra: &[(&[u8], &[u8])]) -> String {
        let mut scratch = HeadScratch::new();
        let head = parse_response_head(raw, false, &HeadLimits::default(), &mut scratch)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_downstream_head(&mut out, raw, &head, scratch.headers(), client_keep_alive, extra);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn downstream_head_drops_hop_by_hop_fields() {
        let raw = b"HTTP/1.0 200 Fine\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nTE: trailers\r\nTrailer: X-T\r\nContent-Length: 3\r\n\r\nabc";
        let got = downstream(raw, true, &[(b"x-request-id", b"abc")]);
        assert_eq!(
            got,
            "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nTrailer: X-T\r\nContent-Length: 3\r\nx-request-id: abc\r\n\r\n"
        );
    }

    #[test]
    fn downstream_head_says_close_when_the_client_connection_closes() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            downstream(raw, false, &[]),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nconnection: close\r\n\r\n"
        );
        // Delimited by close upstream, so by close downstream too.
        let raw = b"HTTP/1.1 200 OK\r\n\r\nbody...";
        assert_eq!(
            downstream(raw, true, &[]),
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
        );
        // Interim responses never carry it.
        let raw = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(downstream(raw, false, &[]), "HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn downstream_head_keeps_te_and_drops_cl_beside_it() {
        let raw = b"HTTP/1.1 200\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding, content-length\r\n\r\n";
        assert_eq!(
            downstream(raw, true, &[]),
            "HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn mutated_responses_never_panic() {
        let seed: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\nConnection: x, close\r\nX: y\r\n\r\nhello";
        let mut rng = XorShift::new(99);
        let mut scratch = HeadScratch::new();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            buf.extend_from_slice(seed);
            rng.mutate(&mut buf);
            if let Ok(Some(head)) = parse_response_head(&buf, false, &HeadLimits::default(), &mut scratch) {
                out.clear();
                write_downstream_head(&mut out, &buf, &head, scratch.headers(), true, &[]);
                assert!(out.ends_with(b"\r\n\r\n"));
            }
        }
    }

    /// Issue 9.3b: a response with `Content-Length` twice (the same value) reaches
    /// the client with it once, as a request does.
    #[test]
    fn issue9_repeated_content_length_is_sent_once() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
        ] {
            let mut scratch = HeadScratch::new();
            let head = parse_response_head(raw, false, &HeadLimits::default(), &mut scratch)
                .unwrap()
                .unwrap();
            assert_eq!(head.framing, RespFraming::Length(3));
            let mut out = Vec::new();
            write_downstream_head(&mut out, raw, &head, scratch.headers(), true, &[]);
            let text = String::from_utf8(out).unwrap().to_ascii_lowercase();
            assert_eq!(text.matches("content-length").count(), 1, "{text}");
            assert!(text.contains("content-length: 3\r\n"), "{text}");
        }
    }

    /// Issue 9.3b: a status outside 100–599 is not relayed.
    #[test]
    fn issue9_status_above_599_is_a_bad_response() {
        let mut scratch = HeadScratch::new();
        let raw = b"HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_response_head(raw, false, &HeadLimits::default(), &mut scratch).is_err());
        let raw = b"HTTP/1.1 599 Edge\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_response_head(raw, false, &HeadLimits::default(), &mut scratch).is_ok());
    }
}
