//! Devices: reading them, assigning, removing, and what phones were seen doing.

use super::*;

pub(super) async fn fetch_device(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    mac: Mac,
) -> Result<Option<Device>, InventoryError> {
    let row = sqlx::query(select_devices!("WHERE mac = $1"))
        .bind(mac.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| device_from_row(&r)).transpose()
}

/// A device that must exist: `NoSuchDevice` otherwise.
pub(super) async fn existing_device(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    mac: Mac,
) -> Result<Device, InventoryError> {
    fetch_device(tx, mac)
        .await?
        .ok_or_else(|| InventoryError::NoSuchDevice(mac.to_string()))
}

pub(super) fn device_from_row(r: &sqlx::any::AnyRow) -> Result<Device, InventoryError> {
    Ok(Device {
        mac: r.try_get("mac")?,
        state: DeviceState::parse(r.try_get("state")?),
        assignment: Assignment {
            profile: r.try_get("profile")?,
            admin_password: r.try_get("admin_password")?,
            params: serde_json::from_str(r.try_get("params")?)?,
        },
        model: r.try_get("model")?,
        family: r.try_get("family")?,
        firmware: r.try_get("firmware")?,
        stage: r.try_get("stage")?,
        serial: r.try_get("serial")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        last_addr: r.try_get("last_addr")?,
        last_fetch: r.try_get("last_fetch")?,
        last_upload: r.try_get("last_upload")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        released_at: r.try_get("released_at")?,
        reset_suspected_at: r.try_get("reset_suspected_at")?,
        user_agent: r.try_get("user_agent")?,
    })
}

impl Inventory {
    /// One device, if known.
    pub async fn device(&self, mac: Mac) -> Result<Option<Device>, InventoryError> {
        let row = sqlx::query(select_devices!("WHERE mac = $1"))
            .bind(mac.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| device_from_row(&r)).transpose()
    }

