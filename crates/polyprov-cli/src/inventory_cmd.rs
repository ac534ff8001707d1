//! `polyprov device`, `profile` and `site`: the inventory through the admin API.

use crate::args::*;
use crate::client::{CliError, Client, Exit};
use crate::out::outln;
use crate::table;

pub(crate) fn parse_params(
    pairs: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    let mut out = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            CliError::new(Exit::Usage, format!("--param {p:?}: expected NAME=VALUE"))
        })?;
        out.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        );
    }
    Ok(out)
}

/// GETs an admin API path and prints it: JSON with `--json`, else `render` for people.
pub(crate) async fn show(
    api: &ApiArgs,
    path: &str,
    render: fn(&serde_json::Value),
) -> Result<(), CliError> {
    let v = Client::new(api)?.get(path).await?;
    if api.json {
        return crate::client::print_json(&v);
    }
    render(&v);
    Ok(())
}

/// The device document the API takes, from the assign/reassign flags.
pub(crate) fn assignment_doc(a: AssignArgs) -> Result<serde_json::Value, CliError> {
    let AssignArgs {
        profile,
        admin_password,
        admin_password_file,
        line,
        param,
    } = a;
    let admin_password = match admin_password_file {
        Some(f) => Some(
            std::fs::read_to_string(&f)
                .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", f.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        None => admin_password,
    };
    let lines: Vec<serde_json::Value> = line
        .iter()
        .map(|l| {
            let mut parts = l.splitn(3, ',');
            let mut o = serde_json::Map::new();
            for key in ["address", "user", "password"] {
                if let Some(v) = parts.next().filter(|v| !v.is_empty()) {
                    o.insert(key.to_string(), v.into());
                }
            }
            serde_json::Value::Object(o)
        })
        .collect();
    Ok(serde_json::json!({
        "profile": profile,
        "admin_password": admin_password,
        "params": parse_params(&param)?,
        "lines": lines,
    }))
}

pub(crate) async fn device(cmd: DeviceCommand) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::List(api) => show(&api, "devices", table::devices).await,
        DeviceCommand::Show { mac, api } => {
            show(&api, &format!("devices/{mac}"), table::device).await
        }
        DeviceCommand::Assign {
            mac,
            assignment,
            api,
        } => {
            let doc = assignment_doc(assignment)?;
            let c = Client::new(&api)?;
            let d = c.put(&format!("devices/{mac}"), &doc).await?;
            if api.json {
                return crate::client::print_json(&d);
            }
            outln!("assigned {}", d["mac"].as_str().unwrap_or(&mac));
            Ok(())
        }
        DeviceCommand::Import { file, api } => import(&file, &api).await,
        DeviceCommand::Remove { mac, api } => {
            let c = Client::new(&api)?;
            c.delete(&format!("devices/{mac}")).await?;
            if api.json {
                return crate::client::print_json(&serde_json::json!({ "removed": mac }));
            }
            outln!("removed {mac} from the inventory (its uploads are kept)");
            Ok(())
        }
        DeviceCommand::Release {
            mac,
            reason,
            factory_reset: true,
            target,
            wait,
            api,
        } => crate::action_cmd::release_and_reset(&api, &mac, reason, target, wait).await,
        DeviceCommand::Release {
            mac, reason, api, ..
        } => {
            let c = Client::new(&api)?;
            let r = c
                .post(
                    &format!("devices/{mac}/release"),
                    &serde_json::json!({ "reason": reason.unwrap_or_default() }),
                )
                .await?;
            if api.json {
                return crate::client::print_json(&r);
            }
            if r["changed"] == false {
                outln!("{mac} was already released; nothing changed");
            } else {
                match r["quarantine"].as_str() {
                    Some(q) => outln!(
                        "released {mac}; its files are in quarantine set {q} (polyprov device restore {mac} brings them back)"
                    ),
                    None => outln!("released {mac}; it had no files to quarantine"),
                }
            }
            Ok(())
        }
        DeviceCommand::Reassign {
            mac,
            assignment,
            reason,
            api,
        } => {
            let mut doc = assignment_doc(assignment)?;
            doc["reason"] = serde_json::Value::String(reason.unwrap_or_default());
            let c = Client::new(&api)?;
            let r = c.post(&format!("devices/{mac}/reassign"), &doc).await?;
            if api.json {
                return crate::client::print_json(&r);
            }
            outln!(
                "reassigned {mac}{}",
                r["released"]["quarantine"]
                    .as_str()
                    .map(|q| format!("; former files in quarantine set {q}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        DeviceCommand::Restore { mac, version, api } => {
            let c = Client::new(&api)?;
            let r = c
                .post(
                    &format!("devices/{mac}/restore"),
                    &serde_json::json!({ "version": version }),
                )
                .await?;
            if api.json {
                return crate::client::print_json(&r);
            }
            outln!(
                "restored {} files of quarantine set {} to {mac}",
                r["files"],
                r["restored"].as_str().unwrap_or("-")
            );
            Ok(())
        }
        DeviceCommand::Retire { mac, reason, api } => {
            let c = Client::new(&api)?;
            let r = c
                .post(
                    &format!("devices/{mac}/retire"),
                    &serde_json::json!({ "reason": reason.unwrap_or_default() }),
                )
                .await?;
            if api.json {
                return crate::client::print_json(&r);
            }
            outln!("retired {mac}");
            Ok(())
        }
        DeviceCommand::History { mac, api } => {
            show(&api, &format!("devices/{mac}/history"), table::history).await
        }
        DeviceCommand::Quarantine { mac, api } => {
            show(
                &api,
                &format!("devices/{mac}/quarantine"),
                table::quarantine,
            )
            .await
        }
        DeviceCommand::Uploads { mac, api } => {
            show(&api, &format!("devices/{mac}/uploads"), table::uploads).await
        }
        DeviceCommand::Resync(args) => crate::action_cmd::run("resync", args).await,
        DeviceCommand::Reboot(args) => crate::action_cmd::run("reboot", args).await,
        DeviceCommand::FactoryReset(args) => crate::action_cmd::run("factory-reset", args).await,
    }
}

pub(crate) async fn profile(cmd: ProfileCommand) -> Result<(), CliError> {
    match cmd {
        ProfileCommand::List(api) => show(&api, "profiles", table::profiles).await,
        ProfileCommand::Show { name, api } => {
            show(&api, &format!("profiles/{name}"), |v| {
                table::params(&v["params"])
            })
            .await
        }
        ProfileCommand::Set { name, param, api } => {
            let c = Client::new(&api)?;
            let p = c
                .put(
                    &format!("profiles/{name}"),
                    &serde_json::json!({ "params": parse_params(&param)? }),
                )
                .await?;
            if api.json {
                return crate::client::print_json(&p);
            }
            outln!(
                "profile {name} set ({} parameters)",
                p["params"].as_object().map_or(0, |m| m.len())
            );
            Ok(())
        }
        ProfileCommand::Remove { name, api } => {
            let c = Client::new(&api)?;
            c.delete(&format!("profiles/{name}")).await?;
            if api.json {
                return crate::client::print_json(&serde_json::json!({ "removed": name }));
            }
            outln!("removed profile {name}");
            Ok(())
        }
    }
}

pub(crate) async fn site(cmd: SiteCommand) -> Result<(), CliError> {
    match cmd {
        SiteCommand::Show(api) => show(&api, "site", |v| table::params(&v["params"])).await,
        SiteCommand::Set { param, api } => {
            let c = Client::new(&api)?;
            let s = c
                .put(
                    "site",
                    &serde_json::json!({ "params": parse_params(&param)? }),
                )
                .await?;
            if api.json {
                return crate::client::print_json(&s);
            }
            outln!(
                "site defaults set ({} parameters)",
                s["params"].as_object().map_or(0, |m| m.len())
            );
            Ok(())
        }
    }
}

/// Devices sent in one request by `device import`.
const IMPORT_BATCH: usize = 10_000;

/// `device import FILE`: the bulk assignment endpoint, in batches.
async fn import(file: &std::path::Path, api: &ApiArgs) -> Result<(), CliError> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", file.display())))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", file.display())))?;
    let devices = match doc {
        serde_json::Value::Array(a) => Some(a),
        serde_json::Value::Object(mut o) => match o.remove("devices") {
            Some(serde_json::Value::Array(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| {
        CliError::new(
            Exit::Usage,
            format!(
                "{}: expected {{\"devices\": [...]}} or an array",
                file.display()
            ),
        )
    })?;
    let c = Client::new(api)?;
    let mut assigned = 0u64;
    for (i, batch) in devices.chunks(IMPORT_BATCH).enumerate() {
        let r = c
            .put("devices", &serde_json::json!({ "devices": batch }))
            .await
            .map_err(|e| {
                CliError::new(
                    e.code,
                    format!(
                        "batch {} (devices {}-{}): {} ({assigned} assigned before it)",
                        i + 1,
                        i * IMPORT_BATCH + 1,
                        i * IMPORT_BATCH + batch.len(),
                        e.message
                    ),
                )
            })?;
        assigned += r["assigned"].as_u64().unwrap_or(0);
        if !api.json {
            eprintln!("{assigned} of {} assigned", devices.len());
        }
    }
    if api.json {
        return crate::client::print_json(&serde_json::json!({ "assigned": assigned }));
    }
    outln!("assigned {assigned} devices");
    Ok(())
}
