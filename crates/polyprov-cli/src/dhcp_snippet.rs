//! `polyprov dhcp snippet`: the DHCP server configuration that hands Poly phones this server's
//! provisioning URL, for dnsmasq, Kea, ISC dhcpd and Windows Server.
//!
//! Phones are told apart by their vendor class (option 60), which starts with Polycom's IANA
//! enterprise number 13885 (`00 00 36 3d`) in the RFC 3925 layout the vendor's guides describe
//! (domain.md §1 [V]): matching on it keeps options 66 and 160 away from PXE clients and other
//! phones. Which of 160 and 66 a phone prefers is not documented (domain.md [?]), so both are
//! given by default; `--option` chooses (a custom 128–254 for phones set to
//! `device.dhcp.bootSrvUseOpt` Custom).

use std::fmt::Write as _;

/// Polycom's enterprise number as option 60 starts with it.
pub const POLY_VENDOR_PREFIX: [u8; 4] = [0x00, 0x00, 0x36, 0x3d];

/// The DHCP servers a snippet is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Dnsmasq,
    Kea,
    Isc,
    Windows,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Dnsmasq => "dnsmasq",
            Flavour::Kea => "kea",
            Flavour::Isc => "isc",
            Flavour::Windows => "windows",
        }
    }
}

/// What the snippet hands out.
#[derive(Debug, Clone)]
pub struct Snippet<'a> {
    pub url: &'a str,
    /// Option numbers: 66, 160, or 128–254.
    pub options: &'a [u8],
    /// Match the Poly vendor class (else every client of the scope gets the options).
    pub match_class: bool,
    /// Windows: the scope (e.g. `10.0.0.0`); `None` sets the options server-wide.
    pub scope: Option<&'a str>,
}

/// Why a URL or option cannot go into a snippet.
pub fn check(url: &str, options: &[u8]) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(
        scheme.as_deref(),
        Some("http" | "https" | "ftp" | "ftps" | "tftp")
    ) {
        return Err(format!(
            "{url:?}: a provisioning URL starts with http://, https://, ftp://, ftps:// or tftp://"
        ));
    }
    // The phone's rule (domain.md §1): forward slashes only, no spaces. Quotes and backslashes
    // would also break out of each server's string syntax.
    if let Some(c) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        return Err(format!(
            "{url:?}: a provisioning URL cannot hold {c:?} (phones take no spaces or backslashes)"
        ));
    }
    if url.len() > 255 {
        return Err("a DHCP option holds at most 255 bytes: the URL is longer".into());
    }
    if options.is_empty() {
        return Err("give at least one option (66, 160, or 128-254)".into());
    }
    for o in options {
        if !(*o == 66 || *o == 160 || (128..=254).contains(o)) {
            return Err(format!(
                "option {o}: phones read the server from 66, 160 or a custom 128-254"
            ));
        }
    }
    Ok(())
}

