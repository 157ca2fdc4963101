//! Responses ringway writes itself: mocks, routing refusals and proxy errors. Every
//! one comes from here, with a request id and (for errors) a small body naming the
//! problem.
//!
//! The serializers ([`write_local`], [`write_error`]) are pure; [`respond`] sends a
//! local answer for an [`Exchange`], first reading and discarding a small request
//! body so the connection can be kept.

use crate::http::BodyFraming;
use crate::proxy::body::{pump, BodyError, BodyTiming, Sink};
use crate::proxy::error::{Answer, ProxyError};
use crate::proxy::exchange::{BodyRead, Exchange, Outcome};

/// A request body up to this size is read and discarded when we answer locally, so
/// the connection can be kept; a larger one closes the connection instead.
const DISCARD_LIMIT: u64 = 1 << 20;

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
    out.extend_from_slice(b"date: ");
    push_date(out);
    out.extend_from_slice(b"\r\ncontent-length: ");
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

/// Appends the current time as an HTTP `Date` value (RFC 9110 §6.6.1: an origin
/// server with a clock sends one). Formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != now {
            *d = (now, crate::civil::imf_fixdate(now));
        }
        out.extend_from_slice(d.1.as_bytes());
    });
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::http::itoa(n, &mut [0; 20]));
}

/// The body of a serialized response: what follows its head.
pub fn body_len(response: &[u8]) -> u64 {
    memchr::memmem::find(response, b"\r\n\r\n").map_or(0, |p| (response.len() - p - 4) as u64)
}

/// Answers `x` locally with `resp`. A request body still unread is read and
/// discarded first when it is small enough; otherwise (or with `Expect:
/// 100-continue`, where the client waits, or after a partly read body) the
/// connection is closed after the response.
pub async fn respond(x: &mut Exchange<'_>, resp: &LocalResponse<'_>) -> Outcome {
    let mut keep = x.facts.keep_alive && !x.shard.draining.get();
    let mut bad_body = None;
    match x.body {
        BodyRead::Done => {}
        BodyRead::Partial => keep = false,
        BodyRead::Unread => match x.facts.framing {
            BodyFraming::None => {}
            _ if x.facts.expect_continue => keep = false,
            BodyFraming::Length(n) if n > DISCARD_LIMIT => keep = false,
            framing if keep => {
                let timing = BodyTiming::of(&x.view.snap.config.limits);
                let sink = Sink::Discard { limit: DISCARD_LIMIT };
                match pump(x.client, framing, sink, timing).await {
                    Ok(()) => x.body = BodyRead::Done,
                    Err(BodyError::Framing(why)) => bad_body = Some(why),
                    Err(_) => return Outcome::new(resp.status, false),
                }
            }
            _ => {}
        },
    }
    let mut out = x.shard.take_small();
    let status = match bad_body {
        // The body is malformed: that is the answer, and the connection closes.
        Some(why) => {
            write_error(&mut out, 400, why, x.id.as_bytes(), ConnHeader::Close);
            keep = false;
            400
        }
        None => {
            let conn = match (keep, x.facts.http10) {
                (false, _) => ConnHeader::Close,
                (true, true) => ConnHeader::KeepAlive,
                (true, false) => ConnHeader::None,
            };
            write_local(&mut out, resp, x.id.as_bytes(), conn, x.facts.head_only);
            resp.status
        }
    };
    let (r, out) = x.client.io.write_all(out).await;
    if r.is_ok() {
        x.sent.body_bytes += body_len(&out);
    }
    x.shard.give_small(out);
    Outcome::new(status, keep && r.is_ok())
}

/// Answers with an error response whose body names `problem` and the request id.
pub async fn refuse(x: &mut Exchange<'_>, status: u16, problem: &str) -> Outcome {
    let body = error_body(problem, x.id.as_bytes());
    let resp = LocalResponse {
        status,
        headers: &[],
        body: &body,
    };
    respond(x, &resp).await
}

/// Answers an authorization refusal: a JSON body with a stable `code`, a message
/// naming the problem and the request id; `WWW-Authenticate` on a 401. A body the
/// refused caller sent is not read: the connection closes after the answer.
pub async fn deny(x: &mut Exchange<'_>, d: &crate::proxy::policy::auth::Denial) -> Outcome {
    if x.body == BodyRead::Unread && x.facts.has_body() {
        x.facts.keep_alive = false;
    }
    let body = json_error(d.code, &d.message, x.id.as_bytes(), &[]);
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(scheme) = d.challenge {
        headers.push(("www-authenticate".to_string(), scheme.to_string()));
    }
    let resp = LocalResponse {
        status: d.status,
        headers: &headers,
        body: &body,
    };
    respond(x, &resp).await
}

