//! ota-relay: relays guest messages from online travel agencies into a PMS, without losing one.
//!
//! Modules follow the data's path: [`config`] → [`booking`] (the OTA client) and [`drain`] (the loop) →
//! [`store`] (the single source of truth) → [`app`] (the daemon) and [`cli`]. [`fake`] holds the built-in fake
//! peers that the demo and the tests share.

pub mod app;
pub mod backfill;
mod backoff;
pub mod booking;
pub mod cli;
pub mod config;
pub mod demo;
pub mod drain;
pub mod fake;
pub mod forward;
#[doc(hidden)]
pub mod hostile;
pub mod http;
pub mod jobs;
pub mod ops;
pub mod store;
pub mod telemetry;
