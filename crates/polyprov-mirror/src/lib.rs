//! A local folder kept in step with a prefix of an S3-compatible object store ([`Mirror`]:
//! the store to the folder), and the other way ([`Archive`]: a folder's files copied to the
//! store).
//!
//! Several polyprov nodes serve one boot root kept in a bucket (`[boot_root] url =
//! "s3://bucket/prefix"`). Phones never wait on the object store: each node serves its own
//! copy, and [`Mirror::sync`] brings the copy up to date — a listing of the prefix, then a
//! download of only what is new or whose ETag changed, streamed into a temporary file and
//! renamed into place (a phone reads the old file or the new one, never half of one), and the
//! removal of what the bucket no longer holds. So a boot storm is a storm on local files, not on
//! the object store, and when the store is unreachable the copy keeps serving.
//!
//! Only files this mirror downloaded are ever removed (it remembers them, with their ETags, in
//! `.polyprov-mirror.json` in the folder: a hidden name, never served). Keys that cannot be a
//! safe file name (`..`, hidden segments, not UTF-8) are skipped and reported.

use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

mod archive;
pub use archive::{Archive, ArchiveReport};

/// Where the mirror's memory of what it downloaded is kept, in the folder.
pub const STATE_FILE: &str = ".polyprov-mirror.json";
/// Where downloads are written before they are renamed into place.
const SCRATCH: &str = ".polyprov-mirror.tmp";

/// Why a mirror could not be set up or brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("not an object store URL (s3://bucket/prefix): {0}")]
    Url(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to reach the object store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// `s3://bucket/prefix` (the prefix may be empty).
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); unset: AWS.
    pub endpoint: Option<String>,
    /// The region requests are signed for; unset: `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint (a store on the same host or network).
    pub allow_http: bool,
    /// Where the keys come from.
    pub credentials: Credentials,
}

/// Where the mirror's keys come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) from the
    /// environment; without them, unsigned requests (a public bucket) — never a call to a
    /// cloud's metadata service the admin did not ask for.
    #[default]
    Environment,
    /// The cloud's own chain: web identity, container or instance credentials (AWS).
    Instance,
}

/// What one [`Mirror::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Files downloaded because they were new or their ETag changed.
    pub downloaded: Vec<String>,
    /// Files removed because the bucket no longer holds them.
    pub removed: Vec<String>,
    /// Files already up to date.
    pub unchanged: usize,
    /// Keys skipped because they cannot be a safe file name.
    pub skipped: Vec<String>,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// A folder kept in step with a prefix of an object store.
pub struct Mirror {
    store: Arc<dyn ObjectStore>,
    prefix: Option<StorePath>,
    dir: PathBuf,
    /// One sync at a time.
    running: tokio::sync::Mutex<()>,
}

/// The object store `config` names, and the prefix in it. Credentials come from the
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …) or the
/// cloud's chain ([`Credentials`]).
pub fn open_store(config: &StoreConfig) -> Result<(Arc<dyn ObjectStore>, String), MirrorError> {
    let rest = config
        .url
        .strip_prefix("s3://")
        .ok_or_else(|| MirrorError::Url(config.url.clone()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(MirrorError::Url(config.url.clone()));
    }
    // A sync that cannot reach the store gives up soon: the next one comes anyway, and the
    // local copy serves meanwhile. A download may take long (firmware images).
    let retry = object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(5))
        .with_timeout(std::time::Duration::from_secs(600))
        .with_allow_http(config.allow_http);
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry)
        .with_client_options(client)
        .with_allow_http(config.allow_http);
    if config.credentials == Credentials::Environment
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
    {
        b = b.with_skip_signature(true);
    }
    if let Some(e) = &config.endpoint {
        b = b.with_endpoint(e);
    }
    match &config.region {
        Some(r) => b = b.with_region(r),
        None if std::env::var_os("AWS_DEFAULT_REGION").is_none() => b = b.with_region("us-east-1"),
        None => {}
    }
    Ok((Arc::new(b.build()?), prefix.to_string()))
}

/// What the mirror downloaded: relative path → ETag.
type State = BTreeMap<String, String>;

impl Mirror {
    /// A mirror of `config`'s prefix into `dir` (created if needed). Credentials come from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …).
    pub fn new(config: &StoreConfig, dir: &Path) -> Result<Mirror, MirrorError> {
        let (store, prefix) = open_store(config)?;
        Ok(Mirror::with_store(store, &prefix, dir))
    }

