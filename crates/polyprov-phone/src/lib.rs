//! An emulated Poly phone that boots from any provisioning server (polyprov, or a plain folder
//! behind a web server), changes settings as people do, and resets as the vendor documents; and
//! a runner that boots thousands of them at once.
//!
//! It uses `polyprov-model` for everything a phone computes (master resolution, the effective
//! configuration, keypad decoding) and never the server's internals.

pub mod phone;
pub mod storm;
pub mod transport;
pub mod url;

pub use phone::rest::{RestAction, RestView, rest_tls, serve_rest};
pub use phone::{Assumptions, BootReport, MenuReset, Network, PhoneState, RequestRecord, Summary};
pub use transport::{
    AnyTransport, FtpTransport, HttpTransport, LeanHttp, TftpTransport, Transport,
};
pub use url::ServerUrl;
