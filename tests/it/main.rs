//! Integration tests: one binary (one link on 2 cores), real HTTP against the built-in fakes, real SQLite files.

mod auth;
mod cli;
mod daemon;
mod drain;
mod forward;
mod storage;
mod support;
