//! Provisioning server strings as phones accept them: an IP, a host name or a URL
//! `scheme://user:pass@host[:port]/dir/[file.cfg]` (domain.md §1).

use std::fmt;

/// A provisioning server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `http`, `https`, `ftp`, `ftps`, `tftp`.
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// Directory, without leading or trailing `/` (may be empty).
    pub dir: String,
    /// A master file named in the URL (`…/lab.cfg`), used first when at least 5 characters.
    pub file: Option<String>,
}

/// Why a server string is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a provisioning server address: {1}")]
pub struct UrlError(pub String, pub &'static str);

impl ServerUrl {
    /// Parses a server string. Without a scheme the phone's default, FTP, is assumed.
    pub fn parse(s: &str) -> Result<ServerUrl, UrlError> {
        let s = s.trim();
        if s.is_empty() || s.contains(' ') || s.contains('\\') {
            return Err(UrlError(s.into(), "empty, or has spaces or back-slashes"));
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((sc, rest)) => (sc.to_ascii_lowercase(), rest),
            None => ("ftp".to_string(), s),
        };
        if !["http", "https", "ftp", "ftps", "tftp"].contains(&scheme.as_str()) {
            return Err(UrlError(
                s.into(),
                "the scheme must be http, https, ftp, ftps or tftp",
            ));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                let port = p
                    .parse()
                    .map_err(|_| UrlError(s.into(), "the port is not a number"))?;
                (h.to_string(), Some(port))
            }
            _ => (hostport.to_string(), None),
        };
        if host.is_empty() {
            return Err(UrlError(s.into(), "no host"));
        }
        let path = path.trim_matches('/');
        let (dir, file) = match path.rsplit_once('/') {
            Some((d, f)) if f.ends_with(".cfg") => (d.to_string(), Some(f.to_string())),
            None if path.ends_with(".cfg") => (String::new(), Some(path.to_string())),
            _ => (path.to_string(), None),
        };
        Ok(ServerUrl {
            scheme,
            user,
            password,
            host,
            port,
            dir,
            file,
        })
    }

    /// A file's path in the server's directory, without a leading `/` (`polycom/0004f2aa814c.cfg`).
    pub fn file_path(&self, name: &str) -> String {
        let name = name.trim_start_matches('/');
        if self.dir.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    /// The URL of a file in the server's directory (no credentials).
    pub fn file_url(&self, name: &str) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}/{}",
            self.scheme,
            self.host,
            self.file_path(name)
        )
    }
}

impl fmt::Display for ServerUrl {
    /// The address with the password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let file = self.file.as_deref().unwrap_or_default();
        let dir = if self.dir.is_empty() {
            String::new()
        } else {
            format!("{}/", self.dir)
        };
        write!(f, "{}://{user}{}{port}/{dir}{file}", self.scheme, self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_phones_accept() {
        let u = ServerUrl::parse("http://PlcmSpIp:pw@127.0.0.1:8080/polycom/").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.user.as_deref(), u.password.as_deref()),
            ("http", Some("PlcmSpIp"), Some("pw"))
        );
        assert_eq!(
            (u.host.as_str(), u.port, u.dir.as_str(), u.file.as_deref()),
            ("127.0.0.1", Some(8080), "polycom", None)
        );
        assert_eq!(
            u.file_url("0004f2aa814c.cfg"),
            "http://127.0.0.1:8080/polycom/0004f2aa814c.cfg"
        );
        let u = ServerUrl::parse("prov.example.com").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str()),
            ("ftp", "prov.example.com")
        );
        let u = ServerUrl::parse("https://h/lab/site-master.cfg").unwrap();
        assert_eq!(
            (u.dir.as_str(), u.file.as_deref()),
            ("lab", Some("site-master.cfg"))
        );
        assert_eq!(u.to_string(), "https://h/lab/site-master.cfg");
        for bad in [
            "",
            "gopher://h/",
            "http://:80/",
            "http://h:x/",
            "http://h/a b",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
