//! Each device's own provisioning login. Made when a device is first assigned and rendered into
//! its own file (`device.prov.user`/`device.prov.password`, gated by `.set`) so that a phone that
//! booted once with the shared credentials uses its own afterwards; adopted when the phone first
//! uses it — from then on the shared credentials no longer open that device's files, and the
//! password is forgotten (only what Digest and Basic need to check it is kept). A release
//! rotates it; the previous login stays valid until the phone uses the new one or
//! `previous_login_hours` pass, so no phone is locked out.

use super::*;
use polyprov_store::{DeviceLogin, LoginCheck};

/// A device's login as kept in memory: the digests as bytes and the user implied by the MAC —
/// about a third of [`DeviceLogin`]'s size (100,000 devices: ~15 MB instead of ~45 MB).
pub(super) struct CompactLogin {
    ha1: [u8; 16],
    sha256: [u8; 32],
    password: Option<Box<str>>,
    created_at: i64,
    adopted_at: Option<i64>,
    previous: Option<Box<Previous>>,
}

/// A rotated-out login: its HA1, SHA-256, and until when it is valid.
type Previous = ([u8; 16], [u8; 32], i64);

/// Hex to bytes; a value that does not decode checks nothing (all zero never matches).
fn bytes<const N: usize>(hex_text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    if hex::decode_to_slice(hex_text, &mut out).is_err() {
        out = [0u8; N];
    }
    out
}

impl CompactLogin {
    fn from(l: &DeviceLogin) -> CompactLogin {
        CompactLogin {
            ha1: bytes(&l.current.ha1),
            sha256: bytes(&l.current.password_sha256),
            password: l.password.as_deref().map(Into::into),
            created_at: l.created_at,
            adopted_at: l.adopted_at,
            previous: match (&l.previous, l.previous_until) {
                (Some(p), Some(until)) => {
                    Some(Box::new((bytes(&p.ha1), bytes(&p.password_sha256), until)))
                }
                _ => None,
            },
        }
    }

    fn expand(&self, mac: Mac) -> DeviceLogin {
        let check = |ha1: &[u8; 16], sha: &[u8; 32]| LoginCheck {
            user: mac.to_string(),
            ha1: hex::encode(ha1),
            password_sha256: hex::encode(sha),
        };
        DeviceLogin {
            current: check(&self.ha1, &self.sha256),
            password: self.password.as_deref().map(str::to_string),
            created_at: self.created_at,
            adopted_at: self.adopted_at,
            previous: self.previous.as_ref().map(|p| check(&p.0, &p.1)),
            previous_until: self.previous.as_ref().map(|p| p.2),
        }
    }
}

/// What the core remembers of how a device's login is being used (in memory).
#[derive(Debug, Default)]
pub(super) struct LoginUse {
    /// Its own login was rendered into a file it was served.
    served_own: bool,
    /// The warning that it keeps using the shared credentials was logged.
    warned: bool,
}

impl Core {
    /// Loads every device login into memory (at start).
    pub async fn load_logins(&self) -> Result<usize, LifecycleError> {
        let all = self.inventory.device_logins().await?;
        let n = all.len();
        *write(&self.logins) = all
            .iter()
            .map(|(m, l)| (*m, CompactLogin::from(l)))
            .collect();
        Ok(n)
    }

    /// Re-reads one device's login from the inventory (another node changed it).
    pub async fn reload_login(&self, mac: Mac) -> Result<(), LifecycleError> {
        let login = self.inventory.device_login(mac).await?;
        let mut logins = write(&self.logins);
        match login {
            Some(l) => logins.insert(mac, CompactLogin::from(&l)),
            None => logins.remove(&mac),
        };
        Ok(())
    }

    /// A device's login, if it has one (for the doors, to check what a phone presents).
    pub fn device_login(&self, mac: Mac) -> Option<DeviceLogin> {
        read(&self.logins).get(&mac).map(|l| l.expand(mac))
    }

    /// What a login presented as `user` proves, when `user` is a device's own login name (its
    /// MAC): checked by `verifies` (Basic, Digest, an FTP password — the door knows how) against
    /// the device's current login, then against its previous one while a rotation keeps it
    /// valid. A stale Digest nonce proves nothing yet (`Absent`: ask again); a wrong secret is
    /// `Invalid`. `None` when `user` is not a device login: the door checks the shared one.
    pub(crate) fn own_login(
        &self,
        user: &str,
        verifies: impl Fn(&LoginCheck) -> Result<(), crate::auth::DigestError>,
    ) -> Option<Credential> {
        use crate::auth::DigestError;
        let mac = Mac::recognise(user)?;
        let login = self.device_login(mac)?;
        if login.current.user != user {
            return None;
        }
        match verifies(&login.current) {
            Ok(()) => return Some(Credential::OwnLogin { mac, current: true }),
            Err(DigestError::Stale) => return Some(Credential::Absent),
            Err(DigestError::Invalid | DigestError::Replayed) => {}
        }
        let now = polyprov_store::inventory::now();
        let previous = login
            .previous
            .as_ref()
            .filter(|_| login.previous_until.is_some_and(|t| t >= now));
        match previous.map(&verifies) {
            Some(Ok(())) => Some(Credential::OwnLogin {
                mac,
                current: false,
            }),
            _ => Some(Credential::Invalid),
        }
    }

    /// Gives an assigned device its login if it has none.
    pub(super) async fn ensure_login(&self, mac: Mac, actor: &str) -> Result<(), LifecycleError> {
        if self.logins_enabled() && !read(&self.logins).contains_key(&mac) {
            self.new_login(mac, actor).await?;
        }
        Ok(())
    }

