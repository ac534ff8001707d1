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
    /// Answers by status (0 = no answer).
    pub statuses: BTreeMap<u16, usize>,
    /// Transport failures and 5xx answers, and problems phones reported (first 100 kept).
    pub errors: Vec<String>,
    pub error_count: usize,
    /// True when the time limit stopped the storm before every phone booted.
    pub stopped_by_time_limit: bool,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Boots `config.phones` phones of `model`; `progress` is called with the count done so far.
pub async fn run(
    config: &StormConfig,
    model: &Model,
    progress: impl Fn(usize) + Send + Sync,
) -> Result<StormReport, String> {
    let parses = Arc::new(ParseCache::default());
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let limit_hit = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<(Vec<RequestRecord>, Vec<String>)> =
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
                async move {
                    if started.elapsed() > config.time_limit {
                        limit_hit.store(true, Ordering::Relaxed);
                        return None;
                    }
                    let handle = tokio::spawn(async move {
                        let r = phone.boot_with(&transport, Some(&parses)).await;
                        (r.requests, r.problems)
                    });
                    let out = handle.await.ok();
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
    let mut by_kind: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (requests, problems) in results {
        report.phones_booted += 1;
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
    for (kind, mut v) in by_kind {
        v.sort_unstable();
        report.latency.insert(
            kind,
            Latency {
                count: v.len(),
                p50: percentile(&v, 0.50),
                p90: percentile(&v, 0.90),
                p99: percentile(&v, 0.99),
                max: v.last().copied().unwrap_or(0),
            },
        );
    }
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
