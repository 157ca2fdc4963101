//! Responses ringway writes itself: mocks, routing failures and proxy errors. Every
//! one comes from here, with a request id and (for errors) a small body naming the
//! problem.

/// The reason phrase of the statuses we write.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// What the `connection` header of a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnHeader {
    /// Nothing: HTTP/1.1 keep-alive is the default.
    None,
    /// `connection: keep-alive`, which an HTTP/1.0 client needs to keep the connection.
    KeepAlive,
    /// `connection: close`: the connection closes after this response.
    Close,
}

/// A locally generated response.
#[derive(Debug)]
pub struct LocalResponse<'a> {
    pub status: u16,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Writes `resp` as an HTTP/1.1 response into `out`. `head_only` for HEAD requests
/// (Content-Length still says what a GET would get).
pub fn write_local(
    out: &mut Vec<u8>,
    resp: &LocalResponse<'_>,
    request_id: &[u8],
    conn: ConnHeader,
    head_only: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(reason(resp.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_type = false;
    for (k, v) in resp.headers {
        has_type |= k.eq_ignore_ascii_case("content-type");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_type && !resp.body.is_empty() {
        out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    push_u64(out, resp.body.len() as u64);
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(request_id);
    match conn {
        ConnHeader::None => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"\r\nconnection: keep-alive"),
        ConnHeader::Close => out.extend_from_slice(b"\r\nconnection: close"),
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(resp.body);
    }
}

/// The body of an error response: the problem and the request id, one per line.
pub fn error_body(problem: &str, request_id: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + problem.len());
    body.extend_from_slice(b"ringway: ");
    body.extend_from_slice(problem.as_bytes());
    body.extend_from_slice(b"\nrequest-id: ");
    body.extend_from_slice(request_id);
    body.push(b'\n');
    body
}

/// Writes an error response whose body names the problem and the request id.
pub fn write_error(out: &mut Vec<u8>, status: u16, problem: &str, request_id: &[u8], conn: ConnHeader) {
    let body = error_body(problem, request_id);
    let resp = LocalResponse {
        status,
        headers: &[],
        body: &body,
    };
    write_local(out, &resp, request_id, conn, false);
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::http::itoa(n, &mut [0; 20]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_names_problem_and_request_id() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            502,
            "upstream refused the connection",
            b"abc",
            ConnHeader::Close,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"));
        assert!(text.contains("x-request-id: abc\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body,
            "ringway: upstream refused the connection\nrequest-id: abc\n"
        );
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn head_only_keeps_length_but_drops_body() {
        let mut out = Vec::new();
        let h = vec![("content-type".to_string(), "text/plain".to_string())];
        write_local(
            &mut out,
            &LocalResponse {
                status: 200,
                headers: &h,
                body: b"ok\n",
            },
            b"1",
            ConnHeader::None,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("content-length: 3\r\nx-request-id: 1\r\n\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("content-type").count(), 1);
    }
}
