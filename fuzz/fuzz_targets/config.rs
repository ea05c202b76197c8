#![no_main]
// The TOML configuration (secret files and environment variables are not consulted).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_config(data));
