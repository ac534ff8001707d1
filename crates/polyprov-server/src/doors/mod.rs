//! The phone-facing doors: each turns its protocol's requests into the core's [`Request`]s and
//! the core's answers and refusals back into its protocol. No rule about phones lives here.
//!
//! [`Request`]: crate::core::Request

pub mod connections;
pub mod ftp;
pub mod http;
pub mod tftp;
pub mod turns;
pub mod watched;
