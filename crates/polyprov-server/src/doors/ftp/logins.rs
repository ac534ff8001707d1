//! FTP logins: the provisioning credentials reach per-device files; the phones' factory login
//! (`PlcmSpIp`, configurable, can be turned off) reaches shared files only, unless provisioning
//! auth is off. Anything else is refused and logged as a security event.

use crate::auth::ProvisioningCredentials;
use crate::core::{Core, Credential};
use crate::settings::FtpSettings;
use async_trait::async_trait;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

/// A logged-in FTP session: who it is and what its login proves.
#[derive(Debug, Clone)]
pub struct FtpUser {
    login: String,
    pub(super) credential: Credential,
    pub(super) peer: IpAddr,
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.login)
    }
}

impl UserDetail for FtpUser {}

/// Which logins the door accepts, and what each proves.
pub struct Logins {
    core: Arc<Core>,
    /// The provisioning credentials (absent when `[provisioning] auth = "none"`).
    provisioning: Option<ProvisioningCredentials>,
    /// The factory user and password, when accepted.
    factory: Option<(String, String)>,
}

impl fmt::Debug for Logins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logins")
            .field("provisioning", &self.provisioning.is_some())
            .field("factory", &self.factory.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Logins {
    /// The logins `settings` allow, next to the provisioning credentials.
    pub fn new(
        core: Arc<Core>,
        provisioning: Option<ProvisioningCredentials>,
        settings: &FtpSettings,
    ) -> Logins {
        let factory = settings.factory_login.then(|| {
            (
                settings.factory_user.clone(),
                settings.factory_password.clone(),
            )
        });
        Logins {
            core,
            provisioning,
            factory,
        }
    }
}

/// Separates the parts of a principal's name: libunftp hands the provider only that name.
const SEP: char = '\u{1f}';

#[async_trait]
impl Authenticator for Logins {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let password = creds.password.as_deref().unwrap_or("");
        // A device's own login (user = its MAC), when provisioning credentials are on.
        let own = self.provisioning.as_ref().and_then(|_| {
            self.core.own_login(username, |check| {
                crate::auth::basic_for(check, username, password)
            })
        });
        let credential = if let Some(c) = own.filter(|c| *c != Credential::Invalid) {
            c
        } else if self
            .provisioning
            .as_ref()
            .is_some_and(|p| p.verify(username, password))
        {
            Credential::Valid
        } else if self
            .factory
            .as_ref()
            .is_some_and(|(u, p)| u == username && p == password)
        {
            Credential::Absent
        } else {
            let user: String = username.chars().take(64).collect();
            self.core.security_event(
                "bad_credentials",
                creds.source_ip,
                "ftp_login",
                &user,
                &"wrong FTP user or password",
            );
            return Err(AuthenticationError::BadPassword);
        };
        let tag = match credential {
            Credential::Valid => "device".to_string(),
            Credential::OwnLogin { mac, current } => {
                format!("own-{mac}-{}", if current { "current" } else { "previous" })
            }
            _ => "factory".to_string(),
        };
        Ok(Principal {
            username: format!("{tag}{SEP}{}{SEP}{username}", creds.source_ip),
        })
    }
}

#[async_trait]
impl UserDetailProvider for Logins {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let mut parts = principal.username.splitn(3, SEP);
        let (Some(tag), Some(peer), Some(login)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(UserDetailError::Generic("malformed principal".into()));
        };
        let peer = peer
            .parse()
            .map_err(|_| UserDetailError::Generic("malformed principal".into()))?;
        let credential = match tag.strip_prefix("own-").map(|t| t.split_once('-')) {
            Some(Some((mac, which))) => Credential::OwnLogin {
                mac: mac
                    .parse()
                    .map_err(|_| UserDetailError::Generic("malformed principal".into()))?,
                current: which == "current",
            },
            _ if tag == "device" => Credential::Valid,
            _ => Credential::Absent,
        };
        Ok(FtpUser {
            login: login.to_string(),
            credential,
            peer,
        })
    }
}
