#![no_main]
// STAAH message bodies (POST /staah/messages).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_staah_message(data));
