//! ota-relay: relays guest messages from online travel agencies into a PMS, without losing one.
//!
//! Modules follow the data's path: [`config`] → [`channel`] (each OTA or channel manager: wire types, the pull
//! or push that brings its messages in) → [`store`] (the single source of truth, one module per table, one write
//! path for messages) → [`forward`] (the outbox towards the PMS) → [`web`] (the listeners) → [`ops`] (operator
//! commands). [`daemon`] runs the workers; [`cli`] parses the command line; [`fake`] holds the built-in fake
//! peers that the demo and the tests share.

mod backoff;
pub mod channel;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod fake;
pub mod forward;
#[doc(hidden)]
pub mod hostile;
pub mod http_client;
pub mod jobs;
pub mod metrics;
pub mod ops;
pub mod reply;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod web;