fn hex_prefix(sep: &str) -> String {
    POLY_VENDOR_PREFIX
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// The configuration text for `flavour` (call [`check`] first).
pub fn render(flavour: Flavour, s: &Snippet<'_>) -> String {
    let mut out = String::new();
    let header = format!(
        "polyprov: Poly phones get their provisioning server from DHCP option(s) {}.\n\
         Phones are matched by option 60, which starts with Polycom's enterprise number 13885.\n\
         Credentials in the URL win over a phone's own provisioning login (see `polyprov doctor`).",
        s.options
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let comment = |out: &mut String, mark: &str| {
        for line in header.lines() {
            let _ = writeln!(out, "{mark} {line}");
        }
    };
    match flavour {
        Flavour::Dnsmasq => {
            comment(&mut out, "#");
            let tag = if s.match_class {
                let _ = writeln!(out, "dhcp-match=set:polyphone,60,{}", hex_prefix(":"));
                "tag:polyphone,"
            } else {
                ""
            };
            for o in s.options {
                let _ = writeln!(out, "dhcp-option={tag}{o},\"{}\"", s.url);
            }
        }
        Flavour::Kea => {
            // A whole configuration (what `kea-dhcp4 -t` checks); merge its option-def and
            // client-classes into yours.
            let mut defs = Vec::new();
            let mut data = Vec::new();
            for o in s.options {
                if *o == 66 {
                    data.push(serde_json::json!({ "name": "tftp-server-name", "data": s.url }));
                } else {
                    let name = format!("poly-provisioning-{o}");
                    defs.push(serde_json::json!({ "name": name, "code": o, "type": "string", "space": "dhcp4" }));
                    data.push(
                        serde_json::json!({ "name": name, "data": s.url, "always-send": true }),
                    );
                }
            }
            let mut dhcp4 = serde_json::json!({ "option-def": defs });
            if s.match_class {
                dhcp4["client-classes"] = serde_json::json!([{
                    "name": "POLY_PHONE",
                    "test": format!("substring(option[60].hex,0,4) == 0x{}", hex_prefix("")),
                    "option-data": data,
                }]);
            } else {
                dhcp4["option-data"] = serde_json::Value::Array(data);
            }
            let text = serde_json::to_string_pretty(&serde_json::json!({ "Dhcp4": dhcp4 }))
                .unwrap_or_default();
            comment(&mut out, "//");
            out.push_str(&text);
            out.push('\n');
        }
        Flavour::Isc => {
            comment(&mut out, "#");
            for o in s.options.iter().filter(|o| **o != 66) {
                let _ = writeln!(out, "option poly-provisioning-{o} code {o} = text;");
            }
            let lines: Vec<String> = s
                .options
                .iter()
                .map(|o| {
                    if *o == 66 {
                        format!("option tftp-server-name \"{}\";", s.url)
                    } else {
                        format!("option poly-provisioning-{o} \"{}\";", s.url)
                    }
                })
                .collect();
            if s.match_class {
                let _ = writeln!(
                    out,
                    "class \"poly-phone\" {{\n  match if substring(option vendor-class-identifier, 0, 4) = {};",
                    hex_prefix(":")
                );
                for l in &lines {
                    let _ = writeln!(out, "  {l}");
                }
                out.push_str("}\n");
            } else {
                for l in &lines {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
        Flavour::Windows => {
            comment(&mut out, "#");
            out.push_str(
                "# Windows Server matches vendor classes whole, not by their first bytes: these options go to\n\
                 # every client of the scope (or of the server), so keep phones in a scope of their own.\n",
            );
            let target = s
                .scope
                .map(|sc| format!(" -ScopeId {sc}"))
                .unwrap_or_default();
            for o in s.options {
                if *o != 66 {
                    let _ = writeln!(
                        out,
                        "Add-DhcpServerv4OptionDefinition -OptionId {o} -Name 'Poly provisioning URL ({o})' -Type String -ErrorAction SilentlyContinue"
                    );
                }
                let _ = writeln!(
                    out,
                    "Set-DhcpServerv4OptionValue{target} -OptionId {o} -Value '{}'",
                    s.url
                );
            }
        }
    }
    out
}

/// `polyprov dhcp snippet`.
pub fn run(a: &crate::args::DhcpSnippetArgs) -> Result<(), crate::client::CliError> {
    use crate::client::{CliError, Exit};
    let flavour = if a.dnsmasq {
        Flavour::Dnsmasq
    } else if a.kea {
        Flavour::Kea
    } else if a.isc {
        Flavour::Isc
    } else {
        Flavour::Windows
    };
    let url = match &a.url {
        Some(u) => u.clone(),
        None => {
            let host = match &a.host {
                Some(h) => h.clone(),
                None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        CliError::new(
                            Exit::Usage,
                            "this machine's host name is unknown: give --host or --url",
                        )
                    })?,
            };
            let pw_file = a.data.join("provisioning.password");
            match std::fs::read_to_string(&pw_file) {
                Ok(pw) => format!("http://PlcmSpIp:{}@{host}/", pw.trim()),
                Err(e) => {
                    return Err(CliError::new(
                        Exit::Usage,
                        format!(
                            "{}: {e} (start `polyprov serve --data {}` once, or give --url)",
                            pw_file.display(),
                            a.data.display()
                        ),
                    ));
                }
            }
        }
    };
    check(&url, &a.options).map_err(|e| CliError::new(Exit::Usage, e))?;
    if let Some(scope) = &a.scope
        && scope.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(CliError::new(
            Exit::Usage,
            format!("--scope {scope:?}: a scope is named by its IPv4 network address"),
        ));
    }
    let text = render(
        flavour,
        &Snippet {
            url: &url,
            options: &a.options,
            match_class: !a.all_clients,
            scope: a.scope.as_deref(),
        },
    );
    if a.json {
        return crate::client::print_json(&serde_json::json!({
            "server": flavour.name(), "url": url, "options": a.options,
            "vendor_class_match": !a.all_clients, "snippet": text,
        }));
    }
    crate::out::outln!("{}", text.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://PlcmSpIp:secret@prov.example.com/";

    #[test]
    fn urls_a_phone_or_a_dhcp_server_would_choke_on_are_refused() {
        assert!(check(URL, &[160, 66]).is_ok());
        for bad in [
            "prov.example.com",
            "http://a b/",
            "http://a\"b/",
            "http://a\\b/",
            "gopher://x/",
        ] {
            assert!(check(bad, &[160]).is_err(), "{bad}");
        }
        assert!(check(URL, &[]).is_err());
        assert!(check(URL, &[67]).is_err());
        assert!(check(URL, &[127]).is_err());
        assert!(check(URL, &[150]).is_ok());
        assert!(check(URL, &[200]).is_ok());
        assert!(check(&format!("http://{}/", "a".repeat(300)), &[160]).is_err());
    }

    #[test]
    fn each_flavour_matches_the_poly_vendor_class_and_hands_out_the_url() {
        let s = Snippet {
            url: URL,
            options: &[160, 66],
            match_class: true,
            scope: Some("10.0.0.0"),
        };
        let d = render(Flavour::Dnsmasq, &s);
        assert!(d.contains("dhcp-match=set:polyphone,60,00:00:36:3d"), "{d}");
        assert!(d.contains(&format!("dhcp-option=tag:polyphone,160,\"{URL}\"")));
        let k = render(Flavour::Kea, &s);
        let json: serde_json::Value = serde_json::from_str(
            &k.lines()
                .filter(|l| !l.starts_with("//"))
                .collect::<String>(),
        )
        .unwrap();
        assert_eq!(
            json["Dhcp4"]["client-classes"][0]["test"],
            "substring(option[60].hex,0,4) == 0x0000363d"
        );
        let i = render(Flavour::Isc, &s);
        assert!(i.contains("option poly-provisioning-160 code 160 = text;"));
        assert!(i.contains("= 00:00:36:3d;"));
        let w = render(Flavour::Windows, &s);
        assert!(w.contains(&format!(
            "Set-DhcpServerv4OptionValue -ScopeId 10.0.0.0 -OptionId 160 -Value '{URL}'"
        )));
        let all = render(
            Flavour::Dnsmasq,
            &Snippet {
                match_class: false,
                ..s
            },
        );
        assert!(!all.contains("dhcp-match") && all.contains("dhcp-option=66,"));
    }
}
