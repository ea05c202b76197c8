#![no_main]
// Booking.com notification bodies (POST /booking/notifications).
libfuzzer_sys::fuzz_target!(|data: &[u8]| ota_relay::hostile::check_booking_notification(data));
