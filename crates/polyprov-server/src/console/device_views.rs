//! The device page's deeper sections: what a factory-reset phone would get (each parameter, its
//! winning source and what it shadows — the model's merge, as `config explain` and `doctor`
//! use it), the override drift with its three remedies, the doctor's findings with a way to act
//! on each, the reset guide and keystrokes for the model and MAC, and the lifecycle forms.

use super::pages::esc;
use super::sessions::Session;
use polyprov_model::Mac;
use polyprov_model::catalog::Catalog;
use polyprov_model::config_file::ConfigFile;
use polyprov_model::doctor::{Analysis, Remedy, Report};
use polyprov_model::effective::{Candidate, Layer, Resolved, Verdict};
use polyprov_model::guide::Guide;
use polyprov_model::keypad::{LetterCase, ModeCycle};
use polyprov_model::lint::is_secret;
use polyprov_store::inventory::{Device, DeviceState};
use polyprov_store::uploads::QuarantineSet;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Rows of the effective configuration shown at once (a boot root's features.cfg alone sets
/// hundreds); the filter narrows them.
const MAX_ROWS: usize = 300;

/// A value as the console shows it: secrets masked (an admin's screen is seen by others).
fn shown(name: &str, value: &str) -> String {
    if is_secret(name) && !value.is_empty() {
        r#"<span class="secret">•••• (secret, not shown)</span>"#.into()
    } else {
        format!("<code>{}</code>", esc(value))
    }
}

fn place(c: &Candidate) -> String {
    let at = match (&c.file, c.position) {
        (Some(f), Some(p)) => format!(" {}:{}", esc(f), p.line),
        (Some(f), None) => format!(" {}", esc(f)),
        _ => String::new(),
    };
    format!("{}{at}", esc(&c.layer.to_string()))
}

/// The doctor's findings, each with its fix and a way to act on it from this page.
pub fn findings(mac: &str, r: &Report) -> String {
    let mut m = format!(
        r#"<h2 id="after-reset">After a factory reset</h2><p>Admin password from <strong>{}</strong>; master {}.</p>"#,
        esc(&r.admin_password.source),
        esc(&r.master)
    );
    if r.findings.is_empty() {
        m.push_str("<p>Nothing would bring its old settings back.</p>");
        return m;
    }
    m.push_str(r#"<ul class="findings">"#);
    for f in &r.findings {
        let act = match f.remedy() {
            Remedy::Release => format!(
                r##"<a class="button" href="#release">Release {}…</a>"##,
                esc(mac)
            ),
            Remedy::BootRoot => {
                r#"<a class="button" href="/console/root">Open the boot root…</a>"#.into()
            }
            Remedy::Assignment => {
                r##"<a class="button" href="#assignment">Edit its parameters…</a>"##.into()
            }
            Remedy::Elsewhere => String::new(),
        };
        let _ = write!(
            m,
            r#"<li><span class="kind">{}</span> {}<br><code>{}</code> {act}</li>"#,
            esc(&f.kind.to_string()),
            esc(&f.what),
            esc(&f.fix)
        );
    }
    m.push_str("</ul>");
    m
}

/// What the phone would run with after a reset: every parameter some source sets (built-in
/// defaults aside), its value, the winning source and what it shadows. `filter` keeps the
/// parameters whose name contains it.
pub fn effective(mac: &str, a: &Analysis, filter: &str) -> String {
    let filter = filter.trim();
    let rows: Vec<(&String, &Resolved)> = a
        .effective
        .iter()
        .filter(|(k, r)| {
            r.candidates.iter().any(|c| c.layer != Layer::Default)
                && (filter.is_empty() || k.to_lowercase().contains(&filter.to_lowercase()))
        })
        .collect();
    let mut m = format!(
        r##"<h2 id="effective">Effective configuration after a reset</h2>
<form method="get" action="/console/devices/{mac}#effective" class="inline-form" role="search">
<label for="eff-filter">Parameters containing</label><input id="eff-filter" name="param" value="{f}">
<button type="submit">Show</button></form>
<p>{n} parameters set by the boot root, the assignment or the phone's overrides{shown}.</p>"##,
        mac = esc(mac),
        f = esc(filter),
        n = rows.len(),
        shown = if rows.len() > MAX_ROWS {
            format!("; the first {MAX_ROWS} shown, narrow with the filter")
        } else {
            String::new()
        }
    );
    if rows.is_empty() {
        return m;
    }
    m.push_str(
        r#"<table class="effective"><thead><tr><th scope="col">Parameter</th><th scope="col">Value</th><th scope="col">From</th><th scope="col">Shadows</th></tr></thead><tbody>"#,
    );
    for (k, r) in rows.into_iter().take(MAX_ROWS) {
        let value = match &r.value {
            Some(v) => shown(k, v),
            None => "<em>ignored</em>".into(),
        };
        let from = r.winner().map(place).unwrap_or_else(|| "—".into());
        let shadows: Vec<String> = r
            .candidates
            .iter()
            .filter(|c| c.verdict != Verdict::Wins)
            .map(|c| {
                let why = match &c.verdict {
                    Verdict::Ungated(gate) => format!(" (ignored: {} is not 1)", esc(gate)),
                    _ => String::new(),
                };
                format!("{} = {}{why}", place(c), shown(k, &c.value))
            })
            .collect();
        let _ = write!(
            m,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{value}</td><td>{from}</td><td>{}</td></tr>",
            esc(k),
            if shadows.is_empty() {
                "—".into()
            } else {
                shadows.join("<br>")
            }
        );
    }
    m.push_str("</tbody></table>");
    m
}

/// One row of the drift: a parameter an override sets, against what the server serves.
pub struct Drift<'a> {
    pub kind: &'static str,
    pub layer: &'static str,
    pub name: &'a str,
    pub value: &'a str,
    pub served: Option<&'a Resolved>,
}

/// Every parameter the phone's overrides set, against what the server alone serves.
pub fn drift_rows(a: &Analysis) -> Vec<Drift<'_>> {
    let mut out = Vec::new();
    let sources: [(&'static str, &'static str, &Option<ConfigFile>); 2] = [
        ("phone", "phone menu", &a.local_override),
        ("web", "web UI", &a.web_override),
    ];
    for (kind, layer, file) in sources {
        let Some(f) = file else { continue };
        let mut seen = BTreeMap::new();
        for p in f.params() {
            // The first occurrence wins inside one file, as the phone reads it.
            seen.entry(p.name.as_str()).or_insert(p.value.as_str());
        }
        for (name, value) in seen {
            out.push(Drift {
                kind,
                layer,
                name,
                value,
                served: a.served.get(name),
            });
        }
    }
    out
}

