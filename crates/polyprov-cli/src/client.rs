//! The admin API client used by every command but `serve`.

use crate::args::ApiArgs;
use crate::out::outln;
use reqwest::StatusCode;
use serde_json::Value;

/// An error to print, with the process exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: Exit,
    pub message: String,
}

/// What the process's exit code says (0 is success; 141 a closed output pipe, `out.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The server refused or failed the request; a check found problems.
    Failed = 1,
    /// Wrong usage: arguments, files that cannot be read.
    Usage = 2,
    /// No such device, model, file.
    NotFound = 3,
    /// The server cannot be reached or refused the token.
    Unreachable = 4,
    /// The server could not start.
    CannotStart = 5,
}

impl CliError {
    pub fn new(code: Exit, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

/// `--token-file`'s default, relative to where the command runs.
pub const DEFAULT_TOKEN_FILE: &str = "./polyprov-data/admin.token";
/// Where the Debian package's server keeps its token.
pub const PACKAGE_TOKEN_FILE: &str = "/var/lib/polyprov/admin.token";

/// A client of one server's admin API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client from the command's flags and `POLYPROV_TOKEN`.
    pub fn new(api: &ApiArgs) -> Result<Client, CliError> {
        let token = match std::env::var("POLYPROV_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => std::fs::read_to_string(&api.token_file)
                .or_else(|e| {
                    // The package's server keeps its data in /var/lib/polyprov: with the
                    // default (relative) token file absent, an admin on that machine needs no
                    // flag.
                    let default = std::path::Path::new(DEFAULT_TOKEN_FILE);
                    if api.token_file == default && e.kind() == std::io::ErrorKind::NotFound {
                        std::fs::read_to_string(PACKAGE_TOKEN_FILE)
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| {
                    CliError::new(
                        Exit::Unreachable,
                        format!(
                            "cannot read the admin token from {}: {e} (set POLYPROV_TOKEN or --token-file)",
                            api.token_file.display()
                        ),
                    )
                })?
                .trim()
                .to_string(),
        };
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
        Ok(Client {
            http,
            base: format!("{}/api/v1/", api.server.trim_end_matches('/')),
            token,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    /// PUTs raw bytes (a file).
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<Value, CliError> {
        self.send(
            self.http
                .put(self.url(path))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.delete(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        // The audit log records who acted: the token, and the local user who ran the command.
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_default();
        let resp = req
            .bearer_auth(&self.token)
            .header("X-Polyprov-Actor", user)
            .send()
            .await
            .map_err(|e| {
                CliError::new(
                    Exit::Unreachable,
                    format!("cannot reach {}: {e}", self.base),
                )
            })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| CliError::new(Exit::Unreachable, format!("reading the answer: {e}")))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        let code = match status {
            StatusCode::NOT_FOUND => Exit::NotFound,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Exit::Unreachable,
            _ => Exit::Failed,
        };
        Err(CliError::new(code, format!("{status}: {message}")))
    }
}

/// Prints a value as pretty JSON.
/// One JSON document on one line, for commands that print a stream of them (`sim listen`).
pub fn print_json_line(v: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string(v).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    outln!("{text}");
    Ok(())
}

pub fn print_json(v: &Value) -> Result<(), CliError> {
    let text =
        serde_json::to_string_pretty(v).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    outln!("{text}");
    Ok(())
}
