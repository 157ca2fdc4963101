//! Types shared by request and response head parsing: offsets into the read
//! buffer ([`Span`], [`HeaderSpan`]), limits ([`HeadLimits`]), the reusable
//! [`HeadScratch`] and the error ([`HeadError`]).
//!
//! The httparse call lives here too, so `request.rs` and `response.rs` only
//! apply the RFC 9112 rules on top of already tokenised field lines.

use std::fmt;
use std::mem::MaybeUninit;

/// A byte range `start..end` of the buffer a head was parsed from.
///
/// Heads are at most [`HeadLimits::max_header_bytes`] long, so `u32` offsets
/// are enough and keep [`HeaderSpan`] at 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The empty span at offset 0.
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    /// The bytes of `buf` this span covers; empty if the span does not fit
    /// `buf` (a span used with the wrong buffer), never a panic.
    #[inline]
    pub fn slice(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }

    #[inline]
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }

    /// The span of `part`, a sub-slice of `buf`. Falls back to
    /// [`Span::EMPTY`] when `part` is empty or does not point into `buf`
    /// (httparse returns a static `""` reason phrase in some cases).
    pub(crate) fn of(buf: &[u8], part: &[u8]) -> Span {
        let base = buf.as_ptr() as usize;
        let at = part.as_ptr() as usize;
        match at.checked_sub(base) {
            Some(start) if !part.is_empty() && start + part.len() <= buf.len() => Span {
                start: start as u32,
                end: (start + part.len()) as u32,
            },
            _ => Span::EMPTY,
        }
    }

    /// `self` narrowed to `from..to`, both relative to `self.start`.
    #[inline]
    pub(crate) fn sub(self, from: usize, to: usize) -> Span {
        Span {
            start: self.start + from as u32,
            end: self.start + to as u32,
        }
    }
}

/// One field line of a parsed head: name and value (without surrounding
/// whitespace) as offsets into the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// The HTTP version of a parsed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Size limits for a message head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head accepted, start-line through the blank line. A longer head
    /// is answered 431. Values above `u32::MAX` are treated as `u32::MAX`.
    pub max_header_bytes: usize,
    /// Most field lines accepted in one head; one more is answered 431.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    /// 16 KiB and 100 fields: nginx's large_client_header_buffers and
    /// hyper's header count.
    fn default() -> Self {
        HeadLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// Reusable buffers for head parsing. Keep one per connection (or per
/// shard) and pass it to every parse: after warm-up, parsing allocates
/// nothing.
#[derive(Default)]
pub struct HeadScratch {
    /// httparse's header slots. Empty between parses; only its allocation is
    /// kept, re-typed to the lifetime of each buffer by [`recycle`].
    raw: Vec<MaybeUninit<httparse::Header<'static>>>,
    /// The field lines of the last successful parse.
    headers: Vec<HeaderSpan>,
}

impl HeadScratch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The field lines of the last successful parse, in order, as offsets
    /// into the buffer that was parsed.
    #[inline]
    pub fn headers(&self) -> &[HeaderSpan] {
        &self.headers
    }
}

impl fmt::Debug for HeadScratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadScratch")
            .field("headers", &self.headers)
            .finish()
    }
}

/// Re-types an emptied vector of header slots to another buffer lifetime.
///
/// The vector is empty, so no reference survives; `collect` from a
/// `vec::IntoIter` of a type with the same layout reuses the allocation
/// (std's in-place collection). If a future std stops doing so this costs an
/// allocation, never soundness.
fn recycle<'a, 'b>(
    mut slots: Vec<MaybeUninit<httparse::Header<'a>>>,
) -> Vec<MaybeUninit<httparse::Header<'b>>> {
    slots.clear();
    slots.into_iter().map(|_| MaybeUninit::uninit()).collect()
}

/// Why a head was refused, and the status to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadError {
    kind: HeadErrorKind,
    reason: &'static str,
    from_upstream: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeadErrorKind {
    /// Breaks the grammar or a framing rule of RFC 9110/9112.
    Malformed,
    /// Over [`HeadLimits`].
    TooLarge,
    /// Valid HTTP we do not implement (an unknown transfer coding).
    NotImplemented,
}

impl HeadError {
    /// A malformed request: 400.
    pub(crate) const fn bad_request(reason: &'static str) -> Self {
        Self::client(HeadErrorKind::Malformed, reason)
    }

