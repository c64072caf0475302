#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzz::cookies_and_query(data));
