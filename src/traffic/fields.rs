//! The `RateLimit-Policy` and `RateLimit` response fields of
//! draft-ietf-httpapi-ratelimit-headers (the working group's draft of September
//! 2025): Structured Field lists of a String (the policy's name) with parameters.
//!
//! ```text
//! RateLimit-Policy: "burst";q=100;w=60,"daily";q=1000;w=86400
//! RateLimit: "daily";r=0;t=87
//! ```
//!
//! `q` is the limit's rate and `w` its unit in seconds; a burst is the vendor
//! parameter `ringway-burst` (the draft asks for a prefix on others). `r` is how
//! many requests could come at once now, `t` the seconds until the next one may
//! (rounded up, so a client waiting `t` gets through). Without a `t`, quota is
//! available now.

use super::gcra::Nanos;

/// One limit that applied to a request, as the fields say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied<'a> {
    pub name: &'a str,
    pub quota: u64,
    pub window_seconds: u64,
    pub burst: u64,
    pub remaining: u64,
    /// Nanoseconds until another request may come (0: now).
    pub reset: Nanos,
}

/// Seconds until `at`, rounded up: what `Retry-After` and `t` say.
pub fn seconds_until(at: Nanos, now: Nanos) -> u64 {
    at.saturating_sub(now).div_ceil(1_000_000_000)
}

/// Appends the value of `RateLimit-Policy` for `applied`. Names are validated
/// (`[A-Za-z0-9-_./:]`), and escaped anyway as an sf-string requires.
pub fn policy_value(out: &mut Vec<u8>, applied: &[Applied<'_>]) {
    let mut num = [0u8; 20];
    for (i, a) in applied.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, a.name);
        out.extend_from_slice(b";q=");
        out.extend_from_slice(crate::http::itoa(a.quota, &mut num));
        out.extend_from_slice(b";w=");
        out.extend_from_slice(crate::http::itoa(a.window_seconds, &mut num));
        if a.burst > 0 {
            out.extend_from_slice(b";ringway-burst=");
            out.extend_from_slice(crate::http::itoa(a.burst, &mut num));
        }
    }
}

/// Appends the value of `RateLimit` for `applied`: `t` when nothing remains or
/// a reset is known.
pub fn limit_value(out: &mut Vec<u8>, applied: &[Applied<'_>]) {
    let mut num = [0u8; 20];
    for (i, a) in applied.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, a.name);
        out.extend_from_slice(b";r=");
        out.extend_from_slice(crate::http::itoa(a.remaining, &mut num));
        if a.remaining == 0 || a.reset > 0 {
            out.extend_from_slice(b";t=");
            out.extend_from_slice(crate::http::itoa(seconds_until(a.reset, 0), &mut num));
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(applied: &[Applied<'_>]) -> String {
        let (mut p, mut l) = (Vec::new(), Vec::new());
        policy_value(&mut p, applied);
        limit_value(&mut l, applied);
        format!(
            "ratelimit-policy: {}\r\nratelimit: {}\r\n",
            String::from_utf8(p).unwrap(),
            String::from_utf8(l).unwrap()
        )
    }

    #[test]
    fn the_drafts_examples() {
        // §3 and §4 of the draft: one policy, and two.
        let one = Applied {
            name: "default",
            quota: 100,
            window_seconds: 10,
            burst: 0,
            remaining: 50,
            reset: 30_000_000_000,
        };
        assert_eq!(
            text(std::slice::from_ref(&one)),
            "ratelimit-policy: \"default\";q=100;w=10\r\nratelimit: \"default\";r=50;t=30\r\n"
        );
        let two = [
            Applied {
                name: "burst",
                quota: 100,
                window_seconds: 60,
                burst: 0,
                remaining: 99,
                reset: 0,
            },
            Applied {
                name: "daily",
                quota: 1000,
                window_seconds: 86400,
                burst: 0,
                remaining: 0,
                reset: 86_400_000_000_000 - 1,
            },
        ];
        assert_eq!(
            text(&two),
            "ratelimit-policy: \"burst\";q=100;w=60,\"daily\";q=1000;w=86400\r\n\
             ratelimit: \"burst\";r=99,\"daily\";r=0;t=86400\r\n"
        );
    }

    #[test]
    fn burst_is_a_vendor_parameter_and_reset_rounds_up() {
        let a = Applied {
            name: "stores-total",
            quota: 100,
            window_seconds: 1,
            burst: 20,
            remaining: 0,
            reset: 1,
        };
        assert_eq!(
            text(&[a]),
            "ratelimit-policy: \"stores-total\";q=100;w=1;ringway-burst=20\r\nratelimit: \"stores-total\";r=0;t=1\r\n"
        );
        assert_eq!(seconds_until(5, 5), 0);
        assert_eq!(seconds_until(1_000_000_001, 0), 2);
    }
}