/// Answers a request a rate limit refused: 429 with `Retry-After` and the
/// `RateLimit` fields of the limit, or 503 when a cluster limit cannot reach Redis
/// and must deny. A JSON body with a stable code and the limit's name. Like an
/// authorization refusal, an unread body is not read: the connection closes.
pub async fn limited(x: &mut Exchange<'_>, l: &crate::traffic::Limited) -> Outcome {
    use crate::traffic::Limited;
    if x.body == BodyRead::Unread && x.facts.has_body() {
        x.facts.keep_alive = false;
    }
    let name = x
        .view
        .snap
        .limits
        .get(l.limit())
        .map_or("", |n| n.def.name.as_str());
    let (status, code, message, retry) = match *l {
        Limited::Over { retry_at, now, .. } => {
            let secs = crate::traffic::fields::seconds_until(retry_at, now).max(1);
            let message = format!("rate limit '{name}' exceeded; retry in {secs} s");
            (429, "rate_limited", message, secs)
        }
        Limited::Unavailable { .. } => {
            let message = format!("rate limit '{name}' cannot be checked (its Redis is unavailable)");
            (503, "rate_limit_unavailable", message, 1)
        }
    };
    let body = json_error(code, &message, x.id.as_bytes(), &[("limit", name)]);
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("retry-after".to_string(), retry.to_string()),
    ];
    if let Some((policy, limit)) = crate::proxy::policy::limits::field_values(x, Some(l)) {
        headers.push((
            "ratelimit-policy".to_string(),
            String::from_utf8_lossy(&policy).into_owned(),
        ));
        headers.push((
            "ratelimit".to_string(),
            String::from_utf8_lossy(&limit).into_owned(),
        ));
    }
    let resp = LocalResponse {
        status,
        headers: &headers,
        body: &body,
    };
    respond(x, &resp).await
}

/// `{"code":"…","message":"…","request_id":"…"}` with `extra` string members after
/// them, and a newline.
pub fn json_error(code: &str, message: &str, request_id: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    use crate::observe::access_log::json_str;
    let mut out = Vec::with_capacity(64 + message.len());
    out.extend_from_slice(b"{\"code\":");
    json_str(&mut out, code.as_bytes());
    out.extend_from_slice(b",\"message\":");
    json_str(&mut out, message.as_bytes());
    out.extend_from_slice(b",\"request_id\":");
    json_str(&mut out, request_id);
    for (k, v) in extra {
        out.push(b',');
        json_str(&mut out, k.as_bytes());
        out.push(b':');
        json_str(&mut out, v.as_bytes());
    }
    out.extend_from_slice(b"}\n");
    out
}

/// Answers a failed proxy attempt as [`ProxyError::answer`] says.
pub async fn fail(x: &mut Exchange<'_>, err: ProxyError) -> Outcome {
    match err.answer() {
        Answer::Close { status } => Outcome::new(status, false),
        Answer::Respond {
            status,
            problem,
            close: true,
        } => {
            let mut out = x.shard.take_small();
            write_error(&mut out, status, problem, x.id.as_bytes(), ConnHeader::Close);
            let (r, out) = x.client.io.write_all(out).await;
            if r.is_ok() {
                x.sent.body_bytes += body_len(&out);
            }
            x.shard.give_small(out);
            Outcome::new(status, false)
        }
        Answer::Respond { status, problem, .. } => match err.all_down_group() {
            Some(e) => {
                let name = x
                    .view
                    .snap
                    .config
                    .endpoints
                    .get(e.0 as usize)
                    .map_or("", |d| d.name());
                let problem = format!("every member of endpoint group '{name}' is down");
                refuse(x, status, &problem).await
            }
            None => refuse(x, status, problem).await,
        },
    }
}

/// Answers with the route's mock response.
pub async fn mock(x: &mut Exchange<'_>, route: ringway_router::RouteId) -> Outcome {
    let view = x.view;
    let mock = view
        .snap
        .config
        .routes
        .get(route.index())
        .and_then(|r| r.mock.as_ref());
    let (status, headers, body): (u16, &[(String, String)], &[u8]) = match mock {
        Some(m) => (m.status, &m.headers, &m.body),
        None => (500, &[], b""),
    };
    // `[traffic] headers = "always"`: the limits that admitted the request say so.
    let with_limits;
    let headers = match crate::proxy::policy::limits::field_values(x, None) {
        Some((policy, limit)) => {
            let mut h = headers.to_vec();
            h.push((
                "ratelimit-policy".to_string(),
                String::from_utf8_lossy(&policy).into_owned(),
            ));
            h.push((
                "ratelimit".to_string(),
                String::from_utf8_lossy(&limit).into_owned(),
            ));
            with_limits = h;
            &with_limits[..]
        }
        None => headers,
    };
    respond(
        x,
        &LocalResponse {
            status,
            headers,
            body,
        },
    )
    .await
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
