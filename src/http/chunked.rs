//! Chunked body framing (RFC 9112 §7.1), incremental.
//!
//! The proxy relays chunked bodies verbatim, so [`ChunkedTracker`] does not
//! decode: it is fed whatever slices arrive and says how many of those bytes
//! belong to the body and whether the body has ended (after the last chunk,
//! its trailer section and the final CRLF). Bytes after the end belong to
//! the next message. [`ChunkedTracker::feed_with`] also reports where the
//! chunk data lies, for the rare caller that must decode (tests, or
//! de-chunking for an HTTP/1.0 client).
//!
//! ```
//! use ringway::http::ChunkedTracker;
//!
//! let mut body = ChunkedTracker::new();
//! let p = body.feed(b"5\r\nhel").unwrap();
//! assert_eq!((p.consumed, p.done), (6, false));
//! let p = body.feed(b"lo\r\n0\r\n\r\nGET / HTTP/1.1\r\n").unwrap();
//! assert_eq!((p.consumed, p.done), (9, true));
//! ```

use std::fmt;
use std::ops::Range;

/// Longest chunk line (size and extensions, without the CRLF) accepted.
/// Extensions are unused in practice; hyper allows 16 KiB per body, we 4 KiB
/// per line, so a stream of tiny chunks with extensions is not throttled.
pub const MAX_CHUNK_LINE: u32 = 4 * 1024;

/// Largest trailer section accepted, in bytes including line endings.
pub const MAX_TRAILER_SECTION: u32 = 16 * 1024;

/// Largest chunk size accepted. Anything above 2^62 is an attack or a bug,
/// and staying far from `u64::MAX` means the arithmetic never overflows.
pub const MAX_CHUNK_SIZE: u64 = 1 << 62;

/// Where the tracker is in the chunked-body grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkedState {
    /// `chunk-size = 1*HEXDIG` — no digit read yet.
    SizeStart,
    /// `chunk-size = 1*HEXDIG` — at least one digit read.
    Size,
    /// The `BWS` before the first `";"` of `chunk-ext`: only whitespace, `;`
    /// or the CR may follow.
    SizeBws,
    /// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`
    /// — skipped up to the CR, only checked for control bytes.
    Extension,
    /// The LF of the `CRLF` ending `chunk-size [ chunk-ext ] CRLF`.
    SizeLf,
    /// `chunk-data = 1*OCTET ; a sequence of chunk-size octets`
    Data,
    /// The CR of the `CRLF` after `chunk-data`.
    DataCr,
    /// The LF of the `CRLF` after `chunk-data`.
    DataLf,
    /// `trailer-section = *( field-line CRLF )` — at the start of a line:
    /// either another field line or the final `CRLF` of the body.
    TrailerStart,
    /// `field-name = token` of a trailer `field-line`, up to its `":"`. As
    /// strict as a header field: no whitespace before the colon, only tchars
    /// — so a request line smuggled after the last chunk is refused.
    TrailerName,
    /// `OWS field-value OWS` of a trailer `field-line`, up to its CR.
    Trailer,
    /// The LF ending a trailer `field-line`.
    TrailerLf,
    /// The LF of the final `CRLF` of `chunked-body`.
    EndLf,
    /// The body is complete.
    Done,
}

/// What one [`ChunkedTracker::feed`] call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that belong to the body: all of it unless `done`.
    pub consumed: usize,
    /// The body ended within (or before) this input; `input[consumed..]`
    /// belongs to the next message.
    pub done: bool,
}

/// Tracks the framing of one chunked body; see the module docs.
#[derive(Clone, Debug)]
pub struct ChunkedTracker {
    state: ChunkedState,
    /// Chunk size being read, then data bytes left in the chunk.
    remaining: u64,
    /// Bytes of the current chunk line.
    line_len: u32,
    /// Bytes of the trailer section so far.
    trailer_len: u32,
}

/// Whether a byte belongs to the trailer section's field lines (which a caller
/// may drop) rather than to the chunk framing and data.
fn is_trailer_line(state: ChunkedState, b: u8) -> bool {
    use ChunkedState::*;
    match state {
        TrailerStart => b != b'\r',
        TrailerName | Trailer | TrailerLf => true,
        _ => false,
    }
}

