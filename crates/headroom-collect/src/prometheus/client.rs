//! One HTTP exchange with Prometheus, and how it failed.
//!
//! [`Client`] sends the `query_range` request of one (query, chunk), reads
//! the answer and judges it: the series, a fatal error, or a [`Transient`]
//! failure the source retries by its [`Backoff`](headroom_core::retry::Backoff).

use std::fmt;
use std::time::{Duration, Instant};

use headroom_core::retry::parse_retry_after;
use headroom_core::{Span, format_ts};
use reqwest::{StatusCode, Url};
use tracing::{debug, warn};

use super::auth::Auth;
use super::chunk::{Chunk, fmt_seconds};
use super::config::{PrometheusConfig, display_url, parse_base_url};
use super::parse::{Answer, PulledSeries, parse_answer, snippet};
use super::source::Query;
use crate::error::{Error, Result};

/// Sends the requests of one source.
#[derive(Debug)]
pub(super) struct Client {
    /// The URL shown in logs and errors.
    pub(super) url: String,
    /// `…/api/v1/query_range`, with the base URL's query parameters.
    pub(super) endpoint: Url,
    pub(super) auth: Auth,
    http: reqwest::Client,
    step_ms: i64,
}

impl Client {
    /// Finds the endpoint, reads the credentials and builds the HTTP client
    /// (`cfg.timeout`, `cfg.ca_file`) of a validated config.
    pub(super) fn new(cfg: &PrometheusConfig) -> Result<Client> {
        let (url, endpoint) = query_range_endpoint(&cfg.url)?;
        let auth = Auth::read(cfg.auth.as_ref())?;
        let http = http_client(cfg)?;
        Ok(Client { url, endpoint, auth, http, step_ms: cfg.step.ms() })
    }

    /// One HTTP exchange: the request of `chunk` of `q`, its answer read and judged.
    pub(super) async fn attempt(
        &self,
        q: &Query,
        chunk: Chunk,
        ci: usize,
        attempt: u32,
    ) -> std::result::Result<Vec<PulledSeries>, Failure> {
        debug!(url = %self.url, query = %q.name, metric = %q.metric, chunk = ci,
               start = %format_ts(chunk.start_ms), end = %format_ts(chunk.end_ms),
               points = chunk.points(self.step_ms), attempt, "prometheus query_range");
        let sent = Instant::now();
        let response = self.request(q, chunk).send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        let bytes = body.len();
        let raw = body.clone();
        let answer = tokio::task::spawn_blocking(move || parse_answer(&body)).await.map_err(|e| {
            Failure::Fatal(Error::Prometheus { url: self.url.clone(), why: format!("reading the answer failed: {e}") })
        })?;
        debug!(url = %self.url, query = %q.name, chunk = ci, attempt, status = status.as_u16(), bytes,
               elapsed_ms = sent.elapsed().as_millis() as u64, "prometheus answered");
        self.judge(q, status, retry_after, answer, &raw)
    }

    /// The GET of `chunk` of `q`, with the credentials.
    fn request(&self, q: &Query, chunk: Chunk) -> reqwest::RequestBuilder {
        let (start, end, step) = (fmt_seconds(chunk.start_ms), fmt_seconds(chunk.end_ms), fmt_seconds(self.step_ms));
        let request = self.http.get(self.endpoint.clone()).query(&[
            ("query", q.promql.as_str()),
            ("start", &start),
            ("end", &end),
            ("step", &step),
        ]);
        self.auth.apply(request)
    }

    /// How an exchange without a (complete) answer failed.
    fn transport(&self, e: reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure::Transient(Transient::Timeout)
        } else if e.is_connect() {
            Failure::Transient(Transient::Connect(error_chain(e)))
        } else if e.is_builder() || e.is_redirect() || e.is_decode() {
            Failure::Fatal(Error::Prometheus { url: self.url.clone(), why: error_chain(e) })
        } else {
            Failure::Transient(Transient::Transport(error_chain(e)))
        }
    }

    /// What an answer means: the series; a PromQL error; a failure worth
    /// retrying (429, 5xx); or any other failure, quoting the body `raw`.
    fn judge(
        &self,
        q: &Query,
        status: StatusCode,
        retry_after: Option<Duration>,
        answer: std::result::Result<Answer, String>,
        raw: &[u8],
    ) -> std::result::Result<Vec<PulledSeries>, Failure> {
        let fatal = |why: String| Failure::Fatal(Error::Prometheus { url: self.url.clone(), why });
        let promql = |error_type, message| {
            Failure::Fatal(Error::PromQl { url: self.url.clone(), query: q.promql.clone(), error_type, message })
        };
        if status.is_success() {
            return match answer {
                Ok(Answer::Matrix { series, warnings }) => {
                    for w in warnings {
                        warn!(url = %self.url, query = %q.name, warning = %w, "prometheus warning");
                    }
                    Ok(series)
                }
                Ok(Answer::Error { error_type, message }) => Err(promql(error_type, message)),
                Err(why) => Err(fatal(format!("{} (metric {:?}): {why}", q.name, q.metric))),
            };
        }
        if is_retryable_status(status) {
            let detail = match answer {
                Ok(Answer::Error { error_type, message }) => format!("{error_type}: {message}"),
                _ => format!("{:?}", snippet(raw)),
            };
            return Err(Failure::Transient(Transient::Status { status, detail, retry_after }));
        }
        match answer {
            Ok(Answer::Error { error_type, message }) => Err(promql(error_type, message)),
            _ => Err(fatal(format!(
                "{} (metric {:?}): HTTP {status}{}; the answer starts with {:?}",
                q.name,
                q.metric,
                status_hint(status),
                snippet(raw)
            ))),
        }
    }
}

