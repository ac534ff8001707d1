//! Copying a whole inventory into another, empty one — SQLite to PostgreSQL when a site grows to
//! several nodes, and back (`polyprov migrate`). Both ends have the same schema (the same
//! steps, checked by the PostgreSQL tests), so every table is copied column by column, in one
//! transaction on the destination, and the destination's row counts are checked against the
//! source's before it commits.

use super::{Engine, Inventory, InventoryError};
use futures_util::TryStreamExt;
use sqlx::Row;

/// Every table, in an order that satisfies every reference (profiles before the devices that
/// name them).
pub const TABLES: [&str; 7] = [
    "profiles",
    "site",
    "devices",
    "device_logins",
    "release_intents",
    "audit",
    "device_files",
];

/// How a column's values are read and bound: the declared type, so that a NULL is bound with
/// the type PostgreSQL expects for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Blob,
}

impl Inventory {
    /// Rows in each table, in [`TABLES`] order.
    pub async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, InventoryError> {
        let mut out = Vec::with_capacity(TABLES.len());
        for t in TABLES {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}")))
                    .fetch_one(&self.pool)
                    .await?;
            out.push((t, n));
        }
        Ok(out)
    }

    /// The columns of `table`, in order, with how to read them.
    async fn columns(&self, table: &str) -> Result<Vec<(String, Kind)>, InventoryError> {
        let sql = match self.engine {
            Engine::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
            Engine::Postgres => {
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        let rows = sqlx::query(sql).bind(table).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                let declared: String = r.try_get::<String, _>(1)?.to_ascii_lowercase();
                let kind = if declared.contains("int") {
                    Kind::Int
                } else if declared.contains("blob") || declared.contains("bytea") {
                    Kind::Blob
                } else {
                    Kind::Text
                };
                Ok((name, kind))
            })
            .collect()
    }

    /// Copies every row of this inventory into `to`, which must be empty; `progress` hears each
    /// table's rows as they go. Returns the rows copied per table. Nothing is written to `to`
    /// unless everything is: one transaction, committed only when its counts match this
    /// inventory's (a server still writing here makes the copy fail, not go stale).
    pub async fn copy_into(
        &self,
        to: &Inventory,
        mut progress: impl FnMut(&'static str, i64),
    ) -> Result<Vec<(&'static str, i64)>, InventoryError> {
        for (t, n) in to.row_counts().await? {
            if n > 0 {
                return Err(InventoryError::NotEmpty(t, n));
            }
        }
        let mut tx = to.write_tx().await?;
        let mut copied = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let columns = self.columns(table).await?;
            let names: Vec<String> = columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
            let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
            // The audit log's id is an identity column on PostgreSQL: the copied ids are kept.
            let overriding = if to.engine == Engine::Postgres && table == "audit" {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            let insert = format!(
                "INSERT INTO {table} ({}){overriding} VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            );
            let select = format!("SELECT {} FROM {table}", names.join(", "));
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&self.pool);
            let mut n = 0i64;
            while let Some(row) = rows.try_next().await? {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
                for (i, (_, kind)) in columns.iter().enumerate() {
                    q = match kind {
                        Kind::Int => q.bind(row.try_get::<Option<i64>, _>(i)?),
                        Kind::Text => q.bind(row.try_get::<Option<String>, _>(i)?),
                        Kind::Blob => q.bind(row.try_get::<Option<Vec<u8>>, _>(i)?),
                    };
                }
                q.execute(&mut *tx).await?;
                n += 1;
                if n % 1000 == 0 {
                    progress(table, n);
                }
            }
            progress(table, n);
            copied.push((table, n));
        }
        if to.engine == Engine::Postgres {
            // New audit rows continue after the copied ones.
            sqlx::query(
                "SELECT 1 FROM (SELECT setval(pg_get_serial_sequence('audit', 'id'), \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM audit), false)) AS s",
            )
            .execute(&mut *tx)
            .await?;
        }
        let now = self.row_counts().await?;
        for ((table, done), (_, there)) in copied.iter().zip(&now) {
            let landed: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut *tx)
                    .await?;
            if landed != *done || done != there {
                return Err(InventoryError::SourceChanged(table, *done, *there));
            }
        }
        tx.commit().await?;
        to.load_assigned().await?;
        to.load_with_files().await?;
        to.bump();
        Ok(copied)
    }
}
