//! The console's pages as HTML strings. Every value from the inventory or a phone goes through
//! [`esc`]; there is no script on any page.

use super::FleetQuery;
use super::sessions::Session;
use polyprov_store::inventory::{AuditEntry, Device, DeviceState};
use polyprov_store::uploads::UploadInfo;
use std::fmt::Write as _;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value or path segment.
pub fn url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn layout(title: &str, session: Option<&Session>, main: &str) -> String {
    let nav = match session {
        Some(s) => format!(
            r#"<nav aria-label="Console"><span><a href="/console/devices">Fleet</a> · <a href="/console/activity">Activity</a> · <a href="/console/profiles">Profiles</a> · <a href="/console/site">Site defaults</a> · <a href="/console/root">Boot root</a></span>
<form method="post" action="/console/signout" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form></nav>"#,
            esc(&s.csrf)
        ),
        None => String::new(),
    };
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} — polyprov</title><link rel="stylesheet" href="/console/style.css"></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><span class="brand">polyprov</span>{nav}</header>
<main id="main">{main}</main></body></html>"##,
        esc(title)
    )
}

/// A signed-in page of the console.
pub fn layout_page(title: &str, session: &Session, main: &str) -> String {
    layout(title, Some(session), main)
}

/// The sign-in form, with an error line after a wrong token.
pub fn signin(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    layout(
        "Sign in",
        None,
        &format!(
            r#"<h1>Sign in</h1>{error}
<form method="post" action="/console/signin" class="card">
<label for="token">Admin token <small>(in DATA/admin.token)</small></label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form>"#
        ),
    )
}

/// The activity page around its live part; the script follows the stream, and without script
/// the page reloads itself.
pub fn activity(session: &Session, live: &str) -> String {
    let page = layout(
        "Activity",
        Some(session),
        &format!(
            r#"<h1>Activity</h1><p id="live-status" role="status">Updated when the page loads; with script, every few seconds.</p>
<section id="live" aria-live="off">{live}</section><script src="/console/activity.js" defer></script>"#
        ),
    );
    page.replacen(
        "</head>",
        r#"<noscript><meta http-equiv="refresh" content="10"></noscript></head>"#,
        1,
    )
}

/// A page with one message.
pub fn message(title: &str, text: &str) -> String {
    layout(
        title,
        None,
        &format!(
            r#"<h1>{}</h1><p>{}</p><p><a href="/console/devices">Back to the fleet</a></p>"#,
            esc(title),
            esc(text)
        ),
    )
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map(esc).unwrap_or_else(|| "—".into())
}

