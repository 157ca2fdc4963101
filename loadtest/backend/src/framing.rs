//! Request body framing (RFC 9112 §6): how many bytes after the head belong
//! to this request. The backend reads every body to the end — discarding it,
//! or keeping it for `/echo` — so the next pipelined request starts at the
//! right byte.

/// How the request says its body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// "If this is a request message and none of the above are true, then the
    /// message body length is zero (no message body is present)." (§6.3 p7)
    Empty,
    /// "If a valid Content-Length header field is present without
    /// Transfer-Encoding, its decimal value defines the expected message body
    /// length in octets." (§6.3 p6)
    Length(u64),
    /// "If a Transfer-Encoding header field is present and the chunked
    /// transfer coding is the final encoding, the message body length is
    /// determined by reading and decoding the chunked data until the transfer
    /// coding indicates the data is complete." (§6.3 p4)
    Chunked,
}

/// The body was not valid chunked framing; the connection cannot be reused.
#[derive(Debug, PartialEq, Eq)]
pub struct FramingError(&'static str);

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad chunked body: {}", self.0)
    }
}

/// Where the chunked decoder is inside `chunked-body` (RFC 9112 §7.1):
/// `*chunk last-chunk trailer-section CRLF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkedState {
    /// `chunk-size = 1*HEXDIG`; the value so far.
    Size(u64),
    /// `chunk-ext` after the size: skipped up to the line's LF.
    Extension(u64),
    /// Saw the CR ending the size line, expecting its LF.
    SizeLf(u64),
    /// `chunk-data`: this many octets still to come.
    Data(u64),
    /// The CRLF after `chunk-data`: expecting CR.
    DataCr,
    /// The CRLF after `chunk-data`: expecting LF.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field line: skipped up to its LF.
    TrailerLine,
    /// Saw the CR of the final CRLF, expecting its LF.
    EndLf,
}

/// Incremental body reader: feed it whatever bytes arrived, in any split.
#[derive(Debug)]
pub struct BodyDecoder {
    state: DecoderState,
}

#[derive(Debug)]
enum DecoderState {
    Length(u64),
    Chunked(ChunkedState),
    Done,
}

/// Longest chunk-size we accept, in hex digits (16 = u64::MAX).
const MAX_SIZE_DIGITS_VALUE: u64 = u64::MAX >> 4;

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> BodyDecoder {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => DecoderState::Done,
            BodyKind::Length(n) => DecoderState::Length(n),
            BodyKind::Chunked => DecoderState::Chunked(ChunkedState::Size(0)),
        };
        BodyDecoder { state }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, DecoderState::Done)
    }

    /// Consumes the prefix of `input` that belongs to the body, appending the
    /// decoded body bytes to `sink` if there is one. Returns how many bytes of
    /// `input` were consumed; check [`BodyDecoder::is_done`] afterwards.
    pub fn feed(&mut self, input: &[u8], mut sink: Option<&mut Vec<u8>>) -> Result<usize, FramingError> {
        let mut pos = 0;
        while pos < input.len() {
            match &mut self.state {
                DecoderState::Done => break,
                DecoderState::Length(remaining) => {
                    let take = (*remaining).min((input.len() - pos) as u64) as usize;
                    if let Some(s) = sink.as_deref_mut() {
                        s.extend_from_slice(&input[pos..pos + take]);
                    }
                    pos += take;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = DecoderState::Done;
                    }
                }
                DecoderState::Chunked(ChunkedState::Data(remaining)) => {
                    let take = (*remaining).min((input.len() - pos) as u64) as usize;
                    if let Some(s) = sink.as_deref_mut() {
                        s.extend_from_slice(&input[pos..pos + take]);
                    }
                    pos += take;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = DecoderState::Chunked(ChunkedState::DataCr);
                    }
                }
                DecoderState::Chunked(state) => {
                    let byte = input[pos];
                    pos += 1;
                    match step(*state, byte)? {
                        Some(next) => *state = next,
                        None => self.state = DecoderState::Done,
                    }
                }
            }
        }
        Ok(pos)
    }
}

