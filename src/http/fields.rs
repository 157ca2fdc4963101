//! Field-value rules shared by requests and responses: list splitting,
//! Content-Length and Transfer-Encoding evaluation, Connection options and
//! the hop-by-hop set.

use super::head::{HeaderSpan, Span};

/// The items of a comma-separated list value (RFC 9110 §5.6.1), with
/// surrounding whitespace removed. Empty items are yielded as empty slices
/// so callers can decide whether they matter.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Folds one Content-Length field value into `current`.
///
/// RFC 9110 §8.6: a list of identical values, or repeated identical fields,
/// may be taken as that one value; anything else (differing values, an
/// empty item, a sign, a non-digit, overflow) makes the framing invalid.
pub(crate) fn fold_content_length(value: &[u8], current: &mut Option<u64>) -> Result<(), ()> {
    for item in list_items(value) {
        if item.is_empty() {
            return Err(());
        }
        let mut n: u64 = 0;
        for &b in item {
            if !b.is_ascii_digit() {
                return Err(());
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(())?;
        }
        match *current {
            Some(prev) if prev != n => return Err(()),
            _ => *current = Some(n),
        }
    }
    Ok(())
}

/// The transfer codings of a message, folded in order over every
/// Transfer-Encoding field line.
#[derive(Default)]
pub(crate) struct Codings {
    /// At least one Transfer-Encoding field line was seen.
    pub present: bool,
    /// How many times `chunked` was listed.
    chunked: u32,
    /// The last non-empty coding listed so far.
    last: LastCoding,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum LastCoding {
    #[default]
    Nothing,
    Chunked,
    /// In the IANA registry (RFC 9112 §7): gzip, deflate, compress, ...
    Known,
    Unknown,
}

/// What the codings say about the body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CodingsVerdict {
    /// Final coding is `chunked`, applied once.
    Chunked,
    /// `chunked` is applied more than once or is not the final coding.
    ChunkedMisplaced,
    /// The final coding is a known one other than `chunked` (or none at all).
    FinalNotChunked,
    /// The final coding is one we do not know.
    Unknown,
}

impl Codings {
    pub fn add(&mut self, value: &[u8]) {
        self.present = true;
        for item in list_items(value) {
            // Parameters (`;q=...`) never apply to these codings; ignore them.
            let coding = trim_ows(item.split(|&b| b == b';').next().unwrap_or(&[]));
            if coding.is_empty() {
                continue;
            }
            self.last = if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
                LastCoding::Chunked
            } else if [
                &b"gzip"[..],
                b"x-gzip",
                b"deflate",
                b"compress",
                b"x-compress",
                b"identity",
            ]
            .iter()
            .any(|k| coding.eq_ignore_ascii_case(k))
            {
                LastCoding::Known
            } else {
                LastCoding::Unknown
            };
        }
    }

    pub fn verdict(&self) -> CodingsVerdict {
        match self.last {
            _ if self.chunked > 1 => CodingsVerdict::ChunkedMisplaced,
            LastCoding::Chunked => CodingsVerdict::Chunked,
            _ if self.chunked == 1 => CodingsVerdict::ChunkedMisplaced,
            LastCoding::Unknown => CodingsVerdict::Unknown,
            LastCoding::Known | LastCoding::Nothing => CodingsVerdict::FinalNotChunked,
        }
    }
}

/// Connection options of a message (RFC 9110 §7.6.1), folded over every
/// Connection field line.
#[derive(Default, Clone, Copy)]
pub(crate) struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    /// An option other than `close`/`keep-alive` was listed: some other
    /// field must be dropped when forwarding.
    pub names_fields: bool,
    /// `upgrade` was listed (RFC 9110 §7.8: an Upgrade field counts only then).
    pub upgrade: bool,
}

impl ConnectionOptions {
    pub fn add(&mut self, value: &[u8]) {
        for token in list_items(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !token.is_empty() {
                self.upgrade |= token.eq_ignore_ascii_case(b"upgrade");
                self.names_fields = true;
            }
        }
    }

    pub fn scan(buf: &[u8], headers: &[HeaderSpan]) -> Self {
        let mut options = ConnectionOptions::default();
        for h in headers {
            if h.name.slice(buf).eq_ignore_ascii_case(b"connection") {
                options.add(h.value.slice(buf));
            }
        }
        options
    }
}

