//! Profiles and site defaults.

use super::*;

pub(super) fn profile_from_row(r: &sqlx::any::AnyRow) -> Result<Profile, InventoryError> {
    Ok(Profile {
        name: r.try_get("name")?,
        params: serde_json::from_str(r.try_get("params")?)?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Inventory {
    /// Every profile, by name.
    pub async fn profiles(&self) -> Result<Vec<Profile>, InventoryError> {
        let rows = sqlx::query("SELECT name, params, updated_at FROM profiles ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    /// One profile.
    pub async fn profile(&self, name: &str) -> Result<Option<Profile>, InventoryError> {
        let row = sqlx::query("SELECT name, params, updated_at FROM profiles WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    /// Creates or replaces a profile.
    pub async fn put_profile(
        &self,
        name: &str,
        params: &Params,
    ) -> Result<Profile, InventoryError> {
        let t = now();
        sqlx::query(
            "INSERT INTO profiles (name, params, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT(name) DO UPDATE SET params = $2, updated_at = $3",
        )
        .bind(name)
        .bind(serde_json::to_string(params)?)
        .bind(t)
        .execute(&self.pool)
        .await?;
        self.bump();
        Ok(Profile {
            name: name.to_string(),
            params: params.clone(),
            updated_at: t,
        })
    }

    /// Deletes a profile no device uses. Returns whether it existed.
    pub async fn delete_profile(&self, name: &str) -> Result<bool, InventoryError> {
        let mut tx = self.write_tx().await?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE profile = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        if users > 0 {
            return Err(InventoryError::ProfileInUse(name.to_string(), users));
        }
        let n = sqlx::query("DELETE FROM profiles WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        self.bump();
        Ok(n > 0)
    }

    /// The site defaults: parameters every assigned device gets unless its profile or its own
    /// parameters say otherwise.
    pub async fn site_defaults(&self) -> Result<Params, InventoryError> {
        let text: Option<String> = sqlx::query_scalar("SELECT params FROM site WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match text {
            Some(t) => serde_json::from_str(&t)?,
            None => Params::new(),
        })
    }

    /// Replaces the site defaults.
    pub async fn put_site_defaults(&self, params: &Params) -> Result<(), InventoryError> {
        sqlx::query(
            "INSERT INTO site (id, params, updated_at) VALUES (1, $1, $2)
             ON CONFLICT(id) DO UPDATE SET params = $1, updated_at = $2",
        )
        .bind(serde_json::to_string(params)?)
        .bind(now())
        .execute(&self.pool)
        .await?;
        self.bump();
        Ok(())
    }
}
