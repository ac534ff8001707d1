//! `polyprov backup` and `polyprov restore` (the work is `polyprov_store::backup`).

use crate::client::{CliError, Exit, print_json};
use crate::out::outln;
use polyprov_store::backup::{BackupError, Manifest};
use std::path::Path;

fn failed(e: BackupError) -> CliError {
    let code = match e {
        BackupError::NotEmpty(_) | BackupError::Damaged(_) => Exit::Usage,
        _ => Exit::Failed,
    };
    CliError::new(code, e.to_string())
}

fn summary(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "files": m.files.len(),
        "bytes": m.files.values().map(|f| f.size).sum::<u64>(),
        "uploads": m.files.keys().filter(|k| k.starts_with("uploads/")).count(),
        "quarantined": m.files.keys().filter(|k| k.starts_with("quarantine/")).count(),
        "schema_version": m.schema_version,
        "created_at": m.created_at,
        "polyprov_version": m.polyprov_version,
    })
}

/// `polyprov backup FILE`.
pub async fn backup(
    file: &Path,
    data: &Path,
    config: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    // An inventory on PostgreSQL is backed up with PostgreSQL's tools; this backup's consistent
    // snapshot is SQLite's.
    if let Some(c) = config
        && let Ok(s) = polyprov_server::Settings::from_file(c)
        && let Some(url) = s.store.url.as_deref()
        && !url.starts_with("sqlite:")
    {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "the inventory is on PostgreSQL ({}): back it up with pg_dump, or copy it into SQLite first (polyprov migrate --from URL --to sqlite:PATH); this backup covers a data directory with its SQLite inventory",
                polyprov_server::settings::StoreSettings::redacted(url)
            ),
        ));
    }
    if !data.join("polyprov.db").is_file() {
        return Err(CliError::new(
            Exit::Usage,
            format!("{}: no polyprov data directory here", data.display()),
        ));
    }
    let m = polyprov_store::backup::backup(data, config, file, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(failed)?;
    let s = summary(&m);
    if json {
        let mut v = s;
        v["file"] = file.display().to_string().into();
        return print_json(&v);
    }
    outln!(
        "backed up {} into {}: {} files, {} bytes ({} uploads, {} quarantined), schema {}",
        data.display(),
        file.display(),
        s["files"],
        s["bytes"],
        s["uploads"],
        s["quarantined"],
        s["schema_version"]
    );
    Ok(())
}

/// `polyprov restore FILE --data DIR`.
pub async fn restore(
    file: &Path,
    data: &Path,
    config_to: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    let (file, data, config_to) = (
        file.to_path_buf(),
        data.to_path_buf(),
        config_to.map(Path::to_path_buf),
    );
    let shown = data.display().to_string();
    let m = tokio::task::spawn_blocking(move || {
        polyprov_store::backup::restore(&file, &data, config_to.as_deref())
    })
    .await
    .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?
    .map_err(failed)?;
    let s = summary(&m);
    if json {
        let mut v = s;
        v["data"] = shown.into();
        return print_json(&v);
    }
    outln!(
        "restored {} files ({} uploads, {} quarantined) into {shown}, every one checked against the manifest; start it with `polyprov serve --data {shown}` (the inventory is brought to this version's schema at start)",
        s["files"],
        s["uploads"],
        s["quarantined"]
    );
    Ok(())
}
