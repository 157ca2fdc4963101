//! Access machinery that does no I/O: the JD Cloud request signature
//! ([`jdcloud`]), the backend signature ringway adds to upstream requests
//! ([`backend`]), and the node's replay window of nonces ([`nonce`]).
//!
//! The policy phase (`proxy/policy/auth.rs`) and the rewrite (`proxy/forward.rs`)
//! call these; the config (`config/access/`) holds the keys they use. This layer
//! imports nothing else of `src/` but the calendar arithmetic of [`crate::civil`].

pub mod backend;
pub mod jdcloud;
pub mod nonce;

/// Appends `bytes` as lowercase hex.
pub fn hex_lower(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// 64 hex digits (either case) as 32 bytes.
pub fn unhex32(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

/// Appends `raw` percent-decoded and re-encoded the RFC 3986 strict way: only
/// `A-Za-z0-9-._~` (and `/` when `keep_slash`) are left bare, every other byte is
/// `%XX` in uppercase hex. A `%` not followed by two hex digits is itself encoded.
/// `%2F` stays `%2F` (a decoded `/` is not bare), so paths keep their segments.
pub fn percent_canonical(out: &mut Vec<u8>, raw: &[u8], keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut i = 0;
    while i < raw.len() {
        let escaped = (raw[i] == b'%' && i + 2 < raw.len())
            .then(|| Some(hex_digit(raw[i + 1])? << 4 | hex_digit(raw[i + 2])?))
            .flatten();
        let (b, from_escape) = match escaped {
            Some(v) => {
                i += 3;
                (v, true)
            }
            None => {
                i += 1;
                (raw[i - 1], false)
            }
        };
        let bare =
            b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/' && !from_escape);
        if bare {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// A `tchar` of RFC 9110 §5.6.2 (header field names).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `YYYYMMDDTHHMMSSZ` of epoch seconds `secs`.
pub fn format_date(secs: i64) -> [u8; 16] {
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::civil::civil_from_days(secs.div_euclid(86_400));
    let mut out = *b"00000000T000000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for k in (0..width).rev() {
            out[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(4, 2, i64::from(m));
    put(6, 2, i64::from(d));
    put(9, 2, rem / 3600);
    put(11, 2, rem % 3600 / 60);
    put(13, 2, rem % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str, slash: bool) -> String {
        let mut out = Vec::new();
        percent_canonical(&mut out, raw.as_bytes(), slash);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn percent_canonical_is_rfc3986_strict() {
        assert_eq!(canon("/v1/resource:action", true), "/v1/resource%3Aaction");
        assert_eq!(canon("/a%2fb/%7e%41", true), "/a%2Fb/~A");
        assert_eq!(canon("a b+c", false), "a%20b%2Bc");
        assert_eq!(canon("100%", false), "100%25");
        assert_eq!(canon("%zz%4", false), "%25zz%254");
        assert_eq!(canon("/", false), "%2F");
        assert_eq!(canon("é", true), "%C3%A9");
    }

    #[test]
    fn hex_round_trips() {
        let mut h = Vec::new();
        hex_lower(&mut h, &[0xab; 32]);
        assert_eq!(unhex32(&h), Some([0xab; 32]));
        assert_eq!(unhex32(&h.to_ascii_uppercase()), Some([0xab; 32]));
        assert_eq!(unhex32(&h[1..]), None);
    }

    #[test]
    fn dates_round_trip() {
        for secs in [0, 951_782_400, 1_234_567_890, 1_796_126_400, 4_107_542_399] {
            let s = format_date(secs);
            assert_eq!(
                jdcloud::parse_date(&s),
                Some(secs),
                "{}",
                String::from_utf8_lossy(&s)
            );
        }
        assert_eq!(&format_date(1_234_567_890), b"20090213T233130Z");
    }
}