    /// A request head over a size or count limit: 431.
    pub(crate) const fn too_large(reason: &'static str) -> Self {
        Self::client(HeadErrorKind::TooLarge, reason)
    }

    /// A request using something we do not implement: 501.
    pub(crate) const fn not_implemented(reason: &'static str) -> Self {
        Self::client(HeadErrorKind::NotImplemented, reason)
    }

    /// A malformed upstream response: 502 to the client.
    pub(crate) const fn bad_response(reason: &'static str) -> Self {
        HeadError {
            kind: HeadErrorKind::Malformed,
            reason,
            from_upstream: true,
        }
    }

    /// An upstream response head over the limits: 502 to the client.
    pub(crate) const fn response_too_large(reason: &'static str) -> Self {
        HeadError {
            kind: HeadErrorKind::TooLarge,
            reason,
            from_upstream: true,
        }
    }

    const fn client(kind: HeadErrorKind, reason: &'static str) -> Self {
        HeadError {
            kind,
            reason,
            from_upstream: false,
        }
    }

    /// The status to answer the client with: 400, 431 or 501 for a request
    /// head, 502 for any upstream response head.
    pub fn status(&self) -> u16 {
        match (self.from_upstream, self.kind) {
            (true, _) => 502,
            (false, HeadErrorKind::Malformed) => 400,
            (false, HeadErrorKind::TooLarge) => 431,
            (false, HeadErrorKind::NotImplemented) => 501,
        }
    }

    /// A short, static description, fit for a log line or a response body.
    #[inline]
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The head was over [`HeadLimits`] (bytes or field count).
    pub fn is_too_large(&self) -> bool {
        self.kind == HeadErrorKind::TooLarge
    }

    /// The fault is the upstream's (a response head), not the client's.
    /// The upstream connection must be closed, not returned to the pool.
    pub fn is_from_upstream(&self) -> bool {
        self.from_upstream
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status())
    }
}

impl std::error::Error for HeadError {}

/// What httparse found in a complete head.
pub(crate) struct RawRequest {
    pub head_len: usize,
    pub method: Span,
    pub target: Span,
    pub version: Version,
}

pub(crate) struct RawResponse {
    pub head_len: usize,
    pub status: u16,
    pub reason: Span,
    pub version: Version,
}

/// The part of `buf` httparse may look at: at most `max_header_bytes`.
fn window<'b>(buf: &'b [u8], limits: &HeadLimits) -> (&'b [u8], usize) {
    let max = limits.max_header_bytes.min(u32::MAX as usize);
    (&buf[..buf.len().min(max)], max)
}

/// Slots to offer httparse: `max_headers`, but never more than fit in
/// `max` bytes (a field line takes at least 3, `a:\n`), so a huge configured
/// count cannot make the scratch allocate more than the head could use.
fn header_slots(limits: &HeadLimits, max: usize) -> usize {
    limits.max_headers.min(max / 3 + 1)
}

fn version_of(minor: Option<u8>) -> Version {
    if minor == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    }
}

/// Tokenises a request head into `scratch`. `Ok(None)` means more bytes are
/// needed; the 431 for an incomplete head at the byte limit is returned here.
pub(crate) fn tokenize_request(
    buf: &[u8],
    limits: &HeadLimits,
    scratch: &mut HeadScratch,
) -> Result<Option<RawRequest>, HeadError> {
    let (window, max) = window(buf, limits);
    let mut slots = recycle(std::mem::take(&mut scratch.raw));
    slots.resize_with(header_slots(limits, max), MaybeUninit::uninit);
    scratch.headers.clear();

    let result = {
        let mut req = httparse::Request::new(&mut []);
        // Defaults are strict for requests: no obs-fold, no space before
        // the colon, no space before the first field, single SP delimiters.
        let parsed =
            httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, window, &mut slots);
        match parsed {
            Ok(httparse::Status::Complete(head_len)) => {
                for h in req.headers.iter() {
                    scratch.headers.push(HeaderSpan {
                        name: Span::of(window, h.name.as_bytes()),
                        value: Span::of(window, h.value),
                    });
                }
                Ok(Some(RawRequest {
                    head_len,
                    method: Span::of(window, req.method.unwrap_or("").as_bytes()),
                    target: Span::of(window, req.path.unwrap_or("").as_bytes()),
                    version: version_of(req.version),
                }))
            }
            Ok(httparse::Status::Partial) if buf.len() >= max => {
                Err(HeadError::too_large("request head too large"))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(HeadError::too_large("too many header fields")),
            Err(e) => Err(HeadError::bad_request(request_error_reason(e))),
        }
    };
    scratch.raw = recycle(slots);
    result
}

