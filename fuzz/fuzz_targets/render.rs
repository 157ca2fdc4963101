#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_router::fuzzing::render(data));
