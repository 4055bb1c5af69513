//! Prometheus text metrics: runs by status, request latency as a histogram, the pool
//! and the file store.

use crate::jail::pool::Pool;
use crate::request::FileCache;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    runs: BTreeMap<&'static str, u64>,
    responses: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One run ended with go-judge's `status`.
    pub fn run(&self, status: &'static str) {
        *self.lock().runs.entry(status).or_default() += 1;
    }

    /// One request answered with `status` after `took`.
    pub fn request(&self, status: u16, took: Duration) {
        let mut m = self.lock();
        *m.responses.entry(status).or_default() += 1;
        let s = took.as_secs_f64();
        m.count += 1;
        m.sum += s;
        for (i, le) in BUCKETS.iter().enumerate() {
            if s <= *le {
                m.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self, pool: Option<&Pool>, store: &FileCache) -> String {
        let m = self.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP moat_runs_total Runs ended, by go-judge status."
        );
        let _ = writeln!(out, "# TYPE moat_runs_total counter");
        for (s, n) in &m.runs {
            let _ = writeln!(out, "moat_runs_total{{status=\"{s}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP moat_http_responses_total Responses, by HTTP status."
        );
        let _ = writeln!(out, "# TYPE moat_http_responses_total counter");
        for (s, n) in &m.responses {
            let _ = writeln!(out, "moat_http_responses_total{{code=\"{s}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP moat_request_seconds Time from a request read to its response."
        );
        let _ = writeln!(out, "# TYPE moat_request_seconds histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "moat_request_seconds_bucket{{le=\"{le}\"}} {}",
                m.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "moat_request_seconds_bucket{{le=\"+Inf\"}} {}",
            m.count
        );
        let _ = writeln!(out, "moat_request_seconds_sum {}", m.sum);
        let _ = writeln!(out, "moat_request_seconds_count {}", m.count);
        if let Some(p) = pool {
            let s = p.stats();
            let _ = writeln!(out, "# HELP moat_pool_ready Jails made ahead and waiting.");
            let _ = writeln!(out, "# TYPE moat_pool_ready gauge");
            let _ = writeln!(out, "moat_pool_ready {}", s.ready);
            let _ = writeln!(out, "# TYPE moat_pool_target gauge");
            let _ = writeln!(out, "moat_pool_target {}", s.target);
            let _ = writeln!(out, "# TYPE moat_pool_taken_total counter");
            let _ = writeln!(out, "moat_pool_taken_total {}", s.taken);
            let _ = writeln!(out, "# TYPE moat_pool_made_on_demand_total counter");
            let _ = writeln!(out, "moat_pool_made_on_demand_total {}", s.made_on_demand);
        }
        let (files, bytes) = store.usage();
        let _ = writeln!(
            out,
            "# HELP moat_file_store_bytes Bytes held by the file store."
        );
        let _ = writeln!(out, "# TYPE moat_file_store_bytes gauge");
        let _ = writeln!(out, "moat_file_store_bytes {bytes}");
        let _ = writeln!(out, "# TYPE moat_file_store_files gauge");
        let _ = writeln!(out, "moat_file_store_files {files}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let m = Metrics::default();
        m.request(200, Duration::from_micros(700));
        m.request(400, Duration::from_millis(3));
        m.run("Accepted");
        let text = m.render(None, &FileCache::new(10));
        assert!(
            text.contains("moat_request_seconds_bucket{le=\"0.0005\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("moat_request_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("moat_request_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("moat_request_seconds_count 2\n"));
        assert!(text.contains("moat_runs_total{status=\"Accepted\"} 1\n"));
        assert!(text.contains("moat_http_responses_total{code=\"400\"} 1\n"));
        assert!(text.contains("moat_file_store_bytes 0\n"));
    }
}
