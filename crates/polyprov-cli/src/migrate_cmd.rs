//! `polyprov migrate --from URL --to URL` (the work is `Inventory::copy_into`).

use crate::client::{CliError, Exit, print_json};
use crate::out::outln;
use polyprov_server::settings::StoreSettings;
use polyprov_store::{Inventory, InventoryError};

fn opening(url: &str, e: InventoryError) -> CliError {
    CliError::new(
        Exit::Failed,
        format!("cannot open {}: {e}", StoreSettings::redacted(url)),
    )
}

/// `polyprov migrate`.
pub async fn migrate(from: &str, to: &str, json: bool) -> Result<(), CliError> {
    for url in [from, to] {
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !known.iter().any(|k| url.starts_with(k)) {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "{}: an inventory URL is sqlite:PATH or postgres://user@host/db",
                    StoreSettings::redacted(url)
                ),
            ));
        }
    }
    // A source that does not exist is a typo, not an empty inventory to copy.
    if let Some(path) = polyprov_store::inventory::sqlite_path(from)
        && !path.is_file()
    {
        return Err(CliError::new(
            Exit::Usage,
            format!("{}: no such inventory file", path.display()),
        ));
    }
    let source = Inventory::open(from).await.map_err(|e| opening(from, e))?;
    let dest = Inventory::open(to).await.map_err(|e| opening(to, e))?;
    let totals = source.row_counts().await.map_err(|e| opening(from, e))?;
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(totals.iter().map(|(_, n)| *n as u64).sum());
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {msg}  {elapsed}")
        {
            b.set_style(style);
        }
        b
    };
    let mut done_before = 0u64;
    let mut current = ("", 0u64);
    let copied = source
        .copy_into(&dest, |table, n| {
            if table != current.0 {
                done_before += current.1;
                current = (table, 0);
            }
            current.1 = n as u64;
            bar.set_message(table);
            bar.set_position(done_before + current.1);
        })
        .await
        .map_err(|e| {
            let code = match e {
                InventoryError::NotEmpty(..) => Exit::Usage,
                _ => Exit::Failed,
            };
            CliError::new(code, format!("nothing was copied: {e}"))
        })?;
    bar.finish_and_clear();
    source.close().await;
    dest.close().await;
    let (from_shown, to_shown) = (StoreSettings::redacted(from), StoreSettings::redacted(to));
    if json {
        return print_json(&serde_json::json!({
            "from": from_shown,
            "to": to_shown,
            "tables": copied.iter().map(|(t, n)| (t.to_string(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
            "checked": true,
        }));
    }
    outln!("copied {from_shown} into {to_shown}; row counts checked, equal on both:");
    for (t, n) in &copied {
        outln!("  {t:<16} {n:>9}");
    }
    Ok(())
}
