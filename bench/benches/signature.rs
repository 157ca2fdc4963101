//! The cost of access authorization and backend signing on the request path.
//!
//! - `signature/verify_get_5_headers`: a typical signed GET (five signed headers,
//!   a three-parameter query, no body) verified as the gateway does it: parse the
//!   `Authorization`, canonicalize, hash, HMAC, compare — with the shard's cached
//!   signing key. The per-request cost of `auth = "signature"`.
//! - `signature/derive_key`: the four HMACs of the signing-key chain, paid once
//!   per key pair and day per shard (the cache), shown for scale.
//! - `signature/nonce_admit`: recording a fresh nonce in the node's store (the
//!   cross-core part), with the table under 10% full.
//! - `signature/backend_sign_head`: signing an upstream head (`backend_key`).
//! - `hash/sha256_1mib`, `hash/hmac_sha256_1mib`: a signed body's hash and an HMAC
//!   over 1 MiB, in bytes a second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringway::access::backend::{sign_head, SigningKey};
use ringway::access::jdcloud::{self, Scratch};
use ringway::access::nonce::{Admit, NonceStore};
use ringway_bench::signed;
use std::hint::black_box;

fn signature(c: &mut Criterion) {
    let value = signed::authorization();
    let auth = jdcloud::parse_authorization(value.as_bytes()).unwrap();
    let key = jdcloud::signing_key(signed::SECRET, auth.date, auth.region, auth.service);
    let mut scratch = Scratch::default();
    assert!(
        signed::verify(value.as_bytes(), &key, &mut scratch),
        "the bench request must verify"
    );
    let mut g = c.benchmark_group("signature");
    g.bench_function("verify_get_5_headers", |b| {
        b.iter(|| black_box(signed::verify(black_box(value.as_bytes()), &key, &mut scratch)))
    });
    g.bench_function("derive_key", |b| {
        b.iter(|| {
            black_box(jdcloud::signing_key(
                signed::SECRET,
                auth.date,
                auth.region,
                auth.service,
            ))
        })
    });
    let store = NonceStore::new(1 << 22, signed::NOW);
    store.allocate();
    let mut n = 0u64;
    g.bench_function("nonce_admit", |b| {
        b.iter(|| {
            n += 1;
            // The clock moves a second every 1,000 nonces, so entries expire and
            // the table stays under 10% full (about 300,000 of 4 M slots live).
            let nonce = n.to_le_bytes();
            let now = signed::NOW + (n / 1000) as i64;
            let admitted = store.admit(b"AKIDEXAMPLE01", &nonce, now + 300, now);
            assert_eq!(admitted, Admit::Fresh);
        })
    });
    let headers = vec![
        "content-type".to_string(),
        "content-length".to_string(),
        "x-request-id".to_string(),
    ];
    let bkey = SigningKey {
        id: "gw-2026",
        secret: b"backend-secret",
        headers: &headers,
    };
    let head = b"GET /v1/instances?pageNumber=2 HTTP/1.1\r\nhost: 10.0.0.7:8080\r\ncontent-type: application/json\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: https\r\nx-request-id: 01HZX3J5Q8K2M4N6P8R0T2V4W6\r\n\r\n";
    let (mut out, mut s) = (Vec::with_capacity(1024), Vec::with_capacity(1024));
    g.bench_function("backend_sign_head", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(head);
            black_box(sign_head(&mut out, &bkey, signed::NOW, [7; 16], None, &mut s))
        })
    });
    g.finish();

    let body = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("sha256_1mib", |b| {
        b.iter(|| black_box(ring::digest::digest(&ring::digest::SHA256, black_box(&body))))
    });
    let hk = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
    g.bench_function("hmac_sha256_1mib", |b| {
        b.iter(|| black_box(ring::hmac::sign(&hk, black_box(&body))))
    });
    g.finish();
}

criterion_group!(benches, signature);
criterion_main!(benches);
