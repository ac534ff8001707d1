//! The Poly provisioning domain, with no I/O and no async: what a phone's MAC, User-Agent and
//! requested file names mean, and how configuration files are written.
//!
//! ```
//! use polyprov_model::{FileKind, Mac, RequestPath, UploadKind};
//!
//! let path = RequestPath::parse("/polycom/0004F2AA814C-web.cfg").unwrap();
//! let mac: Mac = "00-04-f2-aa-81-4c".parse().unwrap();
//! assert_eq!(path.kind(), FileKind::DeviceFile(mac, UploadKind::WebOverride));
//! ```

pub mod catalog;
pub mod config;
pub mod config_file;
pub mod dictionary;
pub mod doctor;
pub mod effective;
pub mod guide;
pub mod import;
pub mod keypad;
pub mod lint;
pub mod mac;
pub mod master;
pub mod path;
pub mod role;
pub mod user_agent;

pub use config::Params;
pub use mac::{Mac, MacError};
pub use path::{FileKind, PathError, RequestPath, UploadKind};
pub use user_agent::{Stage, UserAgent, UserAgentError};
