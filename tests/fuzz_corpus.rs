//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the properties the
//! fuzz targets check, on stable Rust: a corpus input that once found a bug (or that
//! libFuzzer kept for its coverage) keeps failing CI until the bug is fixed again.
//! Fuzzing itself is `cargo +nightly fuzz run <target>` (see docs/testing.md).

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).expect("a corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target}: {} fails its property", path.display());
        n += 1;
    }
    assert!(n > 0, "{}: an empty corpus replays nothing", dir.display());
}

#[test]
fn request_head_corpus() {
    replay("request_head", ringway::http::fuzzing::request_head);
}

#[test]
fn response_head_corpus() {
    replay("response_head", ringway::http::fuzzing::response_head);
}

#[test]
fn body_framing_corpus() {
    replay("body_framing", ringway::http::fuzzing::body_framing);
}

#[test]
fn normalize_corpus() {
    replay("normalize", ringway_router::normalize::fuzz_check);
}

#[test]
fn render_corpus() {
    replay("render", ringway_router::fuzzing::render);
}

#[test]
fn resp_corpus() {
    replay("resp", ringway::traffic::redis::resp::fuzz_check);
}
