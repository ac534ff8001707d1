//! Releases and retirements, with the release intents that make a release survive a crash.

use super::*;

pub(super) async fn clear_release_intent(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    mac: Mac,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM release_intents WHERE mac = $1")
        .bind(mac.to_string())
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

impl Inventory {
    /// Withdraws a device's assignment: from now on it is served what a never-seen phone is.
    /// Idempotent: releasing a released device changes nothing and returns `false`.
    /// `detail` goes to the audit log (the reason, the quarantine set).
    pub async fn release(
        &self,
        mac: Mac,
        actor: &str,
        detail: &str,
    ) -> Result<(Device, bool), InventoryError> {
        let mut tx = self.write_tx().await?;
        let before = existing_device(&mut tx, mac).await?;
        before.state.allows(mac, Change::Release)?;
        if before.state == DeviceState::Released {
            return Ok((before, false));
        }
        let t = now();
        sqlx::query(
            "UPDATE devices SET state = 'released', profile = NULL, admin_password = NULL,
                 params = '{}', released_at = $2, updated_at = $2 WHERE mac = $1",
        )
        .bind(mac.to_string())
        .bind(t)
        .execute(&mut *tx)
        .await?;
        let after = existing_device(&mut tx, mac).await?;
        audit(
            &mut tx,
            actor,
            mac,
            "release",
            Some(&before),
            Some(&after),
            Some(detail),
        )
        .await?;
        clear_release_intent(&mut tx, mac).await?;
        tx.commit().await?;
        self.assigned_set().remove(&mac);
        self.bump();
        Ok((after, true))
    }

    /// Takes a released (or never assigned) device out of service.
    pub async fn retire(
        &self,
        mac: Mac,
        actor: &str,
        detail: &str,
    ) -> Result<Device, InventoryError> {
        let mut tx = self.write_tx().await?;
        let before = existing_device(&mut tx, mac).await?;
        before.state.allows(mac, Change::Retire)?;
        sqlx::query("UPDATE devices SET state = 'retired', updated_at = $2 WHERE mac = $1")
            .bind(mac.to_string())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        let after = existing_device(&mut tx, mac).await?;
        audit(
            &mut tx,
            actor,
            mac,
            "retire",
            Some(&before),
            Some(&after),
            Some(detail),
        )
        .await?;
        tx.commit().await?;
        self.bump();
        Ok(after)
    }

    /// Records a release intent before a release moves anything: `quarantine` is the id its
    /// quarantine set will have.
    pub async fn begin_release(&self, mac: Mac, quarantine: &str) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO release_intents (mac, quarantine, started_at) VALUES ($1, $2, $3)
             ON CONFLICT(mac) DO UPDATE SET quarantine = $2, started_at = $3",
        )
        .bind(mac.to_string())
        .bind(quarantine)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audits the release of uploads made since an earlier release (the device stays
    /// released), and ends its release intent in the same transaction.
    pub async fn record_rerelease(
        &self,
        actor: &str,
        mac: Mac,
        detail: &str,
    ) -> Result<(), InventoryError> {
        self.record_ending_intent(actor, mac, "release", detail, true)
            .await
    }

    /// Ends a release intent whose release did not happen (it failed, or it was undone).
    pub async fn end_release_intent(&self, mac: Mac) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        clear_release_intent(&mut tx, mac).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Release intents left behind: releases a crash interrupted, with their quarantine ids.
    pub async fn release_intents(&self) -> Result<Vec<(Mac, String)>, InventoryError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT mac, quarantine FROM release_intents ORDER BY mac")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(m, q)| Some((m.parse().ok()?, q)))
            .collect())
    }
}
