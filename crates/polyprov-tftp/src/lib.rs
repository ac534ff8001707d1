//! TFTP for provisioning servers and their clients: a packet codec (RFC 1350, options RFC 2347,
//! blksize 2348, timeout/tsize 2349, windowsize 7440).

pub mod client;
pub mod packet;
pub mod server;

pub use packet::{ErrorCode, Packet, PacketError};
