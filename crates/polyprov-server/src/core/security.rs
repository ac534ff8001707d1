//! Refusals logged once, security events in the one form fail2ban reads.

use super::*;

impl Core {
    pub(super) fn log_refusal(&self, req: &Request<'_>, op: &'static str, r: &Refusal) {
        // Kept short in the log; built only when logged (a 404 is most of a boot's answers).
        let path = || req.path.chars().take(200).collect::<String>();
        let event = match r {
            Refusal::NotFound => {
                tracing::debug!(op, path = path(), addr = %req.peer, "not found");
                return;
            }
            Refusal::AuthRequired => {
                tracing::debug!(op, path = path(), addr = %req.peer, "credentials required");
                return;
            }
            Refusal::BadPath(_) => "bad_path",
            Refusal::SerialMismatch { .. } => "serial_mismatch",
            Refusal::CertificateMismatch { .. } => "certificate_mismatch",
            Refusal::WrongDeviceLogin { .. } => "wrong_device_login",
            Refusal::SharedLoginRetired { .. } => "shared_login_after_switch",
            Refusal::BadSerialTag(_) => "bad_serial_tag",
            Refusal::BadCredentials => "bad_credentials",
            _ => {
                tracing::info!(op, path = path(), addr = %req.peer, reason = %r, "request refused");
                return;
            }
        };
        self.security_event(event, req.peer, op, &path(), r);
    }

    /// Counts a security event and logs it in the one form fail2ban's filter reads
    /// (`contrib/fail2ban/polyprov.conf`), whichever door saw it.
    pub fn security_event(
        &self,
        event: &'static str,
        peer: IpAddr,
        op: &str,
        path: &str,
        reason: &dyn std::fmt::Display,
    ) {
        self.metrics.security_event(event);
        tracing::warn!(target: "polyprov::security", event, addr = %peer, op, path, reason = %reason, "security event");
        self.remember_security(activity::SecurityNote {
            at: polyprov_store::inventory::now(),
            event,
            addr: Some(peer.to_string()),
            detail: format!("{op} {path}: {reason}"),
        });
    }
}
