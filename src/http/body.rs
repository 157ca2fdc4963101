//! One body-framing state machine for request and response bodies (RFC 9112
//! §6.3), fed whatever slices arrive.
//!
//! A [`BodyFramer`] is made from a request's [`BodyFraming`] or a response's
//! [`RespFraming`] and says, for each slice, how many bytes belong to the
//! body and whether the body has ended; bytes after the end are the next
//! message. Chunked bodies are tracked by [`ChunkedTracker`] and relayed
//! verbatim; [`BodyFramer::decode_in_place`] also de-chunks, for an HTTP/1.0
//! client that cannot read chunked framing.
//!
//! Trailers. Trailer field lines are parsed as strictly as header fields (a line
//! that is not `token ":" value` fails the body: 400 or a closed connection). A
//! framer made [`without_trailers`](BodyFramer::without_trailers) reports, through
//! [`feed_kept`](BodyFramer::feed_kept) and
//! [`keep_in_place`](BodyFramer::keep_in_place), the bytes to forward with the
//! trailer section cut out: the proxy never forwards request trailers (no backend
//! can ask for them, and they are where a second request hides after the last
//! chunk), and relays response trailers only to a client that sent `TE: trailers`
//! ([`with_filtered_trailers`](BodyFramer::with_filtered_trailers)), less the fields
//! a trailer must not carry (framing, routing, authentication…).
//!
//! ```
//! use ringway::http::{BodyFramer, BodyFraming};
//!
//! let mut body = BodyFramer::for_request(BodyFraming::Length(5));
//! let p = body.feed(b"hel").unwrap();
//! assert_eq!((p.consumed, p.done), (3, false));
//! let p = body.feed(b"loGET / HTTP/1.1\r\n").unwrap();
//! assert_eq!((p.consumed, p.done), (2, true));
//! ```

use super::chunked::{ChunkError, ChunkedTracker, Progress};
use super::request::BodyFraming;
use super::response::RespFraming;
use std::ops::Range;

/// Where a body is in its framing.
#[derive(Clone, Debug)]
enum State {
    /// "the message body length is zero (no message body is present)", or
    /// the body has been read to its end.
    Done,
    /// "its decimal value defines the expected message body length in
    /// octets": the octets still to come (never 0).
    Length { remaining: u64 },
    /// "the message body length is determined by reading and decoding the
    /// chunked data".
    Chunked(ChunkedTracker),
    /// "the message body length is determined by the number of octets
    /// received prior to the server closing the connection" (responses only).
    UntilClose,
}

/// Tracks one message body; see the module docs.
#[derive(Clone, Debug)]
pub struct BodyFramer {
    state: State,
    /// Ranges of the last slice, kept for [`Self::decode_in_place`] and
    /// [`Self::keep_in_place`] so that compacting allocates once per body, not
    /// once per read.
    data: Vec<Range<usize>>,
    /// Report trailer field lines as dropped (see the module docs).
    drop_trailers: bool,
    /// With `drop_trailers`: collect the trailer lines that may be relayed.
    filter: Option<TrailerFilter>,
}

/// The trailer lines of a body being relayed to a client that asked for them, less
/// the fields that must not be trailers.
#[derive(Clone, Debug, Default)]
struct TrailerFilter {
    /// The line being read (it may span slices).
    line: Vec<u8>,
    /// Lines to relay, each with its CRLF.
    kept: Vec<u8>,
}

/// Fields a trailer must not carry (RFC 9110 §6.5.1: framing, routing, request
/// modifiers, authentication, response control data, content metadata); a trailer
/// line naming one is dropped, the others are relayed.
const NOT_IN_TRAILERS: &[&[u8]] = &[
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"authorization",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"www-authenticate",
    b"set-cookie",
    b"cookie",
    b"cache-control",
    b"expires",
    b"age",
    b"date",
    b"location",
    b"retry-after",
    b"vary",
    b"content-type",
    b"content-encoding",
    b"content-range",
    b"max-forwards",
];