/// Tokenises a response head into `scratch`; see [`tokenize_request`].
pub(crate) fn tokenize_response(
    buf: &[u8],
    limits: &HeadLimits,
    scratch: &mut HeadScratch,
) -> Result<Option<RawResponse>, HeadError> {
    let (window, max) = window(buf, limits);
    let mut slots = recycle(std::mem::take(&mut scratch.raw));
    slots.resize_with(header_slots(limits, max), MaybeUninit::uninit);
    scratch.headers.clear();

    let result = {
        let mut res = httparse::Response::new(&mut []);
        // Strict as for requests: headers are copied downstream verbatim, so
        // an obs-fold or a space before the colon must not pass through.
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, window, &mut slots);
        match parsed {
            Ok(httparse::Status::Complete(head_len)) => {
                for h in res.headers.iter() {
                    scratch.headers.push(HeaderSpan {
                        name: Span::of(window, h.name.as_bytes()),
                        value: Span::of(window, h.value),
                    });
                }
                Ok(Some(RawResponse {
                    head_len,
                    status: res.code.unwrap_or(0),
                    reason: Span::of(window, res.reason.unwrap_or("").as_bytes()),
                    version: version_of(res.version),
                }))
            }
            Ok(httparse::Status::Partial) if buf.len() >= max => {
                Err(HeadError::response_too_large("response head too large"))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(HeadError::response_too_large(
                "response has too many header fields",
            )),
            Err(e) => Err(HeadError::bad_response(response_error_reason(e))),
        }
    };
    scratch.raw = recycle(slots);
    result
}

fn request_error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "invalid request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::Status | httparse::Error::TooManyHeaders => "invalid request head",
    }
}

fn response_error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "response has an invalid header name",
        httparse::Error::HeaderValue => "response has an invalid header value",
        httparse::Error::NewLine => "response has an invalid line ending",
        httparse::Error::Status => "response has an invalid status line",
        httparse::Error::Version => "response has an invalid HTTP version",
        httparse::Error::Token | httparse::Error::TooManyHeaders => "invalid response head",
    }
}

/// The first value of the field `name` (ASCII case-insensitive).
pub fn find_header<'b>(buf: &'b [u8], headers: &[HeaderSpan], name: &[u8]) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.slice(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.slice(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_reuses_its_allocation_across_parses() {
        let limits = HeadLimits::default();
        let mut scratch = HeadScratch::new();
        let a = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        tokenize_request(&a, &limits, &mut scratch).unwrap();
        let ptr = scratch.raw.as_ptr() as usize;
        let cap = scratch.raw.capacity();
        let b = b"GET /x HTTP/1.1\r\nHost: b\r\n\r\n".to_vec();
        tokenize_request(&b, &limits, &mut scratch).unwrap();
        assert_eq!(scratch.raw.capacity(), cap);
        assert_eq!(scratch.raw.as_ptr() as usize, ptr);
        assert!(cap >= limits.max_headers);
    }

    #[test]
    fn huge_max_headers_is_bounded_by_max_bytes() {
        let limits = HeadLimits {
            max_header_bytes: 300,
            max_headers: usize::MAX,
        };
        let mut scratch = HeadScratch::new();
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        while buf.len() < 290 {
            buf.extend_from_slice(b"a:\n");
        }
        buf.extend_from_slice(b"\r\n");
        let raw = tokenize_request(&buf, &limits, &mut scratch).unwrap().unwrap();
        assert_eq!(raw.head_len, buf.len());
        assert!(scratch.raw.capacity() <= 101);
    }

    #[test]
    fn span_of_foreign_slice_is_empty() {
        let buf = b"abc";
        assert_eq!(Span::of(buf, b"zz"), Span::EMPTY);
        assert_eq!(Span::of(buf, &buf[1..]), Span { start: 1, end: 3 });
        assert_eq!(Span { start: 2, end: 9 }.slice(buf), b"");
    }
}
