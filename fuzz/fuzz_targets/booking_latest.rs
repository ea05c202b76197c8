#![no_main]
// GET /messaging/messages/latest answers: never panic; a parse is either usable or a clear error.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_latest_answer(data));
