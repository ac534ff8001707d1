//! Live activity: phones booting now, requests by status, security events. The numbers are the
//! ones `/metrics` exposes (its text, sampled every few seconds into a ring) drawn as small SVG
//! charts; the page follows them over server-sent events with one small script of its own, and
//! without script it reloads itself.

use super::pages::{esc, when};
use crate::admin::AdminState;
use polyprov_store::Sighting;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the metrics are sampled and the page refreshed.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: ten minutes.
pub const KEPT: usize = 120;
/// Live streams open at once (each holds an admin connection); past it, 503.
pub const MAX_STREAMS: usize = 16;
/// A stream ends after this long; the browser's EventSource opens the next.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// One sample of the counters (totals since the server started) and gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub at: i64,
    /// Phone requests answered 2xx, 3xx, 4xx, 5xx.
    pub requests: [u64; 4],
    pub security: u64,
    /// Phone connections open (HTTP and HTTPS listeners).
    pub connections: i64,
}

/// Reads a sample from the Prometheus text exposition (so the console and `/metrics` cannot
/// disagree). Lines it does not know are skipped.
pub fn sample_of(metrics: &str, at: i64) -> Sample {
    let mut s = Sample {
        at,
        ..Sample::default()
    };
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let label = |name: &str| {
            let key = format!("{name}=\"");
            series
                .find(&key)
                .map(|i| &series[i + key.len()..])
                .and_then(|rest| rest.split('"').next())
        };
        if series.starts_with("polyprov_requests_total{") {
            if let Some(class) = label("status")
                .and_then(|st| st.chars().next())
                .and_then(|c| c.to_digit(10))
                .filter(|c| (2..=5).contains(c))
            {
                s.requests[class as usize - 2] += value as u64;
            }
        } else if series.starts_with("polyprov_security_events_total{") {
            s.security += value as u64;
        } else if series.starts_with("polyprov_connections{")
            && label("door").is_some_and(|d| d != "admin")
        {
            s.connections += value as i64;
        }
    }
    s
}

/// The samples of the last ten minutes, and the live streams open.
pub struct Activity {
    samples: Mutex<VecDeque<Sample>>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            samples: Mutex::new(VecDeque::with_capacity(KEPT)),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        }
    }

    fn push(&self, s: Sample) {
        let mut ring = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(s);
    }

    fn all(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// A permit to stream, or `None` when [`MAX_STREAMS`] are open.
    pub fn stream_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }
}

/// Samples the metrics every [`INTERVAL`] until `stop`.
pub async fn sample(state: Arc<AdminState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let text = state.metrics.render();
                state.activity.push(sample_of(&text, polyprov_store::inventory::now()));
            }
        }
    }
}

/// A small line chart of a per-interval series, with its title, last and highest value as text
/// (the chart is decoration; the numbers are what a screen reader reads).
fn chart(title: &str, unit: &str, values: &[u64]) -> String {
    const W: f64 = 240.0;
    const H: f64 = 48.0;
    let max = values.iter().copied().max().unwrap_or(0);
    let last = values.last().copied().unwrap_or(0);
    let n = values.len().max(2) as f64 - 1.0;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 * W / n;
            let y = H - 2.0 - (*v as f64) * (H - 4.0) / (max.max(1) as f64);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        r##"<figure class="chart"><figcaption>{t}: <strong>{last}</strong> {u} <small>(highest {max})</small></figcaption>
<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}, last ten minutes"><polyline fill="none" stroke="#1f5f99" stroke-width="2" points="{p}"/><line x1="0" y1="{b}" x2="{W}" y2="{b}" stroke="#999" stroke-width="1"/></svg></figure>"##,
        t = esc(title),
        u = esc(unit),
        p = points.join(" "),
        b = H - 1.0
    )
}

