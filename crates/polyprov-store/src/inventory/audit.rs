//! The append-only audit log.

use super::*;

/// A device as the audit log shows it: the admin password never appears.
pub(super) fn audit_view(d: &Device) -> serde_json::Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        if o.get("admin_password").is_some_and(|p| !p.is_null()) {
            o.insert(
                "admin_password".into(),
                serde_json::Value::String("***".into()),
            );
        }
        for secret in o
            .get_mut("params")
            .and_then(|p| p.as_object_mut())
            .into_iter()
            .flat_map(|p| p.iter_mut())
            .filter(|(k, _)| polyprov_model::lint::is_secret(k))
        {
            *secret.1 = serde_json::Value::String("***".into());
        }
    }
    v
}

pub(super) async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &str,
    mac: Mac,
    action: &str,
    before: Option<&Device>,
    after: Option<&Device>,
    detail: Option<&str>,
) -> Result<(), InventoryError> {
    sqlx::query("INSERT INTO audit (at, actor, mac, action, before, after, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(now())
        .bind(actor)
        .bind(mac.to_string())
        .bind(action)
        .bind(before.map(|d| audit_view(d).to_string()))
        .bind(after.map(|d| audit_view(d).to_string()))
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Inventory {
    /// Appends an entry to the audit log (for actions outside the inventory: restore, …).
    pub async fn record(
        &self,
        actor: &str,
        mac: Mac,
        action: &str,
        detail: &str,
    ) -> Result<(), InventoryError> {
        self.record_ending_intent(actor, mac, action, detail, false)
            .await
    }

    /// [`Inventory::record`], ending the device's release intent in the same transaction when
    /// `end_intent` (a release whose record is what makes it happen).
    pub(super) async fn record_ending_intent(
        &self,
        actor: &str,
        mac: Mac,
        action: &str,
        detail: &str,
        end_intent: bool,
    ) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        let d = fetch_device(&mut tx, mac).await?;
        audit(
            &mut tx,
            actor,
            mac,
            action,
            d.as_ref(),
            d.as_ref(),
            Some(detail),
        )
        .await?;
        if end_intent {
            clear_release_intent(&mut tx, mac).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A device's audit log, oldest first.
    pub async fn history(&self, mac: Mac) -> Result<Vec<AuditEntry>, InventoryError> {
        let rows = sqlx::query("SELECT id, at, actor, mac, action, before, after, detail FROM audit WHERE mac = $1 ORDER BY id")
            .bind(mac.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let json = |c: &str| -> Result<Option<serde_json::Value>, InventoryError> {
                    let t: Option<String> = r.try_get(c)?;
                    Ok(t.map(|t| serde_json::from_str(&t)).transpose()?)
                };
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    mac: r.try_get("mac")?,
                    action: r.try_get("action")?,
                    before: json("before")?,
                    after: json("after")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