    /// Every device, by MAC.
    pub async fn devices(&self) -> Result<Vec<Device>, InventoryError> {
        let rows = sqlx::query(select_devices!("ORDER BY mac"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// At most `limit` devices after `after` (by MAC), for paging through a large inventory.
    pub async fn devices_page(
        &self,
        after: Option<Mac>,
        limit: u32,
    ) -> Result<Vec<Device>, InventoryError> {
        let rows = sqlx::query(select_devices!("WHERE mac > $1 ORDER BY mac LIMIT $2"))
            .bind(after.map(|m| m.to_string()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// One page of the devices `filter` accepts, in MAC order, after `after`.
    pub async fn devices_matching(
        &self,
        filter: &DeviceFilter,
        after: Option<Mac>,
        limit: u32,
    ) -> Result<Vec<Device>, InventoryError> {
        self.devices_in_order(filter, &PageAfter::Mac(after), limit)
            .await
    }

    /// One page of the devices `filter` accepts, in the order `after` names, after its place.
    /// Both orders are index range scans (migrations 6 and 7), so a page costs the same at the
    /// first device and the hundred-thousandth.
    pub async fn devices_in_order(
        &self,
        filter: &DeviceFilter,
        after: &PageAfter,
        limit: u32,
    ) -> Result<Vec<Device>, InventoryError> {
        // Only the conditions given, so that SQLite can use the (state, mac) and (model, mac)
        // indexes: an `($1 IS NULL OR state = $1)` form would make it scan. Placeholders are
        // numbered as they are added (`$N` reads the same on SQLite and PostgreSQL).
        let (mut sql, mut n) = match after {
            PageAfter::Mac(_) => (String::from(select_devices!("WHERE mac > $1")), 1),
            PageAfter::Seen(None) => (String::from(select_devices!("WHERE TRUE")), 0),
            PageAfter::Seen(Some(_)) => (
                String::from(select_devices!(
                    "WHERE (COALESCE(last_seen, 0), mac) < ($1, $2)"
                )),
                2,
            ),
        };
        for (given, prefix, suffix) in [
            (filter.state.is_some(), "state = ", ""),
            // Digits only (see `DeviceFilter`): no LIKE wildcard can come from the filter.
            (filter.mac_digits.is_some(), "mac LIKE '%' || ", " || '%'"),
            (filter.model.is_some(), "model = ", ""),
            (filter.profile.is_some(), "profile = ", ""),
        ] {
            if given {
                n += 1;
                sql.push_str(&format!(" AND {prefix}${n}{suffix}"));
            }
        }
        n += 1;
        sql.push_str(&match after {
            PageAfter::Mac(_) => format!(" ORDER BY mac LIMIT ${n}"),
            PageAfter::Seen(_) => {
                format!(" ORDER BY COALESCE(last_seen, 0) DESC, mac DESC LIMIT ${n}")
            }
        });
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        match after {
            PageAfter::Mac(m) => q = q.bind(m.map(|m| m.to_string()).unwrap_or_default()),
            PageAfter::Seen(None) => {}
            PageAfter::Seen(Some((at, m))) => q = q.bind(*at).bind(m.to_string()),
        }
        if let Some(s) = filter.state {
            q = q.bind(s.as_str());
        }
        if let Some(d) = &filter.mac_digits {
            // Hex digits only, whatever a caller passes: never a LIKE wildcard.
            q = q.bind(
                d.chars()
                    .filter(char::is_ascii_hexdigit)
                    .collect::<String>(),
            );
        }
        if let Some(m) = &filter.model {
            q = q.bind(m.clone());
        }
        if let Some(p) = &filter.profile {
            q = q.bind(p.clone());
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(device_from_row).collect()
    }

    /// The models the inventory has seen, by name.
    pub async fn models(&self) -> Result<Vec<String>, InventoryError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT model FROM devices WHERE model IS NOT NULL ORDER BY model",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Number of devices in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(DeviceState, i64)>, InventoryError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM devices GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (DeviceState::parse(r.get::<&str, _>(0)), r.get::<i64, _>(1)))
            .collect())
    }

    /// Gives a device its assignment (creating the device if new). The profile must exist; a
    /// retired device cannot be assigned.
    pub async fn assign(
        &self,
        mac: Mac,
        a: &Assignment,
        actor: &str,
    ) -> Result<Device, InventoryError> {
        let mut tx = self.write_tx().await?;
        let after = assign_in(&mut tx, mac, a, actor).await?;
        tx.commit().await?;
        self.assigned_set().insert(mac);
        self.bump();
        Ok(after)
    }

    /// Assigns many devices in one transaction: all of them, or none (the first refusal, such
    /// as a retired device or a missing profile, is the error).
    pub async fn assign_many(
        &self,
        items: &[(Mac, Assignment)],
        actor: &str,
    ) -> Result<usize, InventoryError> {
        let mut tx = self.write_tx().await?;
        for (mac, a) in items {
            assign_in(&mut tx, *mac, a, actor).await?;
        }
        tx.commit().await?;
        self.assigned_set().extend(items.iter().map(|(m, _)| *m));
        self.bump();
        Ok(items.len())
    }

    /// Deletes a device's record (its audit log stays). Returns whether it existed.
    pub async fn remove(&self, mac: Mac, actor: &str) -> Result<bool, InventoryError> {
        let mut tx = self.write_tx().await?;
        let before = fetch_device(&mut tx, mac).await?;
        let n = sqlx::query("DELETE FROM devices WHERE mac = $1")
            .bind(mac.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if before.is_some() {
            audit(&mut tx, actor, mac, "remove", before.as_ref(), None, None).await?;
        }
        tx.commit().await?;
        self.assigned_set().remove(&mac);
        self.bump();
        Ok(n > 0)
    }

    /// Records what the server saw, many devices in one transaction. Unknown devices are created
    /// `unassigned`; `None` fields keep their stored value.
    pub async fn record_sightings(&self, batch: &[Sighting]) -> Result<(), InventoryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for s in batch {
            sqlx::query(
                "INSERT INTO devices (mac, state, model, family, firmware, stage, serial,
                     first_seen, last_seen, last_addr, last_fetch, last_upload, created_at, updated_at,
                     user_agent)
                 VALUES ($1, 'unassigned', $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $7, $7, $11)
                 ON CONFLICT(mac) DO UPDATE SET
                     model = COALESCE($2, devices.model), family = COALESCE($3, devices.family),
                     firmware = COALESCE($4, devices.firmware), stage = COALESCE($5, devices.stage),
                     serial = COALESCE($6, devices.serial),
                     first_seen = COALESCE(devices.first_seen, $7),
                     last_seen = CASE WHEN COALESCE(devices.last_seen, 0) > $7
                         THEN devices.last_seen ELSE $7 END,
                     last_addr = COALESCE($8, devices.last_addr),
                     last_fetch = COALESCE($9, devices.last_fetch),
                     last_upload = COALESCE($10, devices.last_upload),
                     user_agent = COALESCE($11, devices.user_agent)",
            )
            .bind(&s.mac)
            .bind(&s.model)
            .bind(&s.family)
            .bind(&s.firmware)
            .bind(&s.stage)
            .bind(&s.serial)
            .bind(s.at)
            .bind(&s.addr)
            .bind(&s.last_fetch)
            .bind(&s.last_upload)
            .bind(&s.user_agent)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks a device as probably factory-reset at `at`, with the evidence in the audit log.
    pub async fn suspect_reset(
        &self,
        mac: Mac,
        at: i64,
        evidence: &str,
    ) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE devices SET reset_suspected_at = $2 WHERE mac = $1")
            .bind(mac.to_string())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            "phone",
            mac,
            "reset-suspected",
            None,
            None,
            Some(evidence),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// One assignment inside a write transaction (checked, written, audited).
async fn assign_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    mac: Mac,
    a: &Assignment,
    actor: &str,
) -> Result<Device, InventoryError> {
    let before = fetch_device(tx, mac).await?;
    if let Some(d) = &before {
        d.state.allows(mac, Change::Assign)?;
    }
    if let Some(p) = &a.profile {
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM profiles WHERE name = $1")
            .bind(p)
            .fetch_optional(&mut **tx)
            .await?;
        if exists.is_none() {
            return Err(InventoryError::NoSuchProfile(p.clone()));
        }
    }
    let t = now();
    sqlx::query(
        "INSERT INTO devices (mac, state, profile, admin_password, params, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT(mac) DO UPDATE SET state = $2, profile = $3, admin_password = $4,
                 params = $5, updated_at = $6",
    )
    .bind(mac.to_string())
    .bind(DeviceState::Assigned.as_str())
    .bind(&a.profile)
    .bind(&a.admin_password)
    .bind(serde_json::to_string(&a.params)?)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    let after = existing_device(tx, mac).await?;
    audit(
        tx,
        actor,
        mac,
        "assign",
        before.as_ref(),
        Some(&after),
        None,
    )
    .await?;
    Ok(after)
}
