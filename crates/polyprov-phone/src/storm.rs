//! A boot storm: many distinct phones booting at once against one server, as after a power cut,
//! over HTTP, TFTP or FTP/FTPS.
//! Bounded in phone count and in time; reports throughput, latency per file kind and every error.

use crate::phone::{ParseCache, PhoneState, RequestRecord};
use crate::transport::{AnyTransport, FtpTransport, LeanHttp, TftpTransport};
use futures_util::StreamExt;
use polyprov_model::Mac;
use polyprov_model::catalog::Model;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// The provisioning URL each phone gets as DHCP option 160.
    pub server: String,
    pub phones: usize,
    /// Phones booting at the same time.
    pub concurrency: usize,
    /// The first three bytes of every MAC; the last three count up from 1.
    pub mac_prefix: [u8; 3],
    pub firmware: String,
    /// Stop starting new phones after this long.
    pub time_limit: Duration,
    /// The FTP transport every phone starts from (its CA list for `ftps://`).
    pub ftp: FtpTransport,
    /// What the phones trust for `https://` (see [`crate::transport::tls::client_config`]).
    pub https: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Leave the phones on after their boot, each listening for SIP NOTIFY on its own port.
    pub listen: Option<Listen>,
}

/// Phones left listening after a storm: phone `i` (from 0) on UDP `127.0.0.1:<base + i>`,
/// until `secs` after the last boot. A NOTIFY it accepts makes it read its configuration again
/// (or reboot, as its settings say), as `sim listen` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub base_port: u16,
    pub secs: u64,
}

/// Latency of one kind of request, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    fn of(mut v: Vec<u64>) -> Latency {
        v.sort_unstable();
        Latency {
            count: v.len(),
            p50: percentile(&v, 0.50),
            p90: percentile(&v, 0.90),
            p99: percentile(&v, 0.99),
            max: v.last().copied().unwrap_or(0),
        }
    }
}

/// What the storm measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StormReport {
    pub phones_booted: usize,
    pub requests: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub phones_per_second: f64,
    /// By file kind (master, firmware, config, override, licence, calls, directory, log).
    pub latency: BTreeMap<String, Latency>,
    /// Each phone's whole boot, first request to last: how long a user waits for a phone.
    pub boot: Latency,
    /// Answers by status (0 = no answer).
    pub statuses: BTreeMap<u16, usize>,
    /// Transport failures and 5xx answers, and problems phones reported (first 100 kept).
    pub errors: Vec<String>,
    pub error_count: usize,
    /// True when the time limit stopped the storm before every phone booted.
    pub stopped_by_time_limit: bool,
    /// With `listen`: phones that listened, NOTIFYs they acted on, ports they could not bind.
    pub listening: usize,
    pub notifies_acted: usize,
    pub listen_errors: Vec<String>,
}

