//! The channels messages come from, each in its own module: its wire types, how its messages come in (pulled
//! or pushed, with the push's authentication), and, later, how replies go out.

pub mod booking;
pub mod channex;
pub mod fields;
pub mod reply;
pub mod staah;

/// Every path by which messages arrive: a closed set, dispatched with `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Booking.com's queue, drained (`GET /messaging/messages/latest`), and its search (`backfill`).
    BookingPull,
    /// Booking.com's Connectivity Notification Service pushing each message.
    BookingNotification,
    Staah,
    Channex,
}

impl Source {
    pub const PUSHES: [Source; 3] = [Source::BookingNotification, Source::Staah, Source::Channex];

    /// As stored (`messages.source`, `push_stats`, quarantine) and sent to the PMS (`data.source`).
    pub const fn name(self) -> &'static str {
        match self {
            Source::BookingPull => "booking_pull",
            Source::BookingNotification => "booking_notification",
            Source::Staah => "staah",
            Source::Channex => "channex",
        }
    }
}

/// The channel a thread belongs to, and that its replies go through, from its dedup namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadChannel {
    Booking,
    Staah,
    Channex,
}

impl ThreadChannel {
    pub fn of(provider: &str) -> Option<ThreadChannel> {
        if provider == booking::wire::PROVIDER {
            Some(ThreadChannel::Booking)
        } else if provider.starts_with("staah:") {
            Some(ThreadChannel::Staah)
        } else if provider == channex::NAMESPACE {
            Some(ThreadChannel::Channex)
        } else {
            None
        }
    }
}

/// The OTA a channel manager's channel id or provider name stands for, as `data.provider` names it.
pub fn ota_name(provider: &str) -> Option<&'static str> {
    match provider.to_ascii_lowercase().as_str() {
        "19" | "bookingcom" | "booking.com" | "booking" => Some("booking.com"),
        "244" | "airbnb" => Some("airbnb"),
        "9" | "expedia" => Some("expedia"),
        _ => None,
    }
}
