//! What the backend needs to know about one request head, extracted from
//! httparse's borrowed view so the read buffer can move on.

use crate::framing::BodyKind;

/// How the response body is produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodySource {
    /// `size` bytes from the preallocated filler.
    Filler(usize),
    /// The request's own body.
    Echo,
}

/// One parsed request, owning nothing from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// HEAD: send the headers of the response, not its body.
    pub head_only: bool,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    pub body: BodyKind,
    pub status: u16,
    pub source: BodySource,
}

/// Why a head cannot be answered normally; each maps to a status and a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed head, or a Content-Length that is not a number.
    BadRequest,
    /// Transfer-Encoding we do not decode (anything but a final `chunked`).
    NotImplemented,
}

impl Rejection {
    pub fn status(self) -> u16 {
        match self {
            Rejection::BadRequest => 400,
            Rejection::NotImplemented => 501,
        }
    }
}

/// Per-process defaults the path can override.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub size: usize,
    pub echo: bool,
}

impl RequestHead {
    pub fn from_parsed(
        req: &httparse::Request<'_, '_>,
        defaults: Defaults,
    ) -> Result<RequestHead, Rejection> {
        let method = req.method.unwrap_or("GET");
        let path = req.path.unwrap_or("/");
        let http10 = req.version == Some(0);
        let mut keep_alive = !http10;
        let mut body = BodyKind::Empty;
        let mut content_length: Option<u64> = None;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value).map_err(|_| Rejection::BadRequest)?;
                let n: u64 = v.trim().parse().map_err(|_| Rejection::BadRequest)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(Rejection::BadRequest);
                }
                content_length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    body = BodyKind::Chunked;
                } else {
                    return Err(Rejection::NotImplemented);
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        keep_alive = true;
                    }
                }
            }
        }
        if body != BodyKind::Chunked {
            if let Some(n) = content_length {
                body = BodyKind::Length(n);
            }
        }
        let (status, source) = route(path, defaults)?;
        Ok(RequestHead {
            head_only: method == "HEAD",
            keep_alive,
            body,
            status,
            source,
        })
    }
}

/// `/size/<n>`, `/status/<code>`, `/echo`; anything else gets the defaults.
/// The query string is ignored.
fn route(path: &str, defaults: Defaults) -> Result<(u16, BodySource), Rejection> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let default_source = if defaults.echo {
        BodySource::Echo
    } else {
        BodySource::Filler(defaults.size)
    };
    if let Some(n) = path.strip_prefix("/size/") {
        let n = n.parse().map_err(|_| Rejection::BadRequest)?;
        return Ok((200, BodySource::Filler(n)));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().map_err(|_| Rejection::BadRequest)?;
        if !(200..=599).contains(&code) {
            return Err(Rejection::BadRequest);
        }
        return Ok((code, default_source));
    }
    if path == "/echo" || path.starts_with("/echo/") {
        return Ok((200, BodySource::Echo));
    }
    Ok((200, default_source))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults {
        size: 64,
        echo: false,
    };

    fn head(raw: &[u8]) -> Result<RequestHead, Rejection> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw).unwrap().is_complete());
        RequestHead::from_parsed(&req, DEFAULTS)
    }

    #[test]
    fn plain_get_keeps_alive_with_default_size() {
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (h.keep_alive, h.status, h.source, h.body),
            (true, 200, BodySource::Filler(64), BodyKind::Empty)
        );
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !head(b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn path_overrides() {
        assert_eq!(
            head(b"GET /size/10?x=1 HTTP/1.1\r\n\r\n").unwrap().source,
            BodySource::Filler(10)
        );
        assert_eq!(head(b"GET /status/503 HTTP/1.1\r\n\r\n").unwrap().status, 503);
        assert_eq!(
            head(b"POST /echo HTTP/1.1\r\n\r\n").unwrap().source,
            BodySource::Echo
        );
        assert_eq!(head(b"GET /size/x HTTP/1.1\r\n\r\n"), Err(Rejection::BadRequest));
        assert_eq!(
            head(b"GET /status/99 HTTP/1.1\r\n\r\n"),
            Err(Rejection::BadRequest)
        );
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let h = head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
    }

    #[test]
    fn conflicting_content_lengths_are_rejected() {
        let r = head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert_eq!(r, Err(Rejection::BadRequest));
    }

    #[test]
    fn head_method_is_head_only() {
        assert!(head(b"HEAD / HTTP/1.1\r\n\r\n").unwrap().head_only);
    }
}
