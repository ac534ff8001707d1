//! `polyprov guide` and `polyprov keys`: the reset procedure for a model, and the keystrokes for
//! typing a MAC at the password prompt.

use crate::client::{CliError, Exit, print_json};
use crate::out::outln;
use polyprov_model::Mac;
use polyprov_model::catalog::{Catalog, Confidence};
use polyprov_model::guide::Guide;
use polyprov_model::keypad::{Action, CharSteps, LetterCase, ModeCycle};
use serde_json::{Value, json};
use std::path::Path;

fn catalog(extra: Option<&Path>) -> Result<Catalog, CliError> {
    let mut c = Catalog::embedded().map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    if let Some(p) = extra {
        let text = std::fs::read_to_string(p)
            .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", p.display())))?;
        c.extend_with(&text)
            .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", p.display())))?;
    }
    Ok(c)
}

/// The model a name means, or exit code 3 with the closest names in the catalog.
pub fn find_model<'a>(
    c: &'a Catalog,
    model: &str,
) -> Result<&'a polyprov_model::catalog::Model, CliError> {
    c.find(model).ok_or_else(|| {
        let near: Vec<String> = c
            .closest(model, 3)
            .iter()
            .map(|m| format!("{} ({})", m.name, m.id))
            .collect();
        CliError::new(
            Exit::NotFound,
            format!(
                "no model {model:?} in the catalog; closest: {}",
                near.join(", ")
            ),
        )
    })
}

/// The keystrokes as JSON steps: `{"char", "action": press|mode|wait, "key", "count"}`.
pub fn steps_json(steps: &[CharSteps]) -> Value {
    let mut out = Vec::new();
    for s in steps {
        for a in &s.actions {
            out.push(match a {
                Action::Press { key, count } => json!({"char": s.ch.to_string(), "action": "press", "key": key.to_string(), "count": count}),
                Action::Mode { count } => json!({"char": s.ch.to_string(), "action": "mode", "key": "mode", "count": count}),
                Action::Wait { seconds } => json!({"char": s.ch.to_string(), "action": "wait", "key": null, "count": 1, "seconds": seconds}),
            });
        }
    }
    Value::Array(out)
}

fn print_keystrokes(mac: Mac, steps: &[CharSteps], cycle: ModeCycle) {
    let order = match cycle {
        ModeCycle::Seed => "numeric → lower → upper",
        ModeCycle::Labels => "numeric → UPPER → lower (key labels 1->Aa, A->a1, a->1A)",
    };
    outln!(
        "Typing {mac} at the password prompt (the mode key cycles {order}; start in numeric mode):"
    );
    outln!("  CHARACTER  ACTIONS");
    for s in steps {
        let actions: Vec<String> = s.actions.iter().map(ToString::to_string).collect();
        outln!("  {:<9}  {}", s.ch, actions.join(", then "));
    }
}

/// `polyprov keys MAC`.
pub fn keys(mac: &str, cycle: ModeCycle, case: LetterCase, as_json: bool) -> Result<(), CliError> {
    let mac: Mac = mac
        .parse()
        .map_err(|e: polyprov_model::MacError| CliError::new(Exit::Usage, e.to_string()))?;
    let steps = polyprov_model::keypad::keystrokes(mac, cycle, case);
    if as_json {
        return print_json(&steps_json(&steps));
    }
    print_keystrokes(mac, &steps, cycle);
    Ok(())
}

