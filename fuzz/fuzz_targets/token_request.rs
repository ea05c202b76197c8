#![no_main]
// Token requests (POST /oauth/token): the Authorization header, a line break, the form body.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_token_request(data));