    /// A mirror of `store` (any object store: tests, other clouds) under `prefix` into `dir`.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, dir: &Path) -> Mirror {
        let prefix = prefix.trim_matches('/');
        Mirror {
            store,
            prefix: (!prefix.is_empty()).then(|| StorePath::from(prefix)),
            dir: dir.to_path_buf(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Brings the folder up to date with the prefix. On an error (the store unreachable, a
    /// download cut off) nothing already in the folder is touched except files fully replaced
    /// before the error; the next sync picks up where this one stopped.
    pub async fn sync(&self) -> Result<SyncReport, MirrorError> {
        let _one = self.running.lock().await;
        let listed: Vec<object_store::ObjectMeta> =
            self.store.list(self.prefix.as_ref()).try_collect().await?;
        let mut state = self.read_state().await;
        let mut report = SyncReport::default();
        let mut seen = std::collections::BTreeSet::new();
        for meta in listed {
            let Some(rel) = self.relative(&meta.location) else {
                report.skipped.push(meta.location.to_string());
                continue;
            };
            let tag = self.e_tag(&meta).await?;
            seen.insert(rel.clone());
            let target = self.dir.join(&rel);
            if state.get(&rel) == Some(&tag)
                && tokio::fs::try_exists(&target).await.unwrap_or(false)
            {
                report.unchanged += 1;
                continue;
            }
            let result = self.download(&meta.location, &target).await;
            match result {
                Ok(n) => {
                    report.bytes += n;
                    report.downloaded.push(rel.clone());
                    state.insert(rel, tag);
                }
                Err(e) => {
                    // Keep what was done so far, so the next sync does not repeat it.
                    self.write_state(&state).await?;
                    return Err(e);
                }
            }
        }
        let gone: Vec<String> = state
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for rel in gone {
            let path = self.dir.join(&rel);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            state.remove(&rel);
            report.removed.push(rel);
        }
        self.write_state(&state).await?;
        Ok(report)
    }

    /// An object's ETag: from the listing, or — for stores whose listings leave it out — from
    /// a HEAD of the object; size and modification time (ms) only when neither says.
    async fn e_tag(&self, meta: &object_store::ObjectMeta) -> Result<String, MirrorError> {
        if let Some(t) = &meta.e_tag {
            return Ok(t.clone());
        }
        let head = self.store.head(&meta.location).await?;
        Ok(head
            .e_tag
            .unwrap_or_else(|| format!("{}-{}", head.size, head.last_modified.timestamp_millis())))
    }

    /// The file name an object key becomes, relative to the folder; `None` when it would not be
    /// a safe, servable name.
    fn relative(&self, location: &StorePath) -> Option<String> {
        let key = location.as_ref();
        let rel = match &self.prefix {
            Some(p) => key.strip_prefix(p.as_ref())?.strip_prefix('/')?,
            None => key,
        };
        let safe = !rel.is_empty()
            && rel.split('/').all(|s| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && s != ".."
                    && !s.contains('\\')
                    && !s.contains('\0')
            });
        safe.then(|| rel.to_string())
    }

    /// Streams one object into a temporary file and renames it over `target`.
    async fn download(&self, location: &StorePath, target: &Path) -> Result<u64, MirrorError> {
        let scratch = self.dir.join(SCRATCH);
        tokio::fs::create_dir_all(&scratch)
            .await
            .map_err(io(&scratch))?;
        let tmp = scratch.join(format!("{:016x}", rand::random::<u64>()));
        let written = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
            let mut body = self.store.get(location).await?.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = body.try_next().await? {
                file.write_all(&chunk).await.map_err(io(&tmp))?;
                n += chunk.len() as u64;
            }
            file.sync_all().await.map_err(io(&tmp))?;
            Ok::<u64, MirrorError>(n)
        }
        .await;
        let n = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io(parent))?;
        }
        // Readable by whoever serves it, like a file an admin copies in.
        set_readable(&tmp).await;
        tokio::fs::rename(&tmp, target).await.map_err(io(target))?;
        Ok(n)
    }

    async fn read_state(&self) -> State {
        let path = self.dir.join(STATE_FILE);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "the mirror's state is unreadable; every file will be checked again");
                State::new()
            }),
            Err(_) => State::new(),
        }
    }

    async fn write_state(&self, state: &State) -> Result<(), MirrorError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(state).unwrap_or_default();
        tokio::fs::write(&tmp, text).await.map_err(io(&tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(io(&path))
    }
}

#[cfg(unix)]
async fn set_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).await;
}

#[cfg(not(unix))]
async fn set_readable(_: &Path) {}