/// The part of the page that is refreshed: charts, phones seen last, security events.
pub fn live(
    samples: &[Sample],
    seen: &[Sighting],
    security: &[crate::core::SecurityNote],
) -> String {
    let mut m = String::new();
    let per = |f: &dyn Fn(&Sample) -> u64| -> Vec<u64> {
        samples
            .windows(2)
            .map(|w| f(&w[1]).saturating_sub(f(&w[0])))
            .collect()
    };
    let secs = INTERVAL.as_secs();
    m.push_str(r#"<div class="charts">"#);
    for (i, title) in [
        "Answered 2xx",
        "Answered 3xx",
        "Answered 4xx",
        "Answered 5xx",
    ]
    .into_iter()
    .enumerate()
    {
        if i == 1 {
            continue; // phones are not redirected; 3xx stays in /metrics
        }
        m.push_str(&chart(
            title,
            &format!("requests / {secs} s"),
            &per(&|s: &Sample| s.requests[i]),
        ));
    }
    m.push_str(&chart(
        "Security events",
        &format!("/ {secs} s"),
        &per(&|s: &Sample| s.security),
    ));
    let open: Vec<u64> = samples
        .iter()
        .map(|s| s.connections.max(0) as u64)
        .collect();
    m.push_str(&chart("Phone connections open", "now", &open));
    m.push_str("</div>");
    if samples.len() < 2 {
        let _ = write!(
            m,
            "<p>The charts fill in as samples come ({secs} s apart).</p>"
        );
    }

    m.push_str(r#"<h2 id="booting">Phones seen last</h2>"#);
    if seen.is_empty() {
        m.push_str("<p>No phone since the server started.</p>");
    } else {
        m.push_str(r#"<table><thead><tr><th scope="col">MAC</th><th scope="col">Seen</th><th scope="col">Model</th><th scope="col">Software</th><th scope="col">Stage</th><th scope="col">Last file</th><th scope="col">Last upload</th><th scope="col">Address</th></tr></thead><tbody>"#);
        for s in seen.iter().take(50) {
            let o = |v: &Option<String>| v.as_deref().map(esc).unwrap_or_else(|| "—".into());
            let _ = write!(
                m,
                r#"<tr><td><a href="/console/devices/{mac}">{mac}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                when(Some(s.at)),
                o(&s.model),
                o(&s.firmware),
                o(&s.stage),
                o(&s.last_fetch),
                o(&s.last_upload),
                o(&s.addr),
                mac = esc(&s.mac),
            );
        }
        m.push_str("</tbody></table>");
    }

    m.push_str(r#"<h2 id="security">Security events</h2>"#);
    if security.is_empty() {
        m.push_str("<p>None since the server started.</p>");
    } else {
        m.push_str(r#"<table><thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">From</th><th scope="col">What</th></tr></thead><tbody>"#);
        for e in security.iter().take(50) {
            let _ = write!(
                m,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                when(Some(e.at)),
                esc(e.event),
                e.addr.as_deref().map(esc).unwrap_or_else(|| "—".into()),
                esc(&e.detail)
            );
        }
        m.push_str("</tbody></table>");
    }
    m
}

/// The fragment for the current state.
pub fn live_now(s: &AdminState) -> String {
    live(
        &s.activity.all(),
        &s.core.recently_seen(),
        &s.core.security_notes(),
    )
}

/// The script that follows the stream: it replaces the live part with each fragment the server
/// sends (already escaped there).
pub const SCRIPT: &str = r#""use strict";
const live = document.getElementById("live");
const status = document.getElementById("live-status");
const source = new EventSource("/console/activity/stream");
source.addEventListener("live", (e) => { live.innerHTML = e.data; status.textContent = "Live: updated every few seconds."; });
source.addEventListener("error", () => { status.textContent = "Live updates paused; reload the page if they do not resume."; });
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_read_from_the_metrics_text() {
        let text = r#"# HELP polyprov_requests Phone requests
# TYPE polyprov_requests counter
polyprov_requests_total{door="http",kind="master",status="200"} 7
polyprov_requests_total{door="tftp",kind="config",status="404"} 3
polyprov_requests_total{door="http",kind="log",status="204"} 2
polyprov_requests_total{door="http",kind="config",status="503"} 1
polyprov_security_events_total{event="bad_credentials"} 4
polyprov_security_events_total{event="bad_path"} 1
polyprov_connections{door="http"} 5
polyprov_connections{door="admin"} 9
"#;
        let s = sample_of(text, 10);
        assert_eq!(s.requests, [9, 0, 3, 1]);
        assert_eq!(s.security, 5);
        assert_eq!(s.connections, 5);
        assert_eq!(sample_of("garbage\n{}\n", 1).requests, [0; 4]);
    }

    #[test]
    fn the_live_part_escapes_what_phones_and_attackers_send() {
        let seen = vec![Sighting {
            mac: "0004f2aa814c".into(),
            at: 1,
            model: Some("<script>x</script>".into()),
            ..Default::default()
        }];
        let sec = vec![crate::core::SecurityNote {
            at: 1,
            event: "bad_path",
            addr: Some("127.0.0.1".into()),
            detail: "GET /<img src=x onerror=alert(1)>".into(),
        }];
        let html = live(
            &[
                Sample::default(),
                Sample {
                    requests: [3, 0, 1, 0],
                    ..Sample::default()
                },
            ],
            &seen,
            &sec,
        );
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;") && html.contains("Answered 2xx: <strong>3</strong>")
        );
    }
}
