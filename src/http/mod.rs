//! The HTTP/1.1 codec: pure functions over byte buffers, no IO.
//!
//! The proxy keeps the bytes it read and works with offsets ([`Span`]) into
//! them; nothing here allocates per header. Reuse one [`HeadScratch`] per
//! connection and one output `Vec<u8>` per direction.
//!
//! # Files
//!
//! - `head.rs`: shared types — [`Span`], [`HeaderSpan`], [`Version`],
//!   [`HeadLimits`], [`HeadScratch`], [`HeadError`] — and the httparse call.
//! - `fields.rs` (private): list values, Content-Length and
//!   Transfer-Encoding rules, Connection options, the hop-by-hop set.
//! - `request.rs`: [`parse_request_head`] applies RFC 9112's request rules
//!   (framing, Host, target form) and gives a [`RequestHead`].
//! - `rewrite.rs`: [`write_upstream_head`] writes the head sent upstream.
//! - `response.rs`: [`parse_response_head`] reads the upstream's head (RFC
//!   9112 §6.3 body length) and [`write_downstream_head`] writes the head
//!   sent to the client.
//! - `chunked.rs`: [`ChunkedTracker`] finds the end of a chunked body that
//!   is relayed verbatim.
//! - `body.rs`: [`BodyFramer`], the one body-framing state machine for
//!   request and response bodies (length, chunked, until close), with
//!   in-place de-chunking for HTTP/1.0 clients.
//!
//! # Flow of one request
//!
//! 1. Read into the client buffer; call [`parse_request_head`] until it
//!    returns `Some` (or an error: answer `err.status()` and close).
//! 2. Route on `head.host` and `head.path`; build `path_and_query`.
//! 3. [`write_upstream_head`] into the upstream buffer; send it, then the body:
//!    a [`BodyFramer`] made from `head.framing` and fed the body bytes says
//!    where it ends. Bytes after the body are the next pipelined request.
//! 4. Read the upstream's head with [`parse_response_head`]. An interim
//!    response ([`ResponseHead::is_interim`]) is forwarded and step 4
//!    repeated.
//! 5. [`write_downstream_head`], then relay the body, again through a
//!    [`BodyFramer`] (made from the response's `framing`).
//!    Return the upstream connection to the pool only if `keep_alive`;
//!    keep the client connection only if
//!    [`ResponseHead::downstream_keep_alive`] says so.
//!
//! ```
//! use ringway::http::*;
//!
//! let buf = b"GET /api/users?id=7 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n";
//! let mut scratch = HeadScratch::new();
//! let head = parse_request_head(buf, &HeadLimits::default(), &mut scratch)
//!     .unwrap()
//!     .expect("complete head");
//! assert_eq!(head.path.slice(buf), b"/api/users");
//! assert_eq!(head.framing, BodyFraming::None);
//!
//! let mut out = Vec::new();
//! let info = ForwardInfo {
//!     client_ip: b"203.0.113.7",
//!     proto: b"http",
//!     request_id: b"0001",
//!     keep_client_host: false,
//!     drop_expect: false,
//!     replace_request_id: false,
//!     client_cert: None,
//!     drop_credential: None,
//!     drop_signature_fields: false,
//!     upgrade: None,
//! };
//! write_upstream_head(&mut out, buf, &head, scratch.headers(), b"/users?id=7", b"10.0.0.2:8080", &info);
//! assert!(out.starts_with(b"GET /users?id=7 HTTP/1.1\r\nhost: 10.0.0.2:8080\r\n"));
//! ```

mod body;
mod chunked;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod request;
mod response;
mod rewrite;

pub use body::BodyFramer;
pub use chunked::{
    ChunkError, ChunkedTracker, Progress, MAX_CHUNK_LINE, MAX_CHUNK_SIZE, MAX_TRAILER_SECTION,
};
pub use fields::itoa;
pub use head::{find_header, HeadError, HeadLimits, HeadScratch, HeaderSpan, Span, Version};
pub use request::{parse_request_head, BodyFraming, RequestHead, TargetForm};
pub use response::{
    parse_response_head, write_downstream_head, write_downstream_head_with, DownstreamHead, RespFraming,
    ResponseHead,
};
pub use rewrite::{
    client_request_id, is_usable_request_id, write_upstream_head, ForwardInfo, MAX_REQUEST_ID,
};

#[cfg(test)]
pub(crate) mod test_util {
    /// A tiny xorshift64 PRNG for fuzz-ish tests, so they need no crate and
    /// are reproducible from their seed.
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            XorShift(seed.max(1))
        }

        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// Uniform-ish in `0..n`; 0 when `n` is 0.
        pub fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }

        /// A byte, half the time one that matters to HTTP framing.
        pub fn byte_biased(&mut self) -> u8 {
            const SPECIAL: &[u8] = b"\r\n :;,\t0123456789aAfF/?#HTP.-\x00\x7f\xff";
            if self.next() & 1 == 0 {
                SPECIAL[self.below(SPECIAL.len())]
            } else {
                self.next() as u8
            }
        }

        /// Applies 1 to 4 random edits: replace, insert, delete, truncate,
        /// or duplicate a range.
        pub fn mutate(&mut self, buf: &mut Vec<u8>) {
            for _ in 0..1 + self.below(4) {
                let at = self.below(buf.len() + 1);
                match self.below(5) {
                    0 if at < buf.len() => buf[at] = self.byte_biased(),
                    1 => {
                        let b = self.byte_biased();
                        buf.insert(at, b);
                    }
                    2 if at < buf.len() => {
                        buf.remove(at);
                    }
                    3 => buf.truncate(at),
                    _ => {
                        let end = (at + self.below(16)).min(buf.len());
                        let copy = buf[at..end].to_vec();
                        let to = self.below(buf.len() + 1);
                        buf.splice(to..to, copy);
                    }
                }
            }
        }
    }
}