/// The override drift: each row with "keep for this device", "move into its profile" and
/// "discard" (each takes the parameter out of the override, keeping the version before).
pub fn drift(session: &Session, d: &Device, a: &Analysis) -> String {
    let rows = drift_rows(a);
    let mut m = String::from(
        r#"<h2 id="drift">Override drift</h2><p>What the phone changed in its menu or web UI and uploaded, against what polyprov serves it. <em>Keep for this device</em> copies the value into its own parameters, <em>Move into its profile</em> into its profile; both then take it out of the override, as <em>Discard</em> does. The override's version before is kept; the phone gets the new one at its next boot.</p>"#,
    );
    if rows.is_empty() {
        m.push_str("<p>No override: the phone runs what polyprov serves.</p>");
        return m;
    }
    let assigned = d.state == DeviceState::Assigned;
    m.push_str(r#"<table class="drift"><thead><tr><th scope="col">Parameter</th><th scope="col">Override</th><th scope="col">polyprov serves</th><th scope="col">Action</th></tr></thead><tbody>"#);
    for r in rows {
        let (served, status) = match r.served.and_then(|s| s.winner().map(|w| (s, w))) {
            Some((s, w)) => {
                let v = s.value.as_deref().unwrap_or("");
                let status = if v == r.value { "same" } else { "differs" };
                (
                    format!("{} <small>from {}</small>", shown(r.name, v), place(w)),
                    status,
                )
            }
            None => ("<em>nothing</em>".to_string(), "server-silent"),
        };
        let mut options = String::new();
        if assigned {
            options.push_str(r#"<option value="keep">Keep for this device</option>"#);
            if d.assignment.profile.is_some() {
                options.push_str(r#"<option value="profile">Move into its profile</option>"#);
            }
        }
        options.push_str(r#"<option value="discard">Discard</option>"#);
        let id = format!("drift-{}-{}", r.kind, r.name);
        let _ = write!(
            m,
            r#"<tr class="{status}"><th scope="row"><code>{name}</code><br><small>{layer}</small></th><td>{value}</td><td>{served}</td><td>
<form method="post" action="/console/devices/{mac}/drift" class="inline-form">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="override" value="{kind}"><input type="hidden" name="param" value="{name}">
<label class="visually-hidden" for="{id}">Action for {name}</label><select id="{id}" name="action">{options}</select>
<label class="check"><input type="checkbox" name="confirm" value="yes" required> sure</label>
<button type="submit">Apply</button></form></td></tr>"#,
            name = esc(r.name),
            layer = r.layer,
            value = shown(r.name, r.value),
            mac = esc(&d.mac),
            csrf = esc(&session.csrf),
            kind = r.kind,
            id = esc(&id),
        );
    }
    m.push_str("</tbody></table>");
    m
}

/// The reset guide for the device's model (and software), with the keystrokes that type its
/// MAC at the password prompt. `labels`: the mode key's order as its labels read (the sources
/// differ, domain.md §7), else as the vendor FAQ's table.
pub fn guide(d: &Device, mac: Mac, labels: bool) -> String {
    let mut m = String::from(r#"<h2 id="guide">Factory reset guide</h2>"#);
    let catalog = match Catalog::embedded() {
        Ok(c) => c,
        Err(e) => {
            let _ = write!(
                m,
                "<p>The model catalog cannot be read: {}</p>",
                esc(&e.to_string())
            );
            return m;
        }
    };
    let Some(model) = d.model.as_deref().and_then(|name| catalog.find(name)) else {
        let _ = write!(
            m,
            "<p>polyprov does not know this phone's model yet ({}): it learns it from the phone's first request. <code>polyprov guide --list</code> names the models it has guides for.</p>",
            d.model
                .as_deref()
                .map(esc)
                .unwrap_or_else(|| "never seen".into())
        );
        return m;
    };
    let cycle = if labels {
        ModeCycle::Labels
    } else {
        ModeCycle::Seed
    };
    let g = Guide::build(
        &catalog,
        model,
        d.firmware.as_deref(),
        Some(mac),
        cycle,
        LetterCase::Lower,
    );
    let _ = write!(
        m,
        "<p>{} ({}){}.</p>",
        esc(&g.model_name),
        esc(&g.model_id),
        g.firmware
            .as_deref()
            .map(|f| format!(", software {}", esc(f)))
            .unwrap_or_default()
    );
    for s in &g.sections {
        let _ = write!(
            m,
            r#"<section class="guide{}"><h3>{} <small>({})</small></h3>"#,
            if s.available { "" } else { " unavailable" },
            esc(&s.title),
            esc(s.confidence.as_str())
        );
        if !s.steps.is_empty() {
            m.push_str("<ol>");
            for step in &s.steps {
                let _ = write!(m, "<li>{}</li>", esc(step));
            }
            m.push_str("</ol>");
        }
        for n in &s.notes {
            let _ = write!(m, "<p class=\"note\">{}</p>", esc(n));
        }
        m.push_str("</section>");
    }
    if let Some((mac, steps)) = &g.mac_keystrokes {
        let (order, other, other_label) = if labels {
            (
                "numeric → UPPER → lower, as the key labels read",
                "",
                "the vendor FAQ's order",
            )
        } else {
            (
                "numeric → lower → upper, as the vendor FAQ's table",
                "?keys=labels",
                "the key labels' order",
            )
        };
        let _ = write!(
            m,
            r##"<h3 id="keystrokes">Typing {mac} at the password prompt</h3>
<p>Start in numeric mode; the mode key cycles {order}. The sources differ on this order: <a href="/console/devices/{mac}{other}#keystrokes">show the keystrokes for {other_label}</a>.</p>
<table class="keys"><thead><tr><th scope="col">Character</th><th scope="col">Keys</th></tr></thead><tbody>"##
        );
        for s in steps {
            let actions: Vec<String> = s.actions.iter().map(ToString::to_string).collect();
            let _ = write!(
                m,
                "<tr><th scope=\"row\"><kbd>{}</kbd></th><td>{}</td></tr>",
                esc(&s.ch.to_string()),
                esc(&actions.join(", then "))
            );
        }
        m.push_str("</tbody></table>");
    }
    m
}

/// Release, Reassign, Restore, Retire: each a form that asks for a reason and a confirmation.
pub fn lifecycle(
    session: &Session,
    d: &Device,
    quarantine: &[QuarantineSet],
    profiles: &[String],
) -> String {
    let mac = esc(&d.mac);
    let csrf = esc(&session.csrf);
    let reason = |id: &str| {
        format!(
            r#"<label for="{id}-reason">Reason (kept in the audit log)</label><input id="{id}-reason" name="reason" required maxlength="500">"#
        )
    };
    let mut m = String::from(r#"<h2 id="lifecycle">Lifecycle</h2>"#);
    if d.state == DeviceState::Assigned {
        let _ = write!(
            m,
            r#"<form method="post" action="/console/devices/{mac}/release" class="card danger" id="release"><h3>Release</h3>
<p>Withdraws the assignment and moves its overrides, directory, call lists and licence to quarantine; the phone is then served what a new phone is. Do this before a factory reset.</p>
<input type="hidden" name="csrf" value="{csrf}">{r}
<label class="check"><input type="checkbox" name="confirm" value="yes" required> Release {mac}</label>
<button type="submit">Release</button></form>"#,
            r = reason("release")
        );
    }
    if d.state != DeviceState::Retired {
        let options: String = profiles
            .iter()
            .map(|p| format!(r#"<option value="{p}">{p}</option>"#, p = esc(p)))
            .collect();
        let _ = write!(
            m,
            r#"<form method="post" action="/console/devices/{mac}/reassign" class="card" id="reassign"><h3>Reassign</h3>
<p>Releases it (its uploads to quarantine) and assigns it afresh, for the phone's next user.</p>
<input type="hidden" name="csrf" value="{csrf}">
<label for="reassign-profile">New profile</label><select id="reassign-profile" name="profile"><option value="">none</option>{options}</select>
<label for="reassign-password">New admin password <small>(empty: none)</small></label><input id="reassign-password" name="admin_password" type="password" autocomplete="new-password">
{r}
<label class="check"><input type="checkbox" name="confirm" value="yes" required> Reassign {mac}</label>
<button type="submit">Reassign</button></form>"#,
            r = reason("reassign")
        );
    }
    if let Some(newest) = quarantine.last() {
        let options: String = quarantine
            .iter()
            .rev()
            .map(|q| {
                format!(
                    r#"<option value="{id}">{id} ({n} files)</option>"#,
                    id = esc(&q.id),
                    n = q.files.len()
                )
            })
            .collect();
        let _ = write!(
            m,
            r#"<form method="post" action="/console/devices/{mac}/restore" class="card" id="restore"><h3>Restore</h3>
<p>Brings a quarantine set back (the newest is {newest}): each file becomes the newest version of its kind, after anything uploaded since.</p>
<input type="hidden" name="csrf" value="{csrf}">
<label for="restore-set">Quarantine set</label><select id="restore-set" name="set">{options}</select>
{r}
<label class="check"><input type="checkbox" name="confirm" value="yes" required> Restore it for {mac}</label>
<button type="submit">Restore</button></form>"#,
            newest = esc(&newest.id),
            r = reason("restore")
        );
    }
    if matches!(d.state, DeviceState::Released | DeviceState::Unassigned) {
        let _ = write!(
            m,
            r#"<form method="post" action="/console/devices/{mac}/retire" class="card danger" id="retire"><h3>Retire</h3>
<p>Takes the phone out of service (it leaves the fleet); its history and quarantine stay.</p>
<input type="hidden" name="csrf" value="{csrf}">{r}
<label class="check"><input type="checkbox" name="confirm" value="yes" required> Retire {mac}</label>
<button type="submit">Retire</button></form>"#,
            r = reason("retire")
        );
    }
    m
}