impl TrailerFilter {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.line.push(b);
            if b == b'\n' {
                let name = self.line.split(|&c| c == b':').next().unwrap_or_default();
                if !NOT_IN_TRAILERS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                    self.kept.extend_from_slice(&self.line);
                }
                self.line.clear();
            }
        }
    }
}

impl BodyFramer {
    /// The body of a request framed as `framing`.
    pub fn for_request(framing: BodyFraming) -> BodyFramer {
        BodyFramer::new(match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::Chunked(ChunkedTracker::new()),
        })
    }

    /// The body of a response framed as `framing`.
    pub fn for_response(framing: RespFraming) -> BodyFramer {
        BodyFramer::new(match framing {
            RespFraming::None | RespFraming::Length(0) => State::Done,
            RespFraming::Length(n) => State::Length { remaining: n },
            RespFraming::Chunked => State::Chunked(ChunkedTracker::new()),
            RespFraming::UntilClose => State::UntilClose,
        })
    }

    fn new(state: State) -> BodyFramer {
        BodyFramer {
            state,
            data: Vec::new(),
            drop_trailers: false,
            filter: None,
        }
    }

    /// The same framer for a client that asked for trailers: the trailer section is
    /// reported as not kept, like [`without_trailers`](Self::without_trailers), and
    /// its lines that may be relayed (not framing, routing or other fields a
    /// trailer must not carry) are collected for [`take_trailers`](Self::take_trailers).
    pub fn with_filtered_trailers(mut self) -> BodyFramer {
        self.drop_trailers = true;
        self.filter = Some(TrailerFilter::default());
        self
    }

    /// The trailer lines collected so far that may be relayed, each ending in CRLF;
    /// to be written before the body's final CRLF.
    pub fn take_trailers(&mut self) -> Vec<u8> {
        self.filter
            .as_mut()
            .map(|f| std::mem::take(&mut f.kept))
            .unwrap_or_default()
    }

    /// The same framer, reporting a chunked body's trailer field lines as not
    /// kept by [`feed_kept`](Self::feed_kept) and [`keep_in_place`](Self::keep_in_place).
    pub fn without_trailers(mut self) -> BodyFramer {
        self.drop_trailers = true;
        self
    }

    /// As [`feed`](Self::feed), and calls `on_kept` with each range of `input` to
    /// forward: every byte of the body, less the trailer field lines when made
    /// [`without_trailers`](Self::without_trailers).
    pub fn feed_kept(
        &mut self,
        input: &[u8],
        mut on_kept: impl FnMut(Range<usize>),
    ) -> Result<Progress, ChunkError> {
        let progress = match &mut self.state {
            State::Chunked(t) if self.drop_trailers => match &mut self.filter {
                Some(f) => t.feed_all(input, |_| {}, on_kept, |r| f.push(&input[r]))?,
                None => t.feed_parts(input, |_| {}, on_kept)?,
            },
            _ => {
                let p = self.feed(input)?;
                if p.consumed > 0 {
                    on_kept(0..p.consumed);
                }
                return Ok(p);
            }
        };
        if progress.done {
            self.state = State::Done;
        }
        Ok(progress)
    }

    /// Feeds `buf` and moves the bytes to forward (see [`feed_kept`](Self::feed_kept))
    /// to the front of it. Returns the progress and how many bytes now start `buf`.
    pub fn keep_in_place(&mut self, buf: &mut [u8]) -> Result<(Progress, usize), ChunkError> {
        if !(self.drop_trailers && matches!(self.state, State::Chunked(_))) {
            let p = self.feed(buf)?;
            return Ok((p, p.consumed));
        }
        let mut kept = std::mem::take(&mut self.data);
        kept.clear();
        let result = self.feed_kept(buf, |r| kept.push(r));
        let w = if result.is_ok() { compact(buf, &kept) } else { 0 };
        self.data = kept;
        result.map(|p| (p, w))
    }

    /// The body has ended (or there was none).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The bytes a `Content-Length` body has still to come (`None` for other
    /// framings): what can be moved without looking at it (splice).
    pub fn remaining_length(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// `n` bytes of a `Content-Length` body went by without being fed (spliced);
    /// at most [`Self::remaining_length`].
    pub fn skip_length(&mut self, n: u64) {
        if let State::Length { remaining } = self.state {
            let left = remaining.saturating_sub(n);
            self.state = if left == 0 {
                State::Done
            } else {
                State::Length { remaining: left }
            };
        }
    }

    /// The peer closing its side now ends the body cleanly: the body has ended
    /// already, or it is delimited by the close. Otherwise a close truncates it.
    pub fn ends_at_close(&self) -> bool {
        matches!(self.state, State::Done | State::UntilClose)
    }

    /// Feeds the next bytes of the stream. After an error the framing is lost:
    /// answer or abort, and close the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ChunkError> {
        self.feed_with(input, |_| {})
    }

    /// As [`feed`](Self::feed), and calls `on_data` with each range of `input`
    /// that is body data (for a chunked body: the chunk data, in order).
    pub fn feed_with(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<Progress, ChunkError> {
        let progress = match &mut self.state {
            State::Done => Progress {
                consumed: 0,
                done: true,
            },
            State::Length { remaining } => {
                // `min` of a u64 and a usize fits a usize.
                let k = (*remaining).min(input.len() as u64) as usize;
                *remaining -= k as u64;
                if k > 0 {
                    on_data(0..k);
                }
                Progress {
                    consumed: k,
                    done: *remaining == 0,
                }
            }
            State::Chunked(t) => t.feed_with(input, on_data)?,
            State::UntilClose => {
                if !input.is_empty() {
                    on_data(0..input.len());
                }
                Progress {
                    consumed: input.len(),
                    done: false,
                }
            }
        };
        if progress.done {
            self.state = State::Done;
        }
        Ok(progress)
    }

    /// Feeds `buf` and moves its body data to the front of it, dropping chunk
    /// framing. Returns the progress and how many data bytes now start `buf`.
    pub fn decode_in_place(&mut self, buf: &mut [u8]) -> Result<(Progress, usize), ChunkError> {
        if !matches!(self.state, State::Chunked(_)) {
            let p = self.feed(buf)?;
            return Ok((p, p.consumed));
        }
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        let result = self.feed_with(buf, |r| data.push(r));
        let w = if result.is_ok() { compact(buf, &data) } else { 0 };
        self.data = data;
        result.map(|p| (p, w))
    }
}

