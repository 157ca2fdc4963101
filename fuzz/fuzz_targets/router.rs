#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_router::reference::fuzz_differential(data));