    /// First logins for many devices at once (those that have one keep it).
    pub(super) async fn issue_logins(
        &self,
        macs: impl Iterator<Item = Mac>,
        actor: &str,
    ) -> Result<(), LifecycleError> {
        if !self.logins_enabled() {
            return Ok(());
        }
        let new: Vec<_> = {
            let logins = read(&self.logins);
            macs.filter(|m| !logins.contains_key(m))
                .map(|m| {
                    let password = crate::auth::new_secret();
                    (
                        m,
                        crate::auth::login_check(&m.to_string(), &password),
                        password,
                    )
                })
                .collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        let made = self.inventory.issue_logins(&new, actor).await?;
        let mut logins = write(&self.logins);
        for (m, l) in made {
            logins.insert(m, CompactLogin::from(&l));
            self.metrics.login_event("issued");
        }
        Ok(())
    }

    /// A new login for a device that has one (a release): the old one becomes the previous.
    pub(super) async fn rotate_login(&self, mac: Mac, actor: &str) -> Result<(), LifecycleError> {
        if self.logins_enabled() && read(&self.logins).contains_key(&mac) {
            self.new_login(mac, actor).await?;
        }
        Ok(())
    }

    async fn new_login(&self, mac: Mac, actor: &str) -> Result<(), LifecycleError> {
        let password = crate::auth::new_secret();
        let check = crate::auth::login_check(&mac.to_string(), &password);
        let until = polyprov_store::inventory::now()
            + i64::try_from(self.previous_login_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
        let login = self
            .inventory
            .rotate_login(mac, &check, &password, until, actor)
            .await?;
        write(&self.logins).insert(mac, CompactLogin::from(&login));
        lock(&self.login_use).remove(&mac);
        self.metrics.login_event("issued");
        Ok(())
    }

    /// Forgets a removed device's login.
    pub(super) async fn forget_login(&self, mac: Mac) -> Result<(), LifecycleError> {
        if write(&self.logins).remove(&mac).is_some() {
            self.inventory.delete_login(mac).await?;
        }
        Ok(())
    }

    fn logins_enabled(&self) -> bool {
        self.auth_required && self.device_logins
    }

    /// The user and password to render into a device's file: only until the phone used them.
    pub(super) fn pending_login(&self, mac: Mac) -> Option<(String, String)> {
        let logins = read(&self.logins);
        let l = logins.get(&mac)?;
        Some((mac.to_string(), l.password.as_deref()?.to_string()))
    }

    /// Whether the device has a login it has not used yet (no copy of the password made).
    fn login_pending(&self, mac: Mac) -> bool {
        read(&self.logins)
            .get(&mac)
            .is_some_and(|l| l.password.is_some())
    }

    /// Whether the device has used its own login, so that the shared one no longer opens its
    /// files.
    pub(super) fn shared_login_retired(&self, mac: Mac) -> bool {
        read(&self.logins)
            .get(&mac)
            .is_some_and(|l| l.adopted_at.is_some())
    }

    /// A device's file that carries its own login was served to it.
    pub(super) fn served_own_login(&self, mac: Mac) {
        if self.login_pending(mac) {
            lock(&self.login_use).entry(mac).or_default().served_own = true;
        }
    }

    /// After a request for a device's own files was let in: its first use of its current login
    /// adopts it; the shared credentials used again after it was given its own are worth a
    /// warning (a provisioning URL with credentials in it wins over `device.prov.*`).
    pub(super) async fn login_used(&self, req: &Request<'_>, mac: Mac) {
        match req.credential {
            Credential::OwnLogin {
                mac: m,
                current: true,
            } if m == mac => {
                let pending = read(&self.logins)
                    .get(&mac)
                    .is_some_and(|l| l.adopted_at.is_none());
                if !pending {
                    return;
                }
                let at = polyprov_store::inventory::now();
                match self.inventory.login_adopted(mac, at).await {
                    Ok(()) => {
                        if let Some(l) = write(&self.logins).get_mut(&mac) {
                            l.adopted_at = Some(at);
                            l.password = None;
                            l.previous = None;
                        }
                        self.metrics.login_event("adopted");
                        tracing::info!(%mac, addr = %req.peer, "the phone uses its own provisioning login; the shared one no longer opens its files");
                    }
                    // Not fatal: the next request tries again.
                    Err(e) => {
                        tracing::warn!(%mac, error = %e, "could not record that the phone uses its own login")
                    }
                }
            }
            Credential::Valid => {
                // Only devices that were served their own login have an entry: the shared
                // login's every request must not grow this map.
                let mut uses = lock(&self.login_use);
                let Some(u) = uses.get_mut(&mac) else {
                    return;
                };
                if u.served_own && !u.warned && self.login_pending(mac) {
                    u.warned = true;
                    self.metrics.login_event("shared_after_own_served");
                    tracing::warn!(
                        %mac,
                        addr = %req.peer,
                        "the phone was given its own provisioning login but still uses the shared one: credentials in its provisioning URL (DHCP option 160/66) win over device.prov.user/password — serve the URL without them"
                    );
                }
            }
            _ => {}
        }
    }

    /// What the admin API shows of a device's login: never the password.
    pub fn login_state(&self, mac: Mac) -> Option<serde_json::Value> {
        let l = self.device_login(mac)?;
        let uses = lock(&self.login_use);
        let u = uses.get(&mac);
        Some(serde_json::json!({
            "user": l.current.user,
            "state": if l.adopted_at.is_some() { "adopted" } else { "pending" },
            "created_at": l.created_at,
            "adopted_at": l.adopted_at,
            "previous_valid_until": l.previous_until.filter(|_| l.previous.is_some()),
            "served_to_phone": u.is_some_and(|u| u.served_own),
            "shared_used_after_served": u.is_some_and(|u| u.warned),
        }))
    }
}

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