/// Moves `ranges` of `buf` to its front, in order; returns their total length.
/// Ranges are in order and each starts at or after the write position, so copying
/// front to back never overwrites bytes still to be moved.
fn compact(buf: &mut [u8], ranges: &[Range<usize>]) -> usize {
    let mut w = 0;
    for r in ranges {
        let len = r.len();
        buf.copy_within(r.clone(), w);
        w += len;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in the pieces cut at `cuts`; returns (consumed, done, data).
    fn feed_cut(
        mut f: BodyFramer,
        input: &[u8],
        cuts: &[usize],
    ) -> Result<(usize, bool, Vec<u8>), ChunkError> {
        let mut data = Vec::new();
        let mut consumed = 0;
        let mut at = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            let piece = &input[at..end];
            let p = f.feed_with(piece, |r| data.extend_from_slice(&piece[r]))?;
            consumed += p.consumed;
            if p.done {
                return Ok((consumed, true, data));
            }
            at = end;
        }
        Ok((consumed, f.is_done(), data))
    }

    /// Every split in two and (for short inputs) in three gives the same answer
    /// as the whole input fed at once.
    fn same_at_every_split(make: impl Fn() -> BodyFramer, input: &[u8]) -> (usize, bool, Vec<u8>) {
        let whole = feed_cut(make(), input, &[]).expect("whole input");
        for i in 0..=input.len() {
            assert_eq!(
                feed_cut(make(), input, &[i]).expect("split"),
                whole,
                "split at {i}"
            );
            if input.len() <= 64 {
                for j in i..=input.len() {
                    assert_eq!(
                        feed_cut(make(), input, &[i, j]).unwrap(),
                        whole,
                        "split at {i}, {j}"
                    );
                }
            }
        }
        whole
    }

    #[test]
    fn length_body_ends_at_its_length_at_every_split() {
        let input = b"hello worldGET / HTTP/1.1\r\n\r\n";
        let (consumed, done, data) =
            same_at_every_split(|| BodyFramer::for_request(BodyFraming::Length(11)), input);
        assert_eq!((consumed, done), (11, true));
        assert_eq!(data, b"hello world");
    }

    #[test]
    fn empty_bodies_are_done_before_any_byte() {
        for f in [
            BodyFramer::for_request(BodyFraming::None),
            BodyFramer::for_request(BodyFraming::Length(0)),
            BodyFramer::for_response(RespFraming::None),
            BodyFramer::for_response(RespFraming::Length(0)),
        ] {
            assert!(f.is_done() && f.ends_at_close());
            let mut f = f;
            let p = f.feed(b"GET / HTTP/1.1\r\n").unwrap();
            assert_eq!((p.consumed, p.done), (0, true));
        }
    }

    #[test]
    fn chunked_request_with_extensions_and_trailers_at_every_split() {
        let input = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let (consumed, done, data) =
            same_at_every_split(|| BodyFramer::for_request(BodyFraming::Chunked), input);
        assert_eq!((consumed, done), (input.len() - 4, true));
        assert_eq!(data, b"hello world");
    }

    #[test]
    fn chunked_response_is_the_same_machine() {
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        let req = same_at_every_split(|| BodyFramer::for_request(BodyFraming::Chunked), input);
        let resp = same_at_every_split(|| BodyFramer::for_response(RespFraming::Chunked), input);
        assert_eq!(req, resp);
    }

    #[test]
    fn until_close_takes_everything_and_ends_only_at_close() {
        let input = b"any bytes\r\n0\r\n\r\n at all";
        let (consumed, done, data) =
            same_at_every_split(|| BodyFramer::for_response(RespFraming::UntilClose), input);
        assert_eq!((consumed, done), (input.len(), false));
        assert_eq!(data, input);
        assert!(BodyFramer::for_response(RespFraming::UntilClose).ends_at_close());
        assert!(!BodyFramer::for_response(RespFraming::Length(3)).ends_at_close());
        assert!(!BodyFramer::for_response(RespFraming::Chunked).ends_at_close());
    }

    #[test]
    fn malformed_chunk_size_fails_at_every_split() {
        let input = b"5\r\nhello\r\nzz\r\n";
        for i in 0..=input.len() {
            assert!(
                feed_cut(BodyFramer::for_request(BodyFraming::Chunked), input, &[i]).is_err(),
                "split at {i}"
            );
        }
    }

    #[test]
    fn decode_in_place_dechunks_at_every_split() {
        let input = b"4\r\nWiki\r\n5;x=y\r\npedia\r\ne\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
        for i in 0..=input.len() {
            let mut f = BodyFramer::for_response(RespFraming::Chunked);
            let mut out = Vec::new();
            let mut done = false;
            for piece in [&input[..i], &input[i..]] {
                let mut buf = piece.to_vec();
                let (p, n) = f.decode_in_place(&mut buf).expect("valid body");
                out.extend_from_slice(&buf[..n]);
                done = p.done;
            }
            assert!(done, "split at {i}");
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.", "split at {i}");
        }
    }

    #[test]
    fn decode_in_place_leaves_length_bodies_untouched() {
        let mut f = BodyFramer::for_response(RespFraming::Length(4));
        let mut buf = b"abcdEXTRA".to_vec();
        let (p, n) = f.decode_in_place(&mut buf).unwrap();
        assert_eq!((p.consumed, p.done, n), (4, true, 4));
        assert_eq!(&buf[..4], b"abcd");
    }

    /// Feeds `input` split at `i` into a framer without trailers; the kept bytes.
    fn kept_split(input: &[u8], i: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut f = BodyFramer::for_request(BodyFraming::Chunked).without_trailers();
        let mut out = Vec::new();
        let mut done = false;
        for piece in [&input[..i], &input[i..]] {
            if done {
                break;
            }
            let p = f.feed_kept(piece, |r| out.extend_from_slice(&piece[r]))?;
            done = p.done;
        }
        Ok((out, done))
    }

    #[test]
    fn trailers_are_cut_out_at_every_split() {
        let input = b"3;ext=1\r\nabc\r\n0\r\nx-sum: 9\r\nx-other: a b\r\n\r\nNEXT";
        for i in 0..=input.len() {
            let (out, done) = kept_split(input, i).expect("valid");
            assert!(done, "split at {i}");
            assert_eq!(out, b"3;ext=1\r\nabc\r\n0\r\n\r\n", "split at {i}");
        }
        // Without trailers at all, nothing changes.
        let (out, _) = kept_split(b"1\r\nz\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!(out, b"1\r\nz\r\n0\r\n\r\n");
    }

    #[test]
    fn keep_in_place_matches_feed_kept() {
        let input = b"2\r\nhi\r\n0\r\nt: v\r\n\r\n";
        let mut f = BodyFramer::for_response(RespFraming::Chunked).without_trailers();
        let mut buf = input.to_vec();
        let (p, n) = f.keep_in_place(&mut buf).unwrap();
        assert!(p.done);
        assert_eq!(&buf[..n], b"2\r\nhi\r\n0\r\n\r\n");
        // A framer that keeps trailers forwards the body verbatim.
        let mut f = BodyFramer::for_response(RespFraming::Chunked);
        let mut buf = input.to_vec();
        let (_, n) = f.keep_in_place(&mut buf).unwrap();
        assert_eq!(&buf[..n], input);
    }

    /// Issue 9.3: what follows the last chunk must be field lines. A request line
    /// (a smuggled second request) or a line without a colon fails the body.
    #[test]
    fn issue9_trailer_lines_that_are_not_fields_fail_the_body() {
        for bad in [
            &b"0\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"0\r\nno-colon-line\r\n\r\n",
            b"0\r\nname : space-before-colon\r\n\r\n",
            b"0\r\n folded: line\r\n\r\n",
            b"0\r\n:empty-name\r\n\r\n",
            b"0\r\nx: ctl\x01\r\n\r\n",
        ] {
            for i in 0..=bad.len() {
                assert!(
                    kept_split(bad, i).is_err(),
                    "{:?} split at {i}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
        assert!(kept_split(b"0\r\nx-a: 1\r\nX-B:2\r\n\r\n", 3).is_ok());
    }

    /// Issue 9.3: trailers relayed to a client that asked for them lose the fields a
    /// trailer must not carry, at every split.
    #[test]
    fn issue9_filtered_trailers_drop_framing_and_routing_fields_at_every_split() {
        let input = b"2\r\nhi\r\n0\r\nx-digest: abc\r\nContent-Length: 5\r\nHost: evil\r\nx-b: 2\r\n\r\n";
        for i in 0..=input.len() {
            let mut f = BodyFramer::for_response(RespFraming::Chunked).with_filtered_trailers();
            let mut out = Vec::new();
            let mut done = false;
            for piece in [&input[..i], &input[i..]] {
                let p = f.feed_kept(piece, |r| out.extend_from_slice(&piece[r])).unwrap();
                done |= p.done;
            }
            assert!(done);
            assert_eq!(out, b"2\r\nhi\r\n0\r\n\r\n", "split at {i}");
            assert_eq!(f.take_trailers(), b"x-digest: abc\r\nx-b: 2\r\n", "split at {i}");
        }
    }
}