/// One phone left on: answers NOTIFYs on `port` until `stop`, acting on each it accepts.
/// Returns how many it acted on.
async fn keep_listening(
    mut phone: PhoneState,
    transport: AnyTransport,
    port: Option<u16>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<usize, String> {
    let port = port.ok_or("listening port past 65535")?;
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("{}: udp 127.0.0.1:{port}: {e}", phone.mac))?;
    let validation = Arc::new(std::sync::Mutex::new(phone.notify_validation()));
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let current = validation.clone();
    let listener = polyprov_sip::phone::Listener::new(
        move || current.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        tx,
    );
    let serving = tokio::spawn(listener.serve_udp(socket));
    let mut acted = 0;
    loop {
        let notified = tokio::select! {
            _ = stop.cancelled() => break,
            n = rx.recv() => match n { Some(n) => n, None => break },
        };
        if phone.reboots_on(&notified) {
            phone.boot(&transport).await;
        } else {
            phone.check_sync(&transport).await;
        }
        *validation.lock().unwrap_or_else(|p| p.into_inner()) = phone.notify_validation();
        acted += 1;
    }
    serving.abort();
    Ok(acted)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Boots `config.phones` phones of `model`; `progress` is called with the count done so far,
/// and `listening` with how many phones were left on (with `config.listen`) once all booted.
pub async fn run(
    config: &StormConfig,
    model: &Model,
    progress: impl Fn(usize) + Send + Sync,
    listening: impl Fn(usize),
) -> Result<StormReport, String> {
    let parses = Arc::new(ParseCache::default());
    let stop_listening = tokio_util::sync::CancellationToken::new();
    let listeners: std::sync::Mutex<Vec<tokio::task::JoinHandle<Result<usize, String>>>> =
        Default::default();
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let limit_hit = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<(Vec<RequestRecord>, Vec<String>, u64)> =
        futures_util::stream::iter(0..config.phones)
            .map(|i| {
                // Each phone holds its own keep-alive connection, as a real one would; the
                // server's scheme picks HTTP, TFTP or FTP/FTPS.
                let http = match &config.https {
                    Some(tls) => LeanHttp::new().with_tls(tls.clone()),
                    None => LeanHttp::new(),
                };
                let transport = AnyTransport {
                    http,
                    tftp: TftpTransport::default(),
                    ftp: config.ftp.clone(),
                };
                let parses = parses.clone();
                let n = i as u32 + 1;
                let p = config.mac_prefix;
                let mac =
                    Mac::from_bytes([p[0], p[1], p[2], (n >> 16) as u8, (n >> 8) as u8, n as u8]);
                let mut phone = PhoneState::new(mac, model, &config.firmware);
                phone.network.dhcp.insert(160, config.server.clone());
                let (done, limit_hit, progress) = (&done, &limit_hit, &progress);
                let (listen, stop, listeners) = (config.listen, stop_listening.clone(), &listeners);
                async move {
                    if started.elapsed() > config.time_limit {
                        limit_hit.store(true, Ordering::Relaxed);
                        return None;
                    }
                    let handle = tokio::spawn(async move {
                        let began = Instant::now();
                        let r = phone.boot_with(&transport, Some(&parses)).await;
                        let micros = began.elapsed().as_micros() as u64;
                        (r.requests, r.problems, micros, phone, transport)
                    });
                    let out =
                        handle
                            .await
                            .ok()
                            .map(|(requests, problems, micros, phone, transport)| {
                                if let Some(l) = listen {
                                    let port = l.base_port.checked_add(i as u16);
                                    let task =
                                        tokio::spawn(keep_listening(phone, transport, port, stop));
                                    listeners
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .push(task);
                                }
                                (requests, problems, micros)
                            });
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                    out
                }
            })
            .buffer_unordered(config.concurrency.max(1))
            .filter_map(|r| async move { r })
            .collect()
            .await;
    let seconds = started.elapsed().as_secs_f64();

    let mut report = StormReport {
        seconds,
        stopped_by_time_limit: limit_hit.load(Ordering::Relaxed),
        ..Default::default()
    };
    let handles = std::mem::take(&mut *listeners.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some(l) = config.listen {
        listening(handles.len());
        tokio::time::sleep(Duration::from_secs(l.secs)).await;
        stop_listening.cancel();
        for h in handles {
            match h.await {
                Ok(Ok(n)) => {
                    report.listening += 1;
                    report.notifies_acted += n;
                }
                Ok(Err(e)) => report.listen_errors.push(e),
                Err(e) => report.listen_errors.push(e.to_string()),
            }
        }
    }
    let mut by_kind: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut boots = Vec::with_capacity(results.len());
    for (requests, problems, micros) in results {
        report.phones_booted += 1;
        boots.push(micros);
        for q in requests {
            report.requests += 1;
            report.bytes += q.bytes;
            *report.statuses.entry(q.status).or_default() += 1;
            by_kind.entry(q.kind.clone()).or_default().push(q.micros);
            if q.status == 0 || q.status >= 500 {
                report.error_count += 1;
                if report.errors.len() < 100 {
                    report
                        .errors
                        .push(format!("{} {} -> {}", q.method, q.path, q.status));
                }
            }
        }
        for p in problems
            .into_iter()
            .filter(|p| p.contains("cannot reach") || p.contains("no usable master"))
        {
            report.error_count += 1;
            if report.errors.len() < 100 {
                report.errors.push(p);
            }
        }
    }
    for (kind, v) in by_kind {
        report.latency.insert(kind, Latency::of(v));
    }
    report.boot = Latency::of(boots);
    if seconds > 0.0 {
        report.requests_per_second = report.requests as f64 / seconds;
        report.phones_per_second = report.phones_booted as f64 / seconds;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (
                percentile(&v, 0.5),
                percentile(&v, 0.99),
                percentile(&[], 0.5)
            ),
            (51, 99, 0)
        );
    }
}
