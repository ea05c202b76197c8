//! Operator-facing tools that work beside a running daemon: short transactions on their own connection, then a
//! wake-up for the daemon so changes take effect at once.

pub mod dead_letters;
pub mod inbox;
pub mod replies;
pub mod status;
pub mod tools;
pub mod wake;