impl Default for ChunkedTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedTracker {
    pub fn new() -> Self {
        ChunkedTracker {
            state: ChunkedState::SizeStart,
            remaining: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// The body has ended.
    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    /// Feeds the next bytes of the body. After an error the body framing is
    /// lost: answer or abort, and close the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ChunkError> {
        self.feed_with(input, |_| {})
    }

    /// As [`feed`](Self::feed), and calls `on_data` with each range of
    /// `input` that is chunk data (the decoded body, in order).
    pub fn feed_with(
        &mut self,
        input: &[u8],
        on_data: impl FnMut(Range<usize>),
    ) -> Result<Progress, ChunkError> {
        self.feed_parts(input, on_data, |_| {})
    }

    /// As [`feed_with`](Self::feed_with), and calls `on_kept` with each range
    /// of `input` that is *not* a trailer field line: forwarding exactly those
    /// ranges relays the body with its trailer section dropped (`0\r\n`, then
    /// the final `\r\n`), the chunks and their extensions untouched.
    pub fn feed_parts(
        &mut self,
        input: &[u8],
        on_data: impl FnMut(Range<usize>),
        on_kept: impl FnMut(Range<usize>),
    ) -> Result<Progress, ChunkError> {
        self.feed_all(input, on_data, on_kept, |_| {})
    }

    /// As [`feed_parts`](Self::feed_parts), and calls `on_trailer` with each range
    /// of `input` that *is* trailer field lines (exactly the bytes not kept).
    pub fn feed_all(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(Range<usize>),
        mut on_kept: impl FnMut(Range<usize>),
        mut on_trailer: impl FnMut(Range<usize>),
    ) -> Result<Progress, ChunkError> {
        let mut i = 0;
        // Starts of the runs of kept and of trailer bytes being collected.
        let mut kept: Option<usize> = None;
        let mut trailer: Option<usize> = None;
        while i < input.len() {
            match self.state {
                ChunkedState::Done => break,
                ChunkedState::Data => {
                    let left = input.len() - i;
                    // `remaining` > 0 in Data; the min fits usize.
                    let n = self.remaining.min(left as u64) as usize;
                    on_data(i..i + n);
                    kept.get_or_insert(i);
                    i += n;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = ChunkedState::DataCr;
                    }
                }
                state => {
                    if is_trailer_line(state, input[i]) {
                        if let Some(start) = kept.take() {
                            on_kept(start..i);
                        }
                        trailer.get_or_insert(i);
                    } else {
                        if let Some(start) = trailer.take() {
                            on_trailer(start..i);
                        }
                        kept.get_or_insert(i);
                    }
                    self.step(input[i])?;
                    i += 1;
                }
            }
        }
        if let Some(start) = kept {
            on_kept(start..i);
        }
        if let Some(start) = trailer {
            on_trailer(start..i);
        }
        Ok(Progress {
            consumed: i,
            done: self.is_done(),
        })
    }

