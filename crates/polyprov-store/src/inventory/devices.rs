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
    /// `unassigned`; `None` fields keep their stored value. Rows go many to a statement: each
    /// statement is a round trip to the database's thread (SQLite) or server, and a storm of
    /// new phones writes thousands of rows.
    pub async fn record_sightings(&self, batch: &[Sighting]) -> Result<(), InventoryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for rows in sighting_statements(batch) {
            let mut q = sqlx::query(upsert_sightings_sql(self.engine, rows.len()));
            for s in rows {
                // In the order of the placeholders: the time fills four columns.
                q = q
                    .bind(s.mac.clone())
                    .bind(s.model.clone())
                    .bind(s.family.clone())
                    .bind(s.firmware.clone())
                    .bind(s.stage.clone())
                    .bind(s.serial.clone())
                    .bind(s.at)
                    .bind(s.at)
                    .bind(s.addr.clone())
                    .bind(s.last_fetch.clone())
                    .bind(s.last_upload.clone())
                    .bind(s.at)
                    .bind(s.at)
                    .bind(s.user_agent.clone());
            }
            q.execute(&mut *tx).await?;
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

/// Values bound for each sighting row, one per placeholder of [`upsert_sightings_sql`].
const SIGHTING_VALUES: usize = 14;

/// The most rows one sighting statement carries (×14 values: well under SQLite's and
/// PostgreSQL's limits on bound values).
const SIGHTINGS_PER_STATEMENT: usize = 64;

/// `batch` cut into statements of 64, 32, … 1 rows, so that only seven statement texts exist
/// (each prepared once and cached by the pool). A statement never holds one MAC twice (one
/// upsert may not touch a row twice on PostgreSQL): a repeated MAC starts a new statement, so
/// later sightings are still applied after earlier ones.
fn sighting_statements(batch: &[Sighting]) -> Vec<&[Sighting]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut macs = std::collections::HashSet::new();
    for (i, s) in batch.iter().enumerate() {
        if i - start == SIGHTINGS_PER_STATEMENT || !macs.insert(s.mac.as_str()) {
            power_of_two_runs(&batch[start..i], &mut out);
            start = i;
            macs.clear();
            macs.insert(s.mac.as_str());
        }
    }
    power_of_two_runs(&batch[start..], &mut out);
    out
}

/// Splits `rows` into runs whose lengths are powers of two, longest first.
fn power_of_two_runs<'a>(mut rows: &'a [Sighting], out: &mut Vec<&'a [Sighting]>) {
    while !rows.is_empty() {
        let n = 1 << rows.len().ilog2();
        let (run, rest) = rows.split_at(n);
        out.push(run);
        rows = rest;
    }
}

/// The upsert of `rows` sightings (a power of two up to [`SIGHTINGS_PER_STATEMENT`]); texts
/// built once per engine.
///
/// Every placeholder is bound once, in order — the time is bound four times rather than
/// named four times — so SQLite gets anonymous `?`s: with numbered ones (`$7`) it looks each
/// name up in a list as long as the statement's values when sqlx binds them, quadratic in the
/// rows (`sqlite3_bind_parameter_name` was 4% of the server's user CPU in a storm).
fn upsert_sightings_sql(engine: Engine, rows: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        [Engine::Sqlite, Engine::Postgres].map(|engine| {
            (0..=SIGHTINGS_PER_STATEMENT.ilog2())
                .map(|k| {
                    let values: Vec<String> = (0..1usize << k)
                        .map(|r| {
                            let p: Vec<String> = (1..=SIGHTING_VALUES)
                                .map(|i| match engine {
                                    Engine::Sqlite => "?".to_string(),
                                    Engine::Postgres => format!("${}", r * SIGHTING_VALUES + i),
                                })
                                .collect();
                            format!("({}, 'unassigned', {})", p[0], p[1..].join(", "))
                        })
                        .collect();
                    format!(
                        "INSERT INTO devices (mac, state, model, family, firmware, stage, serial,
                         first_seen, last_seen, last_addr, last_fetch, last_upload, created_at,
                         updated_at, user_agent)
                     VALUES {}
                     ON CONFLICT(mac) DO UPDATE SET
                         model = COALESCE(excluded.model, devices.model),
                         family = COALESCE(excluded.family, devices.family),
                         firmware = COALESCE(excluded.firmware, devices.firmware),
                         stage = COALESCE(excluded.stage, devices.stage),
                         serial = COALESCE(excluded.serial, devices.serial),
                         first_seen = COALESCE(devices.first_seen, excluded.first_seen),
                         last_seen = CASE WHEN COALESCE(devices.last_seen, 0) > excluded.last_seen
                             THEN devices.last_seen ELSE excluded.last_seen END,
                         last_addr = COALESCE(excluded.last_addr, devices.last_addr),
                         last_fetch = COALESCE(excluded.last_fetch, devices.last_fetch),
                         last_upload = COALESCE(excluded.last_upload, devices.last_upload),
                         user_agent = COALESCE(excluded.user_agent, devices.user_agent)",
                        values.join(", ")
                    )
                })
                .collect()
        })
    });
    &texts[engine as usize][rows.ilog2() as usize]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(macs: &[&str]) -> Vec<Sighting> {
        macs.iter()
            .map(|m| Sighting {
                mac: (*m).to_string(),
                ..Default::default()
            })
            .collect()
    }

    fn lengths(batch: &[Sighting]) -> Vec<usize> {
        sighting_statements(batch).iter().map(|r| r.len()).collect()
    }

    #[test]
    fn sightings_go_in_runs_of_powers_of_two_with_no_mac_twice() {
        let many: Vec<String> = (0..1024).map(|i| format!("0004f2{i:06x}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(lengths(&seen(&many)), [64; 16]);
        assert_eq!(lengths(&seen(&many[..37])), [32, 4, 1]);
        assert_eq!(lengths(&seen(&many[..65])), [64, 1]);
        assert!(lengths(&[]).is_empty());
        // A repeated MAC starts a new statement; every row is kept, in order.
        let batch = seen(&["a", "b", "c", "b", "d", "a"]);
        let runs = sighting_statements(&batch);
        assert_eq!(lengths(&batch), [2, 1, 2, 1]);
        let order: Vec<&str> = runs
            .iter()
            .flat_map(|r| r.iter().map(|s| s.mac.as_str()))
            .collect();
        assert_eq!(order, ["a", "b", "c", "b", "d", "a"]);
        for run in runs {
            let mut macs: Vec<_> = run.iter().map(|s| &s.mac).collect();
            macs.sort();
            macs.dedup();
            assert_eq!(macs.len(), run.len());
        }
    }

    #[test]
    fn each_statement_text_has_the_placeholders_its_rows_bind() {
        for k in 0..=SIGHTINGS_PER_STATEMENT.ilog2() {
            let rows = 1usize << k;
            let last = rows * SIGHTING_VALUES;
            let pg = upsert_sightings_sql(Engine::Postgres, rows);
            assert!(pg.contains(&format!("${last},")) || pg.contains(&format!("${last})")));
            assert!(!pg.contains(&format!("${}", last + 1)));
            assert_eq!(pg.matches("'unassigned'").count(), rows);
            // SQLite: anonymous placeholders only, one per value.
            let sqlite = upsert_sightings_sql(Engine::Sqlite, rows);
            assert_eq!(sqlite.matches('?').count(), last);
            assert!(!sqlite.contains('$'));
            assert_eq!(sqlite.matches("'unassigned'").count(), rows);
        }
    }
}
