#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_app::fuzz::chat_json(data));
