#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_router::normalize::fuzz_check(data));
