//! The phone listening for a `NOTIFY`: how its settings say to check one, and what it does
//! with one it accepted.

use super::PhoneState;
use polyprov_sip::phone::{Notified, Validation};

/// Request-validation entries read (`voIpProt.SIP.requestValidation.1…N`).
const VALIDATION_ENTRIES: u32 = 10;

impl PhoneState {
    /// How the phone checks a `NOTIFY` for `check-sync`: Digest when a
    /// `voIpProt.SIP.requestValidation.N` entry names the `NOTIFY` request with method `digest`
    /// or `both` (and, if it lists events, `check-sync` among them), in the realm
    /// `voIpProt.SIP.requestValidation.digest.realm` (`PolycomSPIP` by default) with line 1's
    /// credentials. `source` validation (the sender must be the line's server) is not emulated.
    pub fn notify_validation(&self) -> Validation {
        let e = self.effective();
        let get = |k: &str| {
            e.get(k)
                .and_then(|r| r.value.clone())
                .filter(|v| !v.is_empty())
        };
        let asks_digest = (1..=VALIDATION_ENTRIES).any(|n| {
            let base = format!("voIpProt.SIP.requestValidation.{n}");
            let request = get(&format!("{base}.request")).unwrap_or_default();
            let method = get(&format!("{base}.method")).unwrap_or_default();
            let events: Vec<String> = (1..=VALIDATION_ENTRIES)
                .filter_map(|m| get(&format!("{base}.request.{m}.event")))
                .collect();
            request
                .split(',')
                .any(|r| r.trim().eq_ignore_ascii_case("NOTIFY"))
                && matches!(method.to_ascii_lowercase().as_str(), "digest" | "both")
                && (events.is_empty()
                    || events
                        .iter()
                        .any(|ev| ev.eq_ignore_ascii_case("check-sync")))
        });
        if !asks_digest {
            return Validation::None;
        }
        let address_user = get("reg.1.address")
            .map(|a| a.split('@').next().unwrap_or_default().to_string())
            .filter(|u| !u.is_empty());
        Validation::Digest {
            realm: get("voIpProt.SIP.requestValidation.digest.realm")
                .unwrap_or_else(|| "PolycomSPIP".into()),
            user: get("reg.1.auth.userId")
                .or(address_user)
                .unwrap_or_default(),
            password: get("reg.1.auth.password").unwrap_or_default(),
        }
    }

    /// Whether an accepted check-sync reboots the phone (else it reads its configuration again):
    /// `voIpProt.SIP.specialEvent.checkSync.alwaysReboot="1"`, or `;reboot=true` where the
    /// `checksync_reboot_param` assumption says the phone honours it.
    pub fn reboots_on(&self, notified: &Notified) -> bool {
        let always = self
            .effective()
            .get("voIpProt.SIP.specialEvent.checkSync.alwaysReboot")
            .and_then(|r| r.value.clone())
            .is_some_and(|v| v.trim() == "1");
        always || (self.assumptions.checksync_reboot_param && notified.asks_reboot())
    }
}
