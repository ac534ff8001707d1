//! Just enough SIP for polyprov to act on phones without touching them.
//!
//! - [`message`]: parse and write SIP messages, defensively (size and header caps, any line
//!   ending, compact header names).
//! - [`digest`]: Digest authentication (RFC 7616 / RFC 3261 §22), shared with the HTTP door.
//! - [`notify`]: send a `NOTIFY` (`Event: check-sync`) to a phone over UDP (RFC 3261 timers E and
//!   F, retransmissions until a final answer) or TCP, answering a Digest challenge once.
//! - [`phone`]: the other end, as a phone: answer `NOTIFY`, challenge it when asked to.

pub mod digest;
pub mod message;
pub mod notify;
pub mod phone;

pub use message::{Message, ParseError, StartLine};
pub use notify::{Credentials, NotifyRequest, Outcome, Report, Timers, Transport};
