//! A paced load for the rate-limit tests: keep-alive connections on loopback, each
//! sending at its share of an offered rate for a bounded time, counting statuses and
//! the shards that answered (the middle part of our `x-request-id`).

#![allow(dead_code)] // each test file uses a part

use crate::common::Client;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// What a load saw.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Shards that answered, by their id in `x-request-id`.
    pub shards: BTreeMap<String, u64>,
    /// Responses that failed to come (connection errors).
    pub failed: u64,
}

impl Tally {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        self.failed += o.failed;
        for (k, v) in &o.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &o.shards {
            *self.shards.entry(k.clone()).or_default() += v;
        }
    }
}

/// A connection from `source` (any loopback address) to `addr`.
pub fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> Client {
    let Some(ip) = source else {
        return Client::connect(addr);
    };
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::new(ip, 0).into())
        .expect("bind the source address");
    s.connect_timeout(&addr.into(), Duration::from_secs(2))
        .expect("connect");
    let stream: TcpStream = s.into();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.set_nodelay(true).unwrap();
    Client {
        wire: crate::common::Wire::new(stream),
    }
}

/// Offers `rate` requests a second for `span` over `conns` connections from
/// `source`, each request `request` (a whole HTTP/1.1 request). Returns the tally.
///
/// Each connection's requests are a Poisson process (exponential gaps, a seeded
/// generator per connection): clients are not clocks. Two perfectly periodic loads
/// against one first-come-first-served budget split it by their fixed phase, not
/// fairly — true of any exact limiter, and not what traffic looks like.
pub fn offer(
    addr: SocketAddr,
    source: Option<IpAddr>,
    conns: usize,
    rate: u64,
    span: Duration,
    request: &[u8],
) -> Tally {
    let start = Instant::now() + Duration::from_millis(50);
    let per_conn = Duration::from_secs_f64(conns as f64 / rate as f64);
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let request = request.to_vec();
            thread::spawn(move || {
                let mut t = Tally::default();
                let mut client = connect_from(addr, source);
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((c as u64 + 1) << 32) ^ u64::from(source.is_some());
                let mut gap = move || {
                    // xorshift64*, then an exponential gap of mean `per_conn`.
                    rng ^= rng >> 12;
                    rng ^= rng << 25;
                    rng ^= rng >> 27;
                    let u = (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
                    per_conn.mul_f64(-(1.0 - u).ln())
                };
                let mut next = start + gap();
                while next < start + span {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    next += gap();
                    client.send(&request);
                    t.sent += 1;
                    match client.try_response(false) {
                        Ok(r) => {
                            *t.statuses.entry(r.status).or_default() += 1;
                            if let Some(id) = r.header("x-request-id") {
                                let shard = id.split('-').nth(1).unwrap_or("?").to_string();
                                *t.shards.entry(shard).or_default() += 1;
                            }
                            if r.closes() {
                                client = connect_from(addr, source);
                            }
                        }
                        Err(_) => {
                            t.failed += 1;
                            client = connect_from(addr, source);
                        }
                    }
                }
                t
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        total.add(&h.join().expect("load thread"));
    }
    total
}

/// `GET path` with `extra` header lines (each ending in CRLF).
pub fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: it.test\r\n{extra}\r\n").into_bytes()
}

/// Asserts `got` is within `pct` percent of `want`.
pub fn assert_near(what: &str, got: u64, want: u64, pct: u64, tally: &Tally) {
    assert!(
        got.abs_diff(want) * 100 <= want * pct,
        "{what}: {got} admitted, want {want} ± {pct}% ({tally:?})"
    );
}
