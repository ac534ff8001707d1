//! Console sessions: a random id in a cookie, a CSRF token each, in memory (a restart signs
//! everyone out), at most [`MAX`] at once, ended after [`IDLE`] without a request.

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "polyprov_session";
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Most sessions at once; past it the one idle longest ends.
const MAX: usize = 1000;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// Every form carries it; a POST without it is refused.
    pub csrf: String,
}

impl Session {
    /// Whether a form's token is this session's (compared without an early exit).
    pub fn csrf_ok(&self, given: &str) -> bool {
        crate::auth::constant_time_eq(given.as_bytes(), self.csrf.as_bytes())
    }
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, (Session, Instant)>>,
}

impl Sessions {
    /// A new session; its id goes in the cookie.
    pub fn create(&self) -> String {
        let id = crate::auth::new_secret();
        let session = Session {
            id: id.clone(),
            csrf: crate::auth::new_secret(),
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, seen)| now.duration_since(*seen) < IDLE);
        if map.len() >= MAX
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), (session, now));
        id
    }

    /// The session a request's cookie names, if it is live (and marks it used).
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))?
            .to_string();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (session, seen) = map.get_mut(&id)?;
        if seen.elapsed() >= IDLE {
            map.remove(&id);
            return None;
        }
        *seen = Instant::now();
        Some(session.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_names_a_live_session_until_it_is_removed() {
        let s = Sessions::default();
        let id = s.create();
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        let session = s.get(&h).unwrap();
        assert!(session.csrf_ok(&session.csrf) && !session.csrf_ok("guess"));
        s.remove(&id);
        assert!(s.get(&h).is_none());
        h.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}=made-up").parse().unwrap(),
        );
        assert!(s.get(&h).is_none());
    }
}
