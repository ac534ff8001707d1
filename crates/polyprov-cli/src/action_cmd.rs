//! `polyprov device resync|reboot|factory-reset`: a remote action job through the admin API,
//! followed to its end with a progress bar, then one line per phone.

use crate::args::{ActionArgs, ActionVia, SipTransport};
use crate::client::{CliError, Client, Exit, print_json};
use crate::table;
use serde_json::{Value, json};
use std::time::Duration;

/// Starts the job and follows it; exit 1 unless every phone acknowledged and, when watched,
/// came back.
pub(crate) async fn run(action: &str, args: ActionArgs) -> Result<(), CliError> {
    let c = Client::new(&args.api)?;
    let mut select = serde_json::Map::new();
    if let Some(p) = &args.profile {
        select.insert("profile".into(), json!(p));
    }
    if let Some(m) = &args.model {
        select.insert("model".into(), json!(m));
    }
    if let Some(s) = &args.state {
        select.insert("state".into(), json!(s));
    }
    if args.all {
        select.insert("all".into(), json!(true));
    }
    if args.macs.is_empty() && select.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            "name the phones: MACs, or --profile/--model/--state/--all",
        ));
    }
    let mut body = json!({
        "action": action,
        "macs": args.macs,
        "select": select,
        "via": match args.via { ActionVia::Sip => "sip", ActionVia::Rest => "rest", ActionVia::Auto => "auto" },
        "reason": args.reason.clone().unwrap_or_default(),
    });
    if let Some(t) = &args.target {
        body["target"] = json!(t);
    }
    if let Some(t) = args.transport {
        body["transport"] = json!(match t {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
            SipTransport::Tls => "tls",
        });
    }
    if let Some(r) = args.rate {
        body["rate"] = json!(r);
    }
    if let Some(w) = args.wait {
        body["wait_secs"] = json!(w);
    }
    follow(&c, &body, args.api.json, args.wait != Some(0)).await
}

/// `device release MAC --factory-reset`: release, reset over the REST API, watch it come back.
pub(crate) async fn release_and_reset(
    api: &crate::args::ApiArgs,
    mac: &str,
    reason: Option<String>,
    target: Option<String>,
    wait: Option<u64>,
) -> Result<(), CliError> {
    let c = Client::new(api)?;
    let mut body = json!({
        "action": "factory-reset",
        "macs": [mac],
        "release": true,
        "reason": reason.unwrap_or_default(),
    });
    if let Some(t) = target {
        body["target"] = json!(t);
    }
    if let Some(w) = wait {
        body["wait_secs"] = json!(w);
    }
    follow(&c, &body, api.json, wait != Some(0)).await
}

/// Starts a job and follows it to its end: a progress bar, then the results; exit 1 unless
/// every phone acknowledged and, when `watched`, came back (and came back clean after a
/// release).
async fn follow(c: &Client, body: &Value, as_json: bool, watched: bool) -> Result<(), CliError> {
    let started = c.post("actions", body).await?;
    let id = started["id"].as_str().unwrap_or_default().to_string();
    let phones = started["counts"]["phones"].as_u64().unwrap_or(0);
    let bar = if as_json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(phones);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} phones done  {msg}  {elapsed}",
        ) {
            b.set_style(style);
        }
        b
    };
    let job = loop {
        let job = c.get(&format!("actions/{id}")).await?;
        let done = job["results"]
            .as_array()
            .map_or(0, |r| r.iter().filter(|p| p["state"] == "done").count());
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{} acknowledged, {} came back",
            job["counts"]["acknowledged"], job["counts"]["came_back"]
        ));
        if job["state"] == "done" {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    bar.finish_and_clear();
    if as_json {
        print_json(&job)?;
    } else {
        table::action_results(&job);
    }
    let all_ok = job["results"].as_array().is_some_and(|r| {
        r.iter().all(|p| {
            p["acknowledged"] == true
                && (!watched || (!p["came_back"].is_null() && p["came_back"]["clean"] != false))
        })
    });
    if all_ok {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::Failed,
            format!(
                "{} of {} phones acknowledged, {} came back (job {id}: polyprov API GET /api/v1/actions/{id})",
                job["counts"]["acknowledged"], job["counts"]["phones"], job["counts"]["came_back"]
            ),
        ))
    }
}

/// One phone's outcome in a word or two.
pub(crate) fn verdict(p: &Value) -> String {
    if let Some(e) = p["error"].as_str() {
        return format!("not sent: {e}");
    }
    let answer = p["answer"]["detail"].as_str().unwrap_or("-");
    match (&p["came_back"], p["acknowledged"].as_bool()) {
        (Value::Object(c), _) => format!(
            "{answer}; came back after {:.1} s{}",
            c["after_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            c["firmware"]
                .as_str()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        ),
        (_, Some(true)) if p["state"] == "done" => format!("{answer}; not seen coming back"),
        _ => answer.to_string(),
    }
}
