#![no_main]
// Retry-After header values from OTAs and the PMS.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_retry_after(data));
