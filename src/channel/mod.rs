//! The channels messages come from, each in its own module: its wire types, how its messages come in (pulled
//! or pushed), and, later, how replies go out.

pub mod booking;
