#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway::traffic::redis::resp::fuzz_check(data));
