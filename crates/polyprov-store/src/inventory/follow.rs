//! Hearing the changes every node makes to a shared PostgreSQL inventory, so that what this
//! node keeps in memory — which devices are assigned, the generation its rendered files are
//! cached under, and (through [`InventoryChange`]) the server's copy of the device logins —
//! follows them. The announcements are made by triggers in the writing transaction (schema
//! step 8 in [`super::postgres`]), so a change is heard exactly when it commits.

use super::{Engine, Inventory, InventoryError, postgres};
use polyprov_model::Mac;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A change to the inventory, as heard (every node hears every change, its own included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryChange {
    /// One device's assignment, state, admin password, parameters or login changed.
    Device(Mac),
    /// Anything may have changed: a profile or the site defaults, or this node was not
    /// listening for a while (changes are not replayed) — reload everything kept in memory.
    All,
}

/// How many changes a slow subscriber may fall behind before it is told to reload everything.
const BACKLOG: usize = 4096;

impl Inventory {
    /// On PostgreSQL, starts following the changes every node makes and returns a receiver of
    /// them (for what the caller keeps in memory beside the inventory's own). `None` on
    /// SQLite, which has one server. The follower stops when the inventory is dropped.
    pub fn follow_changes(
        self: &Arc<Self>,
    ) -> Option<tokio::sync::broadcast::Receiver<InventoryChange>> {
        let url = match (&self.engine, &self.url) {
            (Engine::Postgres, Some(url)) => url.clone(),
            _ => return None,
        };
        let (tx, rx) = tokio::sync::broadcast::channel(BACKLOG);
        tokio::spawn(follow(Arc::downgrade(self), url, tx));
        Some(rx)
    }

    /// Acts on one announcement: `*` or a device's MAC.
    async fn heard(&self, payload: &str) -> Result<InventoryChange, InventoryError> {
        let Ok(mac) = payload.parse::<Mac>() else {
            self.bump();
            return Ok(InventoryChange::All);
        };
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM devices WHERE mac = $1")
            .bind(mac.to_string())
            .fetch_optional(&self.pool)
            .await?;
        {
            let mut assigned = self.assigned_set();
            if state.as_deref() == Some("assigned") {
                assigned.insert(mac);
            } else {
                assigned.remove(&mac);
            }
        }
        self.bump();
        Ok(InventoryChange::Device(mac))
    }

    /// Reloads what is kept in memory after a time of not listening.
    async fn resync(&self) -> Result<InventoryChange, InventoryError> {
        self.load_assigned().await?;
        self.bump();
        Ok(InventoryChange::All)
    }
}

async fn follow(
    inventory: Weak<Inventory>,
    url: String,
    changes: tokio::sync::broadcast::Sender<InventoryChange>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut l = sqlx::postgres::PgListener::connect(&url).await?;
            l.listen(postgres::CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        match connected {
            Ok(mut listener) => {
                // Changes committed while nobody listened are not replayed.
                let mut need_resync = true;
                loop {
                    let Some(inv) = inventory.upgrade() else {
                        return;
                    };
                    if need_resync {
                        match inv.resync().await {
                            Ok(c) => {
                                let _ = changes.send(c);
                                need_resync = false;
                                backoff = Duration::from_millis(100);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot reload the inventory after a gap; trying again");
                                break;
                            }
                        }
                    }
                    drop(inv);
                    // Wake now and then to notice an inventory dropped while all was quiet.
                    let heard =
                        tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
                    let Some(inv) = inventory.upgrade() else {
                        return;
                    };
                    match heard {
                        Err(_) => continue,
                        Ok(Ok(Some(n))) => match inv.heard(n.payload()).await {
                            Ok(c) => {
                                let _ = changes.send(c);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read a change another node made; reloading");
                                need_resync = true;
                            }
                        },
                        Ok(Ok(None)) => {
                            tracing::warn!(
                                "lost the connection that hears other nodes' changes; reconnecting"
                            );
                            need_resync = true;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "cannot hear other nodes' changes; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' changes; trying again");
            }
        }
        if inventory.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