/// The URL shown in logs and errors, and the `query_range` endpoint under
/// the base URL `text` (its query parameters, e.g. Thanos' `dedup=true`,
/// are sent with every request).
fn query_range_endpoint(text: &str) -> Result<(String, Url)> {
    let base = parse_base_url(text)?;
    let url = display_url(&base);
    let mut endpoint = base.clone();
    if !endpoint.path().ends_with('/') {
        endpoint.set_path(&format!("{}/", endpoint.path()));
    }
    let mut endpoint = endpoint
        .join("api/v1/query_range")
        .map_err(|e| Error::Config(format!("prometheus.url = {url:?}: cannot add the API path ({e})")))?;
    endpoint.set_query(base.query());
    Ok((url, endpoint))
}

/// The HTTP client: `cfg.timeout` per request, and only the CAs of
/// `cfg.ca_file` when set. Needs a rustls crypto provider installed.
fn http_client(cfg: &PrometheusConfig) -> Result<reqwest::Client> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        return Err(Error::Config(
            "no TLS crypto provider is installed in this process; call \
             rustls::crypto::ring::default_provider().install_default() at start-up"
                .into(),
        ));
    }
    let mut builder =
        reqwest::Client::builder().timeout(cfg.timeout.0).user_agent(concat!("headroom/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(Error::io(path))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::Config(format!("prometheus.ca_file = {}: not a PEM certificate bundle ({e})", path.display()))
        })?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "prometheus.ca_file = {}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| Error::Config(format!("prometheus: cannot build the HTTP client: {}", error_chain(e))))
}

/// The `Retry-After` of an answer, when it gives seconds.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after)
}

/// Whether an HTTP status is worth retrying: 429 and every 5xx.
fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// What to check for a non-retryable status without a Prometheus error body.
fn status_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => " (check prometheus.auth)",
        404 => " (is prometheus.url the Prometheus base URL, without /api/v1?)",
        _ => "",
    }
}

/// Why one attempt failed in a way worth retrying.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Transient {
    /// No connection could be opened.
    Connect(String),
    /// No complete answer within the timeout.
    Timeout,
    /// A 5xx or 429 answer.
    Status { status: StatusCode, detail: String, retry_after: Option<Duration> },
    /// The connection broke during the exchange.
    Transport(String),
}

impl Transient {
    /// The wait the server asked for (`Retry-After`), if it did.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            Transient::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The message after the last attempt.
    pub(super) fn give_up(&self, attempts: u32, timeout: Span) -> String {
        match self {
            Transient::Connect(cause) => format!("could not connect after {attempts} attempts: {cause}"),
            Transient::Timeout => format!(
                "no complete answer within the timeout of {timeout} after {attempts} attempts; \
                 raise prometheus.timeout or lower prometheus.max_points_per_request"
            ),
            Transient::Status { status, detail, .. } => {
                format!("gave up after {attempts} attempts; the last answer was HTTP {status}: {detail}")
            }
            Transient::Transport(cause) => format!("request failed after {attempts} attempts: {cause}"),
        }
    }
}

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transient::Connect(cause) => write!(f, "cannot connect: {cause}"),
            Transient::Timeout => f.write_str("timed out"),
            Transient::Status { status, detail, .. } => write!(f, "HTTP {status}: {detail}"),
            Transient::Transport(cause) => write!(f, "{cause}"),
        }
    }
}

/// An error and its causes on one line, without the request URL (which holds the query).
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut out = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// How one attempt ended, when it did not succeed.
pub(super) enum Failure {
    /// Retrying cannot help.
    Fatal(Error),
    /// Retrying may help.
    Transient(Transient),
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::PrometheusSource;
    use super::super::fixtures::{config, install_tls};
    use super::*;

    #[test]
    fn only_429_and_5xx_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 400, 401, 403, 404, 422] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn give_up_messages_count_attempts() {
        let t = Transient::Connect("tcp connect error: Connection refused".into());
        assert_eq!(
            t.give_up(5, Span::from_secs(30)),
            "could not connect after 5 attempts: tcp connect error: Connection refused"
        );
        let t = Transient::Timeout;
        assert!(t.give_up(3, Span::from_secs(30)).contains("timeout of 30s after 3 attempts"));
        let t = Transient::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: "timeout: query timed out".into(),
            retry_after: None,
        };
        assert!(
            t.give_up(2, Span::from_secs(1)).contains(
                "after 2 attempts; the last answer was HTTP 503 Service Unavailable: timeout: query timed out"
            )
        );
    }

    #[test]
    fn ca_files_are_checked() {
        install_tls();
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("ca.pem");
        std::fs::write(&bogus, "not a certificate\n").unwrap();
        let mut cfg = config();
        cfg.ca_file = Some(bogus.clone());
        let err = PrometheusSource::new(cfg.clone()).unwrap_err().to_string();
        assert!(err.contains("prometheus.ca_file") && err.contains("no PEM certificate"), "{err}");
        cfg.ca_file = Some(dir.path().join("missing.pem"));
        let err = PrometheusSource::new(cfg.clone()).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let system = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        if system.exists() {
            cfg.ca_file = Some(system);
            PrometheusSource::new(cfg).unwrap();
        }
    }
}