    /// Advances by one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use ChunkedState::*;
        self.state = match self.state {
            SizeStart | Size => match hex_value(b) {
                Some(d) => {
                    self.count_line_byte()?;
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(u64::from(d)))
                        .filter(|&n| n <= MAX_CHUNK_SIZE)
                        .ok_or(ChunkError::new(ChunkErrorKind::SizeTooLarge))?;
                    Size
                }
                None if self.state == SizeStart => return Err(ChunkError::new(ChunkErrorKind::InvalidSize)),
                None => match b {
                    b';' => {
                        self.count_line_byte()?;
                        Extension
                    }
                    b' ' | b'\t' => {
                        self.count_line_byte()?;
                        SizeBws
                    }
                    b'\r' => SizeLf,
                    _ => return Err(ChunkError::new(ChunkErrorKind::InvalidSize)),
                },
            },
            SizeBws => match b {
                b' ' | b'\t' => {
                    self.count_line_byte()?;
                    SizeBws
                }
                b';' => {
                    self.count_line_byte()?;
                    Extension
                }
                b'\r' => SizeLf,
                _ => return Err(ChunkError::new(ChunkErrorKind::InvalidSize)),
            },
            Extension => match b {
                b'\r' => SizeLf,
                _ if is_forbidden_ctl(b) => return Err(ChunkError::new(ChunkErrorKind::InvalidExtension)),
                _ => {
                    self.count_line_byte()?;
                    Extension
                }
            },
            SizeLf => {
                expect_lf(b)?;
                self.line_len = 0;
                if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            // Handled in bulk by `feed_with`; unreachable with data left.
            Data => Data,
            DataCr => match b {
                b'\r' => DataLf,
                _ => return Err(ChunkError::new(ChunkErrorKind::MissingCrlf)),
            },
            DataLf => {
                expect_lf(b)?;
                SizeStart
            }
            TrailerStart => match b {
                b'\r' => EndLf,
                // A line starting with whitespace would be obs-fold; anything but
                // a token byte is not a field name.
                _ if is_tchar(b) => {
                    self.count_trailer_bytes(1)?;
                    TrailerName
                }
                _ => return Err(ChunkError::new(ChunkErrorKind::InvalidTrailer)),
            },
            TrailerName => match b {
                b':' => {
                    self.count_trailer_bytes(1)?;
                    Trailer
                }
                _ if is_tchar(b) => {
                    self.count_trailer_bytes(1)?;
                    TrailerName
                }
                _ => return Err(ChunkError::new(ChunkErrorKind::InvalidTrailer)),
            },
            Trailer => match b {
                b'\r' => TrailerLf,
                _ if is_forbidden_ctl(b) => return Err(ChunkError::new(ChunkErrorKind::InvalidTrailer)),
                _ => {
                    self.count_trailer_bytes(1)?;
                    Trailer
                }
            },
            TrailerLf => {
                expect_lf(b)?;
                self.count_trailer_bytes(2)?;
                TrailerStart
            }
            EndLf => {
                expect_lf(b)?;
                Done
            }
            Done => Done,
        };
        Ok(())
    }

    fn count_line_byte(&mut self) -> Result<(), ChunkError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE {
            return Err(ChunkError::new(ChunkErrorKind::LineTooLong));
        }
        Ok(())
    }

    fn count_trailer_bytes(&mut self, n: u32) -> Result<(), ChunkError> {
        self.trailer_len += n;
        if self.trailer_len > MAX_TRAILER_SECTION {
            return Err(ChunkError::new(ChunkErrorKind::TrailerTooLarge));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token (a field name).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Control bytes other than HTAB, including a bare LF and DEL.
fn is_forbidden_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Line endings are strict CRLF: a bare LF (allowed by RFC 9112 §2.2 as a
/// MAY) is refused, as the next hop might read it differently.
fn expect_lf(b: u8) -> Result<(), ChunkError> {
    if b == b'\n' {
        Ok(())
    } else {
        Err(ChunkError::new(ChunkErrorKind::MissingCrlf))
    }
}

/// Why a chunked body was refused. The body framing is lost either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkError {
    kind: ChunkErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkErrorKind {
    InvalidSize,
    SizeTooLarge,
    InvalidExtension,
    LineTooLong,
    MissingCrlf,
    InvalidTrailer,
    TrailerTooLarge,
}

impl ChunkError {
    fn new(kind: ChunkErrorKind) -> Self {
        ChunkError { kind }
    }

    /// Over one of the size limits ([`MAX_CHUNK_SIZE`], [`MAX_CHUNK_LINE`],
    /// [`MAX_TRAILER_SECTION`]) rather than malformed.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self.kind,
            ChunkErrorKind::SizeTooLarge | ChunkErrorKind::LineTooLong | ChunkErrorKind::TrailerTooLarge
        )
    }

    pub fn reason(&self) -> &'static str {
        match self.kind {
            ChunkErrorKind::InvalidSize => "invalid chunk size",
            ChunkErrorKind::SizeTooLarge => "chunk size too large",
            ChunkErrorKind::InvalidExtension => "invalid chunk extension",
            ChunkErrorKind::LineTooLong => "chunk line too long",
            ChunkErrorKind::MissingCrlf => "missing CRLF in chunked body",
            ChunkErrorKind::InvalidTrailer => "invalid trailer field",
            ChunkErrorKind::TrailerTooLarge => "trailer section too large",
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_util::XorShift;

    /// Feeds `body` whole; returns (consumed, done, decoded data).
    fn run(body: &[u8]) -> Result<(usize, bool, Vec<u8>), ChunkError> {
        let mut t = ChunkedTracker::new();
        let mut data = Vec::new();
        let p = t.feed_with(body, |r| data.extend_from_slice(&body[r]))?;
        Ok((p.consumed, p.done, data))
    }

    fn err(body: &[u8]) -> ChunkError {
        match run(body) {
            Err(e) => e,
            Ok(r) => panic!(
                "expected an error for {:?}, got {r:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    const BODY: &[u8] = b"5;name=value\r\nhello\r\nA \t; a=\"q\"\r\n0123456789\r\n000;last\r\nX-Trailer: yes\r\nX-Other: \tz\r\n\r\n";

    #[test]
    fn tracks_a_body_with_extensions_and_trailers() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let (consumed, done, data) = run(&input).unwrap();
        assert_eq!(consumed, BODY.len());
        assert!(done);
        assert_eq!(data, b"hello0123456789");
    }

    #[test]
    fn split_at_every_offset_gives_the_same_end() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"NEXT");
        for cut in 0..=input.len() {
            let mut t = ChunkedTracker::new();
            let mut data = Vec::new();
            let a = t
                .feed_with(&input[..cut], |r| data.extend_from_slice(&input[..cut][r]))
                .unwrap();
            let rest = &input[cut..];
            let b = t.feed_with(rest, |r| data.extend_from_slice(&rest[r])).unwrap();
            if cut <= BODY.len() {
                assert_eq!(
                    a,
                    Progress {
                        consumed: cut,
                        done: cut == BODY.len()
                    },
                    "cut {cut}"
                );
            }
            assert_eq!(a.consumed + b.consumed, BODY.len(), "cut {cut}");
            assert!(b.done);
            assert_eq!(data, b"hello0123456789");
        }
    }

    #[test]
    fn byte_at_a_time() {
        let mut t = ChunkedTracker::new();
        for (i, b) in BODY.iter().enumerate() {
            let p = t.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(
                p,
                Progress {
                    consumed: 1,
                    done: i + 1 == BODY.len()
                }
            );
        }
        assert_eq!(
            t.feed(b"x").unwrap(),
            Progress {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn empty_body_and_large_chunk() {
        assert_eq!(run(b"0\r\n\r\n").unwrap(), (5, true, vec![]));
        let mut t = ChunkedTracker::new();
        let p = t.feed(b"fFfF\r\n").unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 6,
                done: false
            }
        );
        let p = t.feed(&vec![b'x'; 0xffff]).unwrap();
        assert_eq!(p.consumed, 0xffff);
        assert_eq!(
            t.feed(b"\r\n0\r\n\r\n").unwrap(),
            Progress {
                consumed: 7,
                done: true
            }
        );
    }

    #[test]
    fn rejects_invalid_hex() {
        for body in [
            &b"g\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b" 5\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"5 x\r\n",
        ] {
            let e = err(body);
            assert!(!e.is_too_large(), "{body:?}: {e}");
        }
    }

    #[test]
    fn rejects_chunk_size_overflow() {
        assert!(err(b"10000000000000000\r\n").is_too_large());
        assert!(err(b"4000000000000001\r\n").is_too_large());
        assert!(err(b"ffffffffffffffffffffffff\r\n").is_too_large());
        // Exactly 2^62 is allowed, and leading zeros do not count.
        assert!(run(b"4000000000000000\r\n").is_ok());
        assert!(run(b"00000000000000000000000000001\r\nx\r\n0\r\n\r\n").unwrap().1);
    }

    #[test]
    fn rejects_missing_crlf_after_data() {
        err(b"3\r\nabcd\r\n0\r\n\r\n");
        err(b"3\r\nabc\n0\r\n\r\n");
        err(b"3\r\nabc\rx");
    }

    #[test]
    fn rejects_bare_lf() {
        err(b"3\nabc\r\n0\r\n\r\n");
        err(b"3\r\nabc\r\n0\n\r\n");
        err(b"0\r\n\n");
        err(b"0\r\nX: y\n\r\n");
        err(b"3;ext\nabc");
    }

    #[test]
    fn rejects_control_bytes_in_extensions() {
        err(b"3;a\x00b\r\nabc\r\n");
        err(b"3;a\x7f\r\nabc\r\n");
    }

    #[test]
    fn rejects_overlong_chunk_extensions() {
        let mut body = b"3;".to_vec();
        body.resize(MAX_CHUNK_LINE as usize + 1, b'a');
        body.extend_from_slice(b"\r\nabc\r\n");
        assert!(err(&body).is_too_large());
        // Exactly at the limit passes; the limit is per line.
        let mut body = Vec::new();
        for _ in 0..3 {
            let start = body.len();
            body.extend_from_slice(b"1;");
            body.resize(start + MAX_CHUNK_LINE as usize, b'a');
            body.extend_from_slice(b"\r\nx\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        assert!(run(&body).unwrap().1);
    }

    #[test]
    fn rejects_trailer_section_over_limit() {
        let mut body = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILER_SECTION / 100 + 1) {
            body.extend_from_slice(b"X-Pad: ");
            body.extend_from_slice(&[b'p'; 91]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        assert!(err(&body).is_too_large());
    }

    #[test]
    fn rejects_obs_fold_in_trailers() {
        err(b"0\r\nX: a\r\n b\r\n\r\n");
        err(b"0\r\nX: a\x01\r\n\r\n");
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = XorShift::new(7);
        let mut buf = Vec::new();
        for i in 0..20_000 {
            buf.clear();
            if i % 2 == 0 {
                buf.extend_from_slice(BODY);
                rng.mutate(&mut buf);
            } else {
                for _ in 0..rng.below(200) {
                    buf.push(rng.byte_biased());
                }
            }
            let mut t = ChunkedTracker::new();
            let cut = rng.below(buf.len() + 1);
            if let Ok(p) = t.feed(&buf[..cut]) {
                assert!(p.consumed <= cut);
                if !p.done {
                    if let Ok(p) = t.feed(&buf[cut..]) {
                        assert!(p.consumed <= buf.len() - cut);
                    }
                }
            }
        }
    }
}