/// One byte of chunked framing outside `chunk-data`. `None` means the body
/// is complete.
fn step(state: ChunkedState, byte: u8) -> Result<Option<ChunkedState>, FramingError> {
    use ChunkedState::*;
    let end_of_size_line = |size: u64| if size == 0 { TrailerStart } else { Data(size) };
    let next = match (state, byte) {
        (Size(n), b) if b.is_ascii_hexdigit() => {
            if n > MAX_SIZE_DIGITS_VALUE {
                return Err(FramingError("chunk size overflows u64"));
            }
            Size(n << 4 | u64::from((b as char).to_digit(16).unwrap_or(0)))
        }
        (Size(n), b';' | b' ' | b'\t') => Extension(n),
        (Size(n) | Extension(n), b'\r') => SizeLf(n),
        // Bare LF line endings are tolerated, as most servers do.
        (Size(n) | Extension(n) | SizeLf(n), b'\n') => end_of_size_line(n),
        (Size(_), _) => return Err(FramingError("invalid chunk size")),
        (Extension(n), _) => Extension(n),
        (SizeLf(_), _) => return Err(FramingError("expected LF after chunk size")),
        (DataCr, b'\r') => DataLf,
        (DataCr | DataLf, b'\n') => Size(0),
        (DataCr | DataLf, _) => return Err(FramingError("expected CRLF after chunk data")),
        (TrailerStart, b'\r') => EndLf,
        (TrailerStart | EndLf, b'\n') => return Ok(None),
        (TrailerLine, b'\n') => TrailerStart,
        (TrailerStart | TrailerLine, _) => TrailerLine,
        (EndLf, _) => return Err(FramingError("expected LF after trailer section")),
        (Data(_), _) => unreachable!("chunk data is consumed in bulk by feed"),
    };
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` split at `at`, returns (decoded body, bytes consumed).
    fn decode_split(kind: BodyKind, wire: &[u8], at: usize) -> (Vec<u8>, usize, bool) {
        let mut d = BodyDecoder::new(kind);
        let mut body = Vec::new();
        let first = d.feed(&wire[..at], Some(&mut body)).unwrap();
        let mut used = first;
        if first == at {
            used += d.feed(&wire[at..], Some(&mut body)).unwrap();
        }
        (body, used, d.is_done())
    }

    #[test]
    fn chunked_with_extension_and_trailer_at_every_split() {
        let wire = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let body_len = wire.len() - b"GET / HTTP/1.1\r\n".len();
        for at in 0..=wire.len() {
            let (body, used, done) = decode_split(BodyKind::Chunked, wire, at);
            assert_eq!(
                (body.as_slice(), used, done),
                (&b"hello world"[..], body_len, true),
                "split at {at}"
            );
        }
    }

    #[test]
    fn chunked_bare_lf_line_endings() {
        let (body, _, done) = decode_split(BodyKind::Chunked, b"3\nabc\n0\n\n", 0);
        assert_eq!((body.as_slice(), done), (&b"abc"[..], true));
    }

    #[test]
    fn content_length_stops_at_boundary_at_every_split() {
        let wire = b"abcdefNEXT";
        for at in 0..=wire.len() {
            let (body, used, done) = decode_split(BodyKind::Length(6), wire, at);
            assert_eq!(
                (body.as_slice(), used, done),
                (&b"abcdef"[..], 6, true),
                "split at {at}"
            );
        }
    }

    #[test]
    fn empty_body_is_done_immediately() {
        let mut d = BodyDecoder::new(BodyKind::Empty);
        assert!(d.is_done());
        assert_eq!(d.feed(b"GET", None), Ok(0));
    }

    #[test]
    fn chunk_size_overflow_is_an_error() {
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        assert!(d.feed(b"fffffffffffffffff\r\n", None).is_err());
    }

    #[test]
    fn garbage_size_is_an_error() {
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        assert!(d.feed(b"zz\r\n", None).is_err());
    }
}
