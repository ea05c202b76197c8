//! Forwarding to the operator's PMS webhook: the durable outbox, Standard Webhooks signing, the payload
//! contract, one attempt and its decisions, the PMS's health, and the delivery worker.

pub mod attempt;
pub mod health;
pub mod outbox;
pub mod payload;
pub mod signing;
pub mod worker;

pub use outbox::{Outbox, OutboxSummary};
pub use worker::{Forwarder, StepReport};
