//! Helpers shared by the mirror's tests.
pub mod s3_server;
