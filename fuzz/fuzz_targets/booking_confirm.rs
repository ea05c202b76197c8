#![no_main]
// PUT /messaging/messages answers.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_confirm_answer(data));
