//! Properties the fuzz targets (`fuzz/`) check, one function per target, so that the
//! stored corpora also replay as ordinary tests (`tests/fuzz_corpus.rs`) on stable
//! Rust in CI. Each panics when a property fails, and only then.

use super::{
    parse_request_head, parse_response_head, write_downstream_head, write_upstream_head, BodyFramer,
    BodyFraming, ForwardInfo, HeadLimits, HeadScratch, RespFraming, TargetForm,
};

const INFO: ForwardInfo<'static> = ForwardInfo {
    client_ip: b"203.0.113.7",
    proto: b"http",
    request_id: b"fuzz-1",
    keep_client_host: false,
    drop_expect: true,
    replace_request_id: false,
    client_cert: None,
    drop_credential: None,
    drop_signature_fields: false,
    upgrade: None,
};

/// Request heads: parsing never panics; a parsed head lies within the input and
/// parses the same from its own bytes; no prefix of it parses as a head; the
/// upstream head written from it parses again.
pub fn request_head(data: &[u8]) {
    let limits = HeadLimits::default();
    let mut scratch = HeadScratch::new();
    let Ok(Some(head)) = parse_request_head(data, &limits, &mut scratch) else {
        return;
    };
    assert!(head.head_len <= data.len());
    for span in [head.method, head.target, head.path] {
        assert!(span.slice(data).len() <= head.head_len);
    }
    let mut again = HeadScratch::new();
    let same = parse_request_head(&data[..head.head_len], &limits, &mut again);
    assert_eq!(same, Ok(Some(head)), "a head parses the same from its own bytes");
    for cut in [head.head_len / 2, head.head_len.saturating_sub(1)] {
        if cut < head.head_len {
            let mut s = HeadScratch::new();
            assert!(!matches!(
                parse_request_head(&data[..cut], &limits, &mut s),
                Ok(Some(_))
            ));
        }
    }
    if head.form != TargetForm::Origin {
        return;
    }
    let mut out = Vec::new();
    write_upstream_head(
        &mut out,
        data,
        &head,
        scratch.headers(),
        head.target.slice(data),
        b"upstream:80",
        &INFO,
    );
    let mut s = HeadScratch::new();
    // The forwarding fields make the head longer: the limits are not the point here.
    let roomy = HeadLimits {
        max_header_bytes: 1 << 20,
        max_headers: 10_000,
    };
    assert!(
        matches!(parse_request_head(&out, &roomy, &mut s), Ok(Some(_))),
        "the upstream head parses: {:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Response heads: parsing never panics; the client head written from a parsed one
/// parses again, with the same status and framing.
pub fn response_head(data: &[u8]) {
    let (head_only, data) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => return,
    };
    let limits = HeadLimits::default();
    let mut scratch = HeadScratch::new();
    let Ok(Some(head)) = parse_response_head(data, head_only, &limits, &mut scratch) else {
        return;
    };
    assert!(head.head_len <= data.len());
    assert!((100..=599).contains(&head.status));
    let mut out = Vec::new();
    write_downstream_head(&mut out, data, &head, scratch.headers(), true, &[]);
    let mut s = HeadScratch::new();
    let roomy = HeadLimits {
        max_header_bytes: 1 << 20,
        max_headers: 10_000,
    };
    let again = parse_response_head(&out, head_only, &roomy, &mut s);
    let Ok(Some(again)) = again else {
        panic!(
            "the client head parses: {again:?} {:?}",
            String::from_utf8_lossy(&out)
        );
    };
    assert_eq!((again.status, again.framing), (head.status, head.framing));
}

/// Body framing: the first byte picks the framing (and a length), the rest is the
/// stream. Fed whole or split at a point the input picks, the answer is the same:
/// bytes consumed, done, the data, and the bytes kept without trailers.
pub fn body_framing(data: &[u8]) {
    let [kind, len, split, rest @ ..] = data else {
        return;
    };
    let make = || {
        let f = match kind % 4 {
            0 => BodyFramer::for_request(BodyFraming::Length(u64::from(*len))),
            1 => BodyFramer::for_request(BodyFraming::Chunked),
            2 => BodyFramer::for_response(RespFraming::Chunked),
            _ => BodyFramer::for_response(RespFraming::UntilClose),
        };
        if kind & 4 != 0 {
            f.without_trailers()
        } else {
            f
        }
    };
    let feed = |cuts: &[usize]| -> Option<(usize, bool, Vec<u8>, Vec<u8>)> {
        let (mut f, mut g) = (make(), make());
        let (mut consumed, mut done, mut data, mut kept) = (0, false, Vec::new(), Vec::new());
        let mut at = 0;
        for &end in cuts.iter().chain(std::iter::once(&rest.len())) {
            if done {
                break;
            }
            let piece = &rest[at..end];
            let p = f.feed_with(piece, |r| data.extend_from_slice(&piece[r])).ok()?;
            let q = g.feed_kept(piece, |r| kept.extend_from_slice(&piece[r])).ok()?;
            assert_eq!(p, q, "the data and the kept views agree on framing");
            consumed += p.consumed;
            done = p.done;
            at = end;
        }
        Some((consumed, done, data, kept))
    };
    let cut = usize::from(*split) % (rest.len() + 1);
    assert_eq!(feed(&[]), feed(&[cut]), "split at {cut}");
    // In-place decoding agrees with the data view.
    if let Some((consumed, _, data, _)) = feed(&[]) {
        let mut f = make();
        let mut buf = rest.to_vec();
        if let Ok((p, n)) = f.decode_in_place(&mut buf) {
            assert_eq!(p.consumed, consumed);
            assert_eq!(&buf[..n], &data[..]);
        }
    }
}
