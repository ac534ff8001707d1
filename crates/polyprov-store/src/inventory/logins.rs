//! Each device's own provisioning login: stored as what the protocols need to check it (the
//! Digest HA1, a SHA-256 of the password for Basic), the password itself only until the phone
//! has used it.

use super::*;

/// What proves a login, without the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginCheck {
    pub user: String,
    /// MD5(user:realm:password), hex.
    pub ha1: String,
    /// SHA-256(password), hex.
    pub password_sha256: String,
}

/// A device's login, current and (during a rotation) previous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLogin {
    pub current: LoginCheck,
    /// In clear until the phone has used the login: rendered into its file until then.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    pub created_at: i64,
    /// When the phone first used it; from then on the shared credentials no longer open its
    /// files.
    pub adopted_at: Option<i64>,
    /// The login before the last rotation, valid until `previous_until` or until the phone uses
    /// the current one.
    pub previous: Option<LoginCheck>,
    pub previous_until: Option<i64>,
}

fn login_from_row(r: &sqlx::any::AnyRow) -> Result<(Mac, DeviceLogin), InventoryError> {
    let mac: String = r.try_get("mac")?;
    let mac = mac
        .parse()
        .map_err(|_| InventoryError::NoSuchDevice(mac.clone()))?;
    let previous = match (
        r.try_get::<Option<String>, _>("previous_user")?,
        r.try_get::<Option<String>, _>("previous_ha1")?,
        r.try_get::<Option<String>, _>("previous_sha256")?,
    ) {
        (Some(user), Some(ha1), Some(password_sha256)) => Some(LoginCheck {
            user,
            ha1,
            password_sha256,
        }),
        _ => None,
    };
    Ok((
        mac,
        DeviceLogin {
            current: LoginCheck {
                user: r.try_get("user")?,
                ha1: r.try_get("ha1")?,
                password_sha256: r.try_get("password_sha256")?,
            },
            password: r.try_get("password")?,
            created_at: r.try_get("created_at")?,
            adopted_at: r.try_get("adopted_at")?,
            previous,
            previous_until: r.try_get("previous_until")?,
        },
    ))
}

impl Inventory {
    /// Every device login (loaded once at start; the server keeps them in memory).
    pub async fn device_logins(&self) -> Result<Vec<(Mac, DeviceLogin)>, InventoryError> {
        let rows = sqlx::query("SELECT * FROM device_logins")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(login_from_row).collect()
    }

    /// One device's login, if it has one (to follow a change another node made).
    pub async fn device_login(&self, mac: Mac) -> Result<Option<DeviceLogin>, InventoryError> {
        let row = sqlx::query("SELECT * FROM device_logins WHERE mac = $1")
            .bind(mac.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(|r| login_from_row(r).map(|(_, l)| l))
            .transpose()
    }

    /// Gives a device a new login; its current one (if any) becomes the previous one, valid
    /// until `previous_until`. Audited without the password.
    pub async fn rotate_login(
        &self,
        mac: Mac,
        new: &LoginCheck,
        password: &str,
        previous_until: i64,
        actor: &str,
    ) -> Result<DeviceLogin, InventoryError> {
        let mut tx = self.write_tx().await?;
        let t = now();
        let had: Option<i64> = sqlx::query_scalar("SELECT 1 FROM device_logins WHERE mac = $1")
            .bind(mac.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO device_logins (mac, \"user\", ha1, password_sha256, password, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT(mac) DO UPDATE SET
                 previous_user = device_logins.\"user\", previous_ha1 = device_logins.ha1,
                 previous_sha256 = device_logins.password_sha256,
                 previous_until = $7,
                 \"user\" = $2, ha1 = $3, password_sha256 = $4, password = $5, created_at = $6,
                 adopted_at = NULL",
        )
        .bind(mac.to_string())
        .bind(&new.user)
        .bind(&new.ha1)
        .bind(&new.password_sha256)
        .bind(password)
        .bind(t)
        .bind(previous_until)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM device_logins WHERE mac = $1")
            .bind(mac.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let (_, login) = login_from_row(&row)?;
        audit(
            &mut tx,
            actor,
            mac,
            if had.is_some() {
                "login-rotate"
            } else {
                "login-issue"
            },
            None,
            None,
            Some(&format!("user {}", new.user)),
        )
        .await?;
        tx.commit().await?;
        self.bump();
        Ok(login)
    }

    /// Gives many devices their first login in one transaction (devices that have one keep
    /// it). Returns the logins made.
    pub async fn issue_logins(
        &self,
        new: &[(Mac, LoginCheck, String)],
        actor: &str,
    ) -> Result<Vec<(Mac, DeviceLogin)>, InventoryError> {
        let mut tx = self.write_tx().await?;
        let t = now();
        let mut made = Vec::new();
        for (mac, check, password) in new {
            let n = sqlx::query(
                "INSERT INTO device_logins (mac, \"user\", ha1, password_sha256, password, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(mac) DO NOTHING",
            )
            .bind(mac.to_string())
            .bind(&check.user)
            .bind(&check.ha1)
            .bind(&check.password_sha256)
            .bind(password)
            .bind(t)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                audit(
                    &mut tx,
                    actor,
                    *mac,
                    "login-issue",
                    None,
                    None,
                    Some(&format!("user {}", check.user)),
                )
                .await?;
                made.push((
                    *mac,
                    DeviceLogin {
                        current: check.clone(),
                        password: Some(password.clone()),
                        created_at: t,
                        adopted_at: None,
                        previous: None,
                        previous_until: None,
                    },
                ));
            }
        }
        tx.commit().await?;
        self.bump();
        Ok(made)
    }

    /// The phone used its current login: forget the password and the previous login.
    pub async fn login_adopted(&self, mac: Mac, at: i64) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE device_logins SET adopted_at = $2, password = NULL, previous_user = NULL,
                 previous_ha1 = NULL, previous_sha256 = NULL, previous_until = NULL
             WHERE mac = $1 AND adopted_at IS NULL",
        )
        .bind(mac.to_string())
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            audit(&mut tx, "phone", mac, "login-adopted", None, None, None).await?;
        }
        tx.commit().await?;
        self.bump();
        Ok(())
    }

    /// Forgets a device's login (the device was removed).
    pub async fn delete_login(&self, mac: Mac) -> Result<(), InventoryError> {
        sqlx::query("DELETE FROM device_logins WHERE mac = $1")
            .bind(mac.to_string())
            .execute(&self.pool)
            .await?;
        self.bump();
        Ok(())
    }
}
