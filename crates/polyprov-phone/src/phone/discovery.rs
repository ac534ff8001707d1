//! How the phone finds its provisioning server.

use super::PhoneState;

impl PhoneState {
    /// Finds the provisioning server as the phone does: per `device.dhcp.bootSrvUseOpt`, then the
    /// server stored in flash, then a ZTP-style redirect when ZTP is enabled.
    pub fn discover(&self) -> Option<(String, String)> {
        let flash = |k: &str| self.flash.get(k).map(String::as_str).unwrap_or_default();
        let dhcp = |opt: u8| {
            self.network
                .dhcp
                .get(&opt)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v.clone(), format!("DHCP option {opt}")))
        };
        let custom = flash("device.dhcp.bootSrvOpt").parse::<u8>().ok();
        let static_server = || {
            Some(flash("device.prov.serverName"))
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_string(), "device.prov.serverName in flash".to_string()))
        };
        let from_dhcp = match flash("device.dhcp.bootSrvUseOpt") {
            "2" | "Static" => return static_server(),
            "1" | "Custom" => custom.and_then(dhcp),
            "3" | "CustomAndDefault" => custom.and_then(dhcp).or_else(|| dhcp(66)),
            _ => self
                .assumptions
                .default_dhcp_options
                .iter()
                .find_map(|o| dhcp(*o)),
        };
        from_dhcp.or_else(static_server).or_else(|| {
            let ztp_on = !matches!(flash("device.prov.ztpEnabled"), "0" | "false");
            self.network
                .ztp
                .clone()
                .filter(|_| ztp_on)
                .map(|s| (s, "ZTP redirect".into()))
        })
    }
}
