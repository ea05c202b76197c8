//! Booking.com Messaging API: authentication, the queue client and its wire types, the drain loop that empties
//! the queue into the store, and the backfill that recovers what the queue no longer holds.

pub mod auth;
pub mod backfill;
pub mod client;
pub mod drain;
pub(crate) mod envelope;
pub mod notification;
pub mod oauth;
pub mod push;
pub mod reply;
pub mod search_wire;
pub mod wire;

pub use client::{BookingClient, FetchError};
pub use wire::PROVIDER;
