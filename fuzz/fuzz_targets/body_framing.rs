#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway::http::fuzzing::body_framing(data));
