#![no_main]
// Channex webhook bodies (POST /channex/webhook).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_channex_webhook(data));