/// `polyprov guide --list`.
pub fn list(extra: Option<&Path>, as_json: bool) -> Result<(), CliError> {
    let c = catalog(extra)?;
    if as_json {
        let v: Vec<Value> = c
            .models
            .iter()
            .map(|m| json!({
                "id": m.id, "name": m.name, "family": m.family,
                "reset_keys": m.reset_keys.value, "reset_confidence": m.reset_keys.confidence.as_str(),
                "reboot_keys": m.reboot_keys.value, "reboot_confidence": m.reboot_keys.confidence.as_str(),
            }))
            .collect();
        return print_json(&Value::Array(v));
    }
    let rows: Vec<Vec<String>> = c
        .models
        .iter()
        .map(|m| {
            let keys = |v: &Option<Vec<String>>, conf: Confidence| match v {
                Some(k) => format!("{} ({})", k.join(" "), conf.as_str()),
                None => "unknown".to_string(),
            };
            let reset = match (&m.reset_keys.value, &m.touch, &m.button) {
                (Some(_), _, _) => keys(&m.reset_keys.value, m.reset_keys.confidence),
                (None, Some(t), _) if t.value.is_some() => {
                    format!("touch screen ({})", t.confidence.as_str())
                }
                (None, _, Some(b)) if b.value.is_some() => {
                    format!("button ({})", b.confidence.as_str())
                }
                _ => "unknown".to_string(),
            };
            vec![
                m.id.clone(),
                m.name.clone(),
                m.family.clone(),
                reset,
                keys(&m.reboot_keys.value, m.reboot_keys.confidence),
            ]
        })
        .collect();
    crate::table::print(
        &["ID", "MODEL", "FAMILY", "FACTORY RESET", "REBOOT KEYS"],
        &rows,
    );
    Ok(())
}

/// `polyprov guide MODEL`.
pub fn guide(
    model: &str,
    firmware: Option<&str>,
    mac: Option<&str>,
    cycle: ModeCycle,
    case: LetterCase,
    extra: Option<&Path>,
    as_json: bool,
) -> Result<(), CliError> {
    let c = catalog(extra)?;
    let mac = mac
        .map(|m| m.parse::<Mac>())
        .transpose()
        .map_err(|e| CliError::new(Exit::Usage, e.to_string()))?;
    let m = find_model(&c, model)?;
    let g = Guide::build(&c, m, firmware, mac, cycle, case);
    if as_json {
        let sections: Vec<Value> = g
            .sections
            .iter()
            .map(|s| {
                json!({
                    "title": s.title, "available": s.available, "steps": s.steps, "notes": s.notes,
                    "confidence": s.confidence.as_str(), "sources": s.sources,
                })
            })
            .collect();
        return print_json(&json!({
            "model": g.model_id, "name": g.model_name, "firmware": g.firmware, "sections": sections,
            "mac": g.mac_keystrokes.as_ref().map(|(m, _)| m.to_string()),
            "keystrokes": g.mac_keystrokes.as_ref().map(|(_, s)| steps_json(s)),
            "sources": g.sections.iter().flat_map(|s| s.sources.iter()).collect::<std::collections::BTreeSet<_>>()
                .into_iter().filter_map(|id| c.sources.get(id).map(|s| json!({"id": id, "title": s.title, "url": s.url}))).collect::<Vec<_>>(),
        }));
    }
    outln!(
        "{} ({}){}",
        g.model_name,
        g.model_id,
        g.firmware
            .as_ref()
            .map(|f| format!(", software {f}"))
            .unwrap_or_default()
    );
    for s in &g.sections {
        outln!();
        let evidence = if s.sources.is_empty() {
            s.confidence.as_str().to_string()
        } else {
            format!("{}: {}", s.confidence.as_str(), s.sources.join(", "))
        };
        outln!(
            "{}{}  [{evidence}]",
            s.title,
            if s.available { "" } else { " (not available)" }
        );
        for (i, step) in s.steps.iter().enumerate() {
            outln!("  {}. {step}", i + 1);
        }
        for n in &s.notes {
            outln!("  Note: {n}");
        }
    }
    if let Some((mac, steps)) = &g.mac_keystrokes {
        outln!();
        print_keystrokes(*mac, steps, cycle);
    }
    let cited: std::collections::BTreeSet<&String> =
        g.sections.iter().flat_map(|s| s.sources.iter()).collect();
    if !cited.is_empty() {
        outln!();
        outln!("Sources:");
        for id in cited {
            if let Some(s) = c.sources.get(id) {
                outln!("  {id}: {} <{}>", s.title, s.url);
            }
        }
    }
    Ok(())
}
