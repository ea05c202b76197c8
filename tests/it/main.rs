//! Integration tests: one binary (one link on 2 cores), real HTTP against the built-in fakes, real SQLite files.

mod api;
mod auth;
mod backfill;
mod cli;
mod crash;
mod daemon;
mod drain;
mod forward;
mod hostile;
mod housekeeping;
mod listeners;
mod metrics;
mod model;
mod operability;
mod privacy;
mod push;
mod push_auth;
mod push_crash;
mod push_tls;
mod recovery;
mod replies;
mod replies_ops;
mod stall;
mod storage;
mod support;
mod systemd;
