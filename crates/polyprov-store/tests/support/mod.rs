//! Helpers shared by the store's integration tests.
pub mod postgres_server;