pub fn when(t: Option<i64>) -> String {
    match t {
        Some(t) => {
            let now = polyprov_store::inventory::now();
            let ago = (now - t).max(0);
            let text = match ago {
                0..=59 => format!("{ago} s ago"),
                60..=3599 => format!("{} min ago", ago / 60),
                3600..=86_399 => format!("{} h ago", ago / 3600),
                _ => format!("{} d ago", ago / 86_400),
            };
            format!(r#"<time datetime="{t}">{text}</time>"#)
        }
        None => "never".into(),
    }
}

/// The fleet: search, state filter, one page of devices.
pub fn fleet(
    session: &Session,
    q: &FleetQuery,
    devices: &[Device],
    counts: &[(DeviceState, i64)],
    (models, profiles): (&[String], &[String]),
    more: bool,
) -> String {
    let mut m = String::from("<h1>Fleet</h1>");
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let _ = write!(m, "<p class=\"counts\">{total} devices");
    for (state, n) in counts {
        let _ = write!(m, " · {n} {}", state.as_str());
    }
    m.push_str("</p>");
    let select = |id: &str, label: &str, current: &str, values: &[&str]| {
        let mut out = format!(
            r#"<label for="{id}">{label}</label><select id="{id}" name="{id}"><option value="">any</option>"#
        );
        for v in values {
            let sel = if current == *v { " selected" } else { "" };
            let _ = write!(out, r#"<option value="{v}"{sel}>{v}</option>"#, v = esc(v));
        }
        out.push_str("</select>");
        out
    };
    let by_seen = q.sort == "seen";
    let _ = write!(
        m,
        r#"<form method="get" action="/console/devices" class="search" role="search">
<label for="q">MAC (any spelling, or part)</label><input id="q" name="q" value="{}">
{}{}{}
<label for="sort">Order</label><select id="sort" name="sort"><option value="mac">by MAC</option><option value="seen"{}>last seen first</option></select>
<button type="submit">Search</button></form>"#,
        esc(&q.q),
        select(
            "state",
            "State",
            &q.state,
            &["unassigned", "assigned", "released", "retired"]
        ),
        select(
            "model",
            "Model",
            &q.model,
            &models.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        select(
            "profile",
            "Profile",
            &q.profile,
            &profiles.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        if by_seen { " selected" } else { "" },
    );
    let _ = write!(
        m,
        r#"<table><caption>Devices, {}</caption><thead><tr><th scope="col">MAC</th><th scope="col">State</th><th scope="col">Model</th><th scope="col">Firmware</th><th scope="col">Last seen</th><th scope="col">Address</th><th scope="col">Last file</th><th scope="col">Reset suspected</th></tr></thead><tbody>"#,
        if by_seen { "last seen first" } else { "by MAC" }
    );
    if devices.is_empty() {
        m.push_str(r#"<tr><td colspan="8">No device matches.</td></tr>"#);
    }
    for d in devices {
        let _ = write!(
            m,
            r#"<tr><th scope="row"><a href="/console/devices/{mac}">{mac}</a></th><td><span class="state {state}">{state}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            opt(&d.model),
            opt(&d.firmware),
            when(d.last_seen),
            opt(&d.last_addr),
            opt(&d.last_fetch),
            d.reset_suspected_at.map_or("—".into(), |t| when(Some(t))),
            mac = esc(&d.mac),
            state = d.state.as_str(),
        );
    }
    m.push_str("</tbody></table>");
    if more && let Some(last) = devices.last() {
        let after = if by_seen {
            format!("{}-{}", last.last_seen.unwrap_or(0), last.mac)
        } else {
            last.mac.clone()
        };
        let _ = write!(
            m,
            r#"<p><a rel="next" href="/console/devices?q={}&amp;state={}&amp;model={}&amp;profile={}&amp;sort={}&amp;after={}">Next page</a></p>"#,
            url(&q.q),
            url(&q.state),
            url(&q.model),
            url(&q.profile),
            url(&q.sort),
            url(&after)
        );
    }
    layout("Fleet", Some(session), &m)
}

/// What the device page shows beyond the device itself.
pub struct DeviceView<'a> {
    pub history: &'a [AuditEntry],
    pub uploads: &'a [UploadInfo],
    /// The doctor's analysis (`None` when it could not be made).
    pub analysis: Option<&'a crate::doctor::Analysis>,
    pub quarantine: &'a [polyprov_store::uploads::QuarantineSet],
    /// The effective configuration's filter.
    pub filter: &'a str,
    /// Keystrokes in the key labels' mode order rather than the vendor FAQ's.
    pub key_labels: bool,
}

/// A device: facts, assignment, uploads, what a reset would bring back, drift, actions,
/// audit timeline, lifecycle, reset guide.
pub fn device(session: &Session, d: &Device, view: &DeviceView<'_>, profiles: &[String]) -> String {
    let history = view.history;
    let uploads = view.uploads;
    let mut m = format!(
        r#"<h1>{mac} <span class="state {state}">{state}</span></h1><dl class="facts">"#,
        mac = esc(&d.mac),
        state = d.state.as_str()
    );
    let rows: [(&str, String); 9] = [
        ("Profile", opt(&d.assignment.profile)),
        ("Model", opt(&d.model)),
        ("Firmware", opt(&d.firmware)),
        ("Last seen", when(d.last_seen)),
        ("Address", opt(&d.last_addr)),
        ("Last file", opt(&d.last_fetch)),
        ("Last upload", opt(&d.last_upload)),
        ("User-Agent", opt(&d.user_agent)),
        (
            "Admin password",
            if d.assignment.admin_password.is_some() {
                "set (not shown)".into()
            } else {
                "—".into()
            },
        ),
    ];
    for (k, v) in rows {
        let _ = write!(m, "<dt>{k}</dt><dd>{v}</dd>");
    }
    m.push_str("</dl>");
    if d.state != DeviceState::Retired {
        let mut options = String::from(r#"<option value="">none</option>"#);
        for p in profiles {
            let sel = if d.assignment.profile.as_deref() == Some(p.as_str()) {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                options,
                r#"<option value="{p}"{sel}>{p}</option>"#,
                p = esc(p)
            );
        }
        // Secrets (line passwords) are not put on the page: `<kept>` stands for the value
        // held, and saving it keeps that value.
        let params: String = d
            .assignment
            .params
            .iter()
            .map(|(k, v)| {
                if polyprov_model::lint::is_secret(k) && !v.is_empty() {
                    format!("{k}={}\n", super::KEPT)
                } else {
                    format!("{k}={v}\n")
                }
            })
            .collect();
        let _ = write!(
            m,
            r#"<h2>Assignment</h2><form method="post" action="/console/devices/{mac}/assignment" class="card wide" id="assignment">
<input type="hidden" name="csrf" value="{csrf}">
<label for="profile">Profile</label><select id="profile" name="profile">{options}</select>
<label for="admin-password">Admin password <small>(empty: keep the one it has)</small></label><input id="admin-password" name="admin_password" type="password" autocomplete="new-password">
<label for="dparams">Its own parameters, one NAME=VALUE a line (they win over the profile; <code>&lt;kept&gt;</code> keeps a secret as it is)</label>
<textarea id="dparams" name="params" rows="8" spellcheck="false">{params}</textarea>
<button type="submit">Save the assignment</button></form>"#,
            mac = esc(&d.mac),
            csrf = esc(&session.csrf),
            params = esc(&params)
        );
    }
    m.push_str("<h2>Uploads</h2>");
    if uploads.is_empty() {
        m.push_str("<p>None.</p>");
    } else {
        m.push_str("<ul>");
        for u in uploads {
            let _ = write!(
                m,
                "<li>{} v{} — {} bytes, {}</li>",
                esc(&u.kind),
                u.version,
                u.size,
                when(Some(u.modified))
            );
        }
        m.push_str("</ul>");
    }
    if let Some(a) = view.analysis {
        m.push_str(&super::device_views::findings(&d.mac, &a.report));
        m.push_str(&super::device_views::drift(session, d, a));
        m.push_str(&super::device_views::effective(&d.mac, a, view.filter));
    }
    let _ = write!(
        m,
        r#"<h2>Act on the phone</h2><form method="post" action="/console/devices/{mac}/action" class="card">
<input type="hidden" name="csrf" value="{csrf}">
<label for="act">Action</label><select id="act" name="action"><option value="resync">Resync (re-read the configuration)</option><option value="reboot">Reboot</option><option value="factory-reset">Factory reset (releases it first; needs the phone's REST API)</option></select>
<label for="act-reason">Reason (kept in the audit log; needed for a factory reset)</label><input id="act-reason" name="reason" maxlength="500">
<label class="check"><input type="checkbox" name="confirm" value="yes" required> Send it to {mac}</label>
<button type="submit">Send</button></form>"#,
        mac = esc(&d.mac),
        csrf = esc(&session.csrf)
    );
    m.push_str(r#"<h2>Audit timeline</h2><ol class="timeline">"#);
    for e in history.iter().rev() {
        let _ = write!(
            m,
            r#"<li><strong class="action">{}</strong> by {} {}{}</li>"#,
            esc(&e.action),
            esc(&e.actor),
            when(Some(e.at)),
            e.detail
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| format!(": {}", esc(t)))
                .unwrap_or_default()
        );
    }
    m.push_str("</ol>");
    m.push_str(&super::device_views::lifecycle(
        session,
        d,
        view.quarantine,
        profiles,
    ));
    if let Ok(mac) = d.mac.parse() {
        m.push_str(&super::device_views::guide(d, mac, view.key_labels));
    }
    layout(&d.mac, Some(session), &m)
}

/// A remote action job: each phone's result; refreshes itself every 2 s while running.
pub fn job(session: &Session, j: &crate::actions::Job) -> String {
    let mut m = format!(
        "<h1>{} — {}</h1><p>{} phones: {} sent, {} acknowledged, {} came back, {} failed.</p>",
        esc(j.action.as_str()),
        esc(j.state),
        j.counts.phones,
        j.counts.sent,
        j.counts.acknowledged,
        j.counts.came_back,
        j.counts.failed
    );
    m.push_str(r#"<table><caption>Phones</caption><thead><tr><th scope="col">MAC</th><th scope="col">State</th><th scope="col">Sent to</th><th scope="col">Answer</th><th scope="col">Came back</th></tr></thead><tbody>"#);
    for r in &j.results {
        let answer = match (&r.error, &r.answer) {
            (Some(e), _) => format!("not sent: {}", esc(e)),
            (None, Some(a)) => esc(&a.detail),
            (None, None) => "—".into(),
        };
        let back = match &r.came_back {
            Some(c) => format!(
                "after {:.1} s{}",
                c.after_ms as f64 / 1000.0,
                match c.rebooted {
                    Some(true) => ", rebooted",
                    Some(false) => ", without rebooting",
                    None => "",
                }
            ),
            None => "—".into(),
        };
        let _ = write!(
            m,
            r#"<tr><th scope="row"><a href="/console/devices/{mac}">{mac}</a></th><td>{}</td><td>{}</td><td>{answer}</td><td>{back}</td></tr>"#,
            esc(r.state),
            r.target.as_deref().map(esc).unwrap_or_else(|| "—".into()),
            mac = esc(&r.mac),
        );
    }
    m.push_str("</tbody></table>");
    let page = layout(&format!("{} job", j.action.as_str()), Some(session), &m);
    if j.state == "running" {
        page.replacen(
            "<head>",
            r#"<head><meta http-equiv="refresh" content="2">"#,
            1,
        )
    } else {
        page
    }
}

/// Every profile, with a link to edit it and a form to make a new one.
pub fn profiles(session: &Session, list: &[polyprov_store::inventory::Profile]) -> String {
    let mut m = String::from("<h1>Profiles</h1><ul>");
    if list.is_empty() {
        m.push_str("<li>None yet.</li>");
    }
    for p in list {
        let _ = write!(
            m,
            r#"<li><a href="/console/profiles/{n}">{n}</a> — {} parameters</li>"#,
            p.params.len(),
            n = esc(&p.name)
        );
    }
    m.push_str(r#"</ul><form method="get" action="/console/profiles/new" class="search" id="new-profile"><label for="pname">New profile</label><input id="pname" name="name" pattern="[A-Za-z0-9._-]{1,64}" required><button type="submit">Create</button></form>"#);
    layout("Profiles", Some(session), &m)
}

/// A set of parameters (a profile, the site defaults) as `NAME=VALUE` lines with the linter's
/// findings, who it applies to, Check and Save (posted to `action`).
pub struct Editor<'a> {
    pub title: &'a str,
    pub action: &'a str,
    pub applies: &'a str,
    /// The fleet page listing the devices it applies to.
    pub devices: &'a str,
    /// What the text checked changes against what is saved, one line a parameter.
    pub changes: &'a [String],
    pub text: &'a str,
    pub findings: &'a [super::ProfileFinding],
    pub status: Option<&'a str>,
}

pub fn params_editor(session: &Session, e: &Editor<'_>) -> String {
    let mut m = format!(
        r#"<h1>{}</h1><p>{} <a href="{}">See them</a>.</p>"#,
        esc(e.title),
        esc(e.applies),
        esc(e.devices)
    );
    if let Some(st) = e.status {
        let _ = write!(m, r#"<p class="status" role="status">{}</p>"#, esc(st));
    }
    if !e.changes.is_empty() {
        m.push_str(r#"<h2>What this changes for them</h2><ul class="changes" id="changes">"#);
        for c in e.changes {
            let _ = write!(m, "<li><code>{}</code></li>", esc(c));
        }
        m.push_str("</ul>");
    }
    if !e.findings.is_empty() {
        m.push_str(r#"<h2>Findings</h2><ul class="findings" id="findings">"#);
        for (sev, at, msg) in e.findings {
            let _ = write!(
                m,
                r#"<li class="{sev}"><span class="kind">{sev}</span> <code>{}</code> {}</li>"#,
                esc(at),
                esc(msg),
                sev = esc(sev)
            );
        }
        m.push_str("</ul>");
    }
    let _ = write!(
        m,
        r#"<form method="post" action="{action}" class="card wide">
<input type="hidden" name="csrf" value="{csrf}">
<label for="params">Parameters, one NAME=VALUE a line (site defaults &lt; profile &lt; device)</label>
<textarea id="params" name="params" rows="16" cols="80" spellcheck="false">{text}</textarea>
<div><button type="submit" name="intent" value="check">Check</button> <button type="submit" name="intent" value="save">Save</button></div></form>"#,
        action = esc(e.action),
        csrf = esc(&session.csrf),
        text = esc(e.text)
    );
    layout(e.title, Some(session), &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url("a b&c"), "a%20b%26c");
    }
}
