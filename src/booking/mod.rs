//! Booking.com Messaging API: authentication, the queue client and its wire types.

pub mod auth;
pub mod client;
pub mod search_wire;
pub mod wire;

pub use client::{BookingClient, FetchError};
pub use wire::PROVIDER;
