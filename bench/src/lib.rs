//! Shared inputs and units of work of ringway's benches and callgrind harnesses,
//! so that `benches/codec.rs` and `examples/codec_heads.rs` measure the same thing.

pub mod limits;

use ringway::http::{parse_request_head, write_upstream_head, ForwardInfo, HeadLimits, HeadScratch};

/// The codec's limits in the benches.
pub const LIMITS: HeadLimits = HeadLimits {
    max_header_bytes: 16 * 1024,
    max_headers: 100,
};

/// What the proxy knows of the client, as the benches pretend.
pub const INFO: ForwardInfo<'static> = ForwardInfo {
    client_ip: b"203.0.113.7",
    proto: b"http",
    request_id: b"01HZX3J5Q8K2M4N6P8R0T2V4W6",
    keep_client_host: false,
    drop_expect: false,
    replace_request_id: false,
    client_cert: None,
    drop_credential: None,
    drop_signature_fields: false,
    upgrade: None,
};

/// One unit of codec work on the request path: parse `head`, write the upstream
/// head into `out` (cleared first). Returns the bytes written; 0 when the head does
/// not parse.
#[inline]
pub fn codec_pass(head: &[u8], scratch: &mut HeadScratch, out: &mut Vec<u8>) -> usize {
    let Ok(Some(req)) = parse_request_head(head, &LIMITS, scratch) else {
        return 0;
    };
    out.clear();
    let pq = req.target.slice(head);
    write_upstream_head(out, head, &req, scratch.headers(), pq, b"10.0.0.2:8080", &INFO);
    out.len()
}

/// Request heads for the codec: curl (3 fields), a browser (12 fields), and 64
/// fields with a Connection option naming one of them.
pub mod heads {
    pub const CURL: &[u8] = b"GET /api/v1/users/42?fields=name HTTP/1.1\r\n\
    Host: api.example.com\r\n\
    User-Agent: curl/8.5.0\r\n\
    Accept: */*\r\n\
    \r\n";

    pub const BROWSER: &[u8] = b"GET /app/dashboard?tab=overview&range=7d HTTP/1.1\r\n\
    Host: www.example.com\r\n\
    Connection: keep-alive\r\n\
    sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
    sec-ch-ua-mobile: ?0\r\n\
    sec-ch-ua-platform: \"Linux\"\r\n\
    Upgrade-Insecure-Requests: 1\r\n\
    User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
    Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
    Sec-Fetch-Site: same-origin\r\n\
    Accept-Encoding: gzip, deflate, br, zstd\r\n\
    Accept-Language: en-US,en;q=0.9\r\n\
    Cookie: session=3f2a9c1e7b6d4a5f8e0c; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n\
    \r\n";

    pub fn many_headers() -> Vec<u8> {
        let mut head = b"POST /ingest HTTP/1.1\r\nHost: ingest.example.com\r\nConnection: keep-alive, x-hop-31\r\nContent-Length: 0\r\n".to_vec();
        for i in 0..61 {
            head.extend_from_slice(format!("x-hop-{i}: value-{i}-abcdefghijklmnop\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }
}

/// A typical signed GET for the signature benches: five signed headers
/// (`content-type;host;x-jdcloud-date;x-jdcloud-nonce;x-tenant`), a query, no body.
pub mod signed {
    use ringway::access::jdcloud::{self, Authorization, Request, Scratch};

    pub const SECRET: &[u8] = b"s3cr3tEXAMPLE";
    /// 2026-12-01T12:00:00Z, the request's date.
    pub const NOW: i64 = 1_796_126_400;

    pub const HEADERS: [(&[u8], &[u8]); 7] = [
        (b"host", b"api.example.com"),
        (b"user-agent", b"JdcloudSdkGo/1.6.0 vm/0.7.4"),
        (b"content-type", b"application/json"),
        (b"x-jdcloud-date", b"20261201T120000Z"),
        (b"x-jdcloud-nonce", b"55f3919e-3a7d-4174-b117-f150ff25e274"),
        (b"x-tenant", b"store-7"),
        (b"accept", b"*/*"),
    ];

    pub fn request() -> Request<'static> {
        Request {
            method: b"GET",
            path: b"/v1/regions/cn-north-1/instances",
            query: Some(b"pageNumber=2&pageSize=10&filters.1.name=status"),
            headers: &HEADERS,
        }
    }

    /// The request's `Authorization` value, signed with [`SECRET`].
    pub fn authorization() -> String {
        let unsigned = format!(
            "JDCLOUD2-HMAC-SHA256 Credential=AKIDEXAMPLE01/20261201/cn-north-1/vm/jdcloud2_request, SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce;x-tenant, Signature={}",
            "0".repeat(64)
        );
        let auth = jdcloud::parse_authorization(unsigned.as_bytes()).expect("parses");
        let (mut canonical, mut to_sign) = (Vec::new(), Vec::new());
        jdcloud::canonical_request(
            &mut canonical,
            &request(),
            &auth,
            jdcloud::EMPTY_SHA256.as_bytes(),
        )
        .expect("canonical");
        jdcloud::string_to_sign(&mut to_sign, b"20261201T120000Z", &auth, &canonical);
        let key = jdcloud::signing_key(SECRET, auth.date, auth.region, auth.service);
        unsigned.replace(&"0".repeat(64), &jdcloud::sign(&key, &to_sign))
    }

    /// One verification as the gateway does it for a request: parse the
    /// `Authorization`, then check it with the shard's cached signing key.
    pub fn verify(value: &[u8], key: &ring::hmac::Key, scratch: &mut Scratch) -> bool {
        let Ok(auth): Result<Authorization<'_>, _> = jdcloud::parse_authorization(value) else {
            return false;
        };
        jdcloud::verify(&request(), &auth, jdcloud::Body::Empty, NOW, 300, key, scratch).is_ok()
    }
}