/// Fields that describe a single connection and are never forwarded
/// (RFC 9110 §7.6.1). Transfer-Encoding is hop-by-hop too, but the proxy
/// relays chunked bodies verbatim, so it keeps the field as received.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Fields a Connection option may not remove: dropping them would change
/// the framing or the routing of the forwarded message (a
/// `Connection: content-length` would turn the body into a second request).
fn is_protected(name: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding", b"host"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Decides which received field lines are forwarded.
pub(crate) struct HopFilter<'b, 'h> {
    buf: &'b [u8],
    /// The field lines from the first Connection field to the last, when
    /// one of them names a field other than close/keep-alive; else empty.
    /// Checking a name then costs the Connection tokens, not all fields.
    connection_lines: &'h [HeaderSpan],
}

impl<'b, 'h> HopFilter<'b, 'h> {
    pub fn new(buf: &'b [u8], headers: &'h [HeaderSpan]) -> Self {
        let is_connection = |h: &HeaderSpan| name_is(buf, h.name, b"connection");
        let connection_lines = match (
            headers.iter().position(is_connection),
            headers.iter().rposition(is_connection),
        ) {
            (Some(first), Some(last))
                if ConnectionOptions::scan(buf, &headers[first..=last]).names_fields =>
            {
                &headers[first..=last]
            }
            _ => &[],
        };
        HopFilter {
            buf,
            connection_lines,
        }
    }

    /// Whether the field called `name` is dropped when forwarding.
    pub fn drops(&self, name: &[u8]) -> bool {
        is_hop_by_hop(name)
            || (!self.connection_lines.is_empty() && !is_protected(name) && self.listed_in_connection(name))
    }

    fn listed_in_connection(&self, name: &[u8]) -> bool {
        self.connection_lines
            .iter()
            .filter(|h| name_is(self.buf, h.name, b"connection"))
            .flat_map(|h| list_items(h.value.slice(self.buf)))
            .any(|token| token.eq_ignore_ascii_case(name))
    }
}

/// Header name equality, ASCII case-insensitive; `lower` must be lowercase.
#[inline]
pub(crate) fn name_is(buf: &[u8], name: Span, lower: &[u8]) -> bool {
    name.len() == lower.len() && name.slice(buf).eq_ignore_ascii_case(lower)
}

/// Appends the field line `name: value`.
#[inline]
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written into the end of `tmp`.
pub fn itoa(mut n: u64, tmp: &mut [u8; 20]) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &tmp[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(values: &[&[u8]]) -> CodingsVerdict {
        let mut c = Codings::default();
        for v in values {
            c.add(v);
        }
        c.verdict()
    }

    #[test]
    fn codings_verdicts() {
        assert_eq!(verdict(&[b"chunked"]), CodingsVerdict::Chunked);
        assert_eq!(verdict(&[b"CHUNKED"]), CodingsVerdict::Chunked);
        assert_eq!(verdict(&[b"gzip, chunked"]), CodingsVerdict::Chunked);
        assert_eq!(verdict(&[b"gzip", b"chunked"]), CodingsVerdict::Chunked);
        assert_eq!(verdict(&[b"foo, chunked"]), CodingsVerdict::Chunked);
        assert_eq!(verdict(&[b"chunked, "]), CodingsVerdict::Chunked);
        assert_eq!(verdict(&[b"chunked, gzip"]), CodingsVerdict::ChunkedMisplaced);
        assert_eq!(
            verdict(&[b"chunked", b"chunked"]),
            CodingsVerdict::ChunkedMisplaced
        );
        assert_eq!(verdict(&[b"chunked", b"foo"]), CodingsVerdict::ChunkedMisplaced);
        assert_eq!(verdict(&[b"gzip"]), CodingsVerdict::FinalNotChunked);
        assert_eq!(verdict(&[b""]), CodingsVerdict::FinalNotChunked);
        assert_eq!(verdict(&[b"foo"]), CodingsVerdict::Unknown);
        assert_eq!(verdict(&[b"chunked-ish"]), CodingsVerdict::Unknown);
        assert_eq!(verdict(&[b"chunked;x=1"]), CodingsVerdict::Chunked);
    }

    #[test]
    fn content_length_lists() {
        let mut cl = None;
        assert!(fold_content_length(b"42", &mut cl).is_ok());
        assert!(fold_content_length(b"42, 42", &mut cl).is_ok());
        assert_eq!(cl, Some(42));
        assert!(fold_content_length(b"43", &mut cl).is_err());
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 2",
            b"0x10",
            b"1,",
            b"99999999999999999999",
        ] {
            assert!(fold_content_length(bad, &mut None).is_err(), "{bad:?}");
        }
    }

    fn spans(buf: &[u8]) -> Vec<HeaderSpan> {
        // `Name: value` lines separated by '\n', no whitespace in values.
        let mut out = Vec::new();
        let mut at = 0u32;
        for line in buf.split(|&b| b == b'\n') {
            let colon = line.iter().position(|&b| b == b':').unwrap() as u32;
            out.push(HeaderSpan {
                name: Span {
                    start: at,
                    end: at + colon,
                },
                value: Span {
                    start: at + colon + 1,
                    end: at + line.len() as u32,
                },
            });
            at += line.len() as u32 + 1;
        }
        out
    }

    #[test]
    fn hop_filter_reads_every_connection_field() {
        let buf = b"Connection:close\nX-A:1\nX-B:2\nconnection:x-b,host\nX-C:3";
        let headers = spans(buf);
        let f = HopFilter::new(buf, &headers);
        assert!(f.drops(b"connection") && f.drops(b"Keep-Alive") && f.drops(b"TE"));
        assert!(f.drops(b"X-B") && f.drops(b"x-b"));
        assert!(!f.drops(b"X-A") && !f.drops(b"X-C") && !f.drops(b"Trailer"));
        assert!(!f.drops(b"Host"), "protected from Connection");
        let buf = b"Connection:keep-alive\nX-A:1";
        let headers = spans(buf);
        let f = HopFilter::new(buf, &headers);
        assert!(f.connection_lines.is_empty() && !f.drops(b"X-A"));
    }

    #[test]
    fn trims_ows() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
    }
}
