//! The daemon's HTTP endpoint (axum), on loopback unless configured:
//!
//! * `GET /metrics` — the Prometheus exposition ([`crate::metrics`]): OpenMetrics
//!   when the `Accept` header asks for it (Prometheus does), else the text format 0.0.4;
//! * `GET /healthz` — alive (200 while the process serves);
//! * `GET /readyz` — 200 once the first collection and forecast succeeded,
//!   503 before, and again from the start of shutdown;
//! * `GET /api/v1/targets`, `/api/v1/forecasts`, `/api/v1/decisions` — JSON:
//!   per target its last decision, health and notes; the latest forecast per
//!   target with its quantile paths (p10, p50, p90, p95, p99); the latest
//!   decisions with their reasons, guardrails and outcomes;
//! * `POST /-/reload` — re-reads the config: 200, or 400 with every problem.
//!
//! With `daemon.bearer_token_file`, every request but `/healthz` must carry
//! `Authorization: Bearer <token>`; the file is read at every request, so a
//! rotated token applies without a restart. The token is never logged.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::state::Daemon;

/// Serves until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, d: Arc<Daemon>, stop: CancellationToken) {
    let app = router(d);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
        tracing::error!("HTTP endpoint stopped: {e}");
    }
}

/// The routes, with the bearer-token check in front.
pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/forecasts", get(forecasts))
        .route("/api/v1/decisions", get(decisions))
        .route("/-/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(d.clone(), authorize))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(d)
}

/// OpenMetrics to whoever asks for it (Prometheus does), else the text
/// format 0.0.4 (`curl … | promtool check metrics`).
async fn metrics(State(d): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    let openmetrics =
        headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(crate::metrics::wants_openmetrics);
    if openmetrics {
        ([(header::CONTENT_TYPE, crate::metrics::OPENMETRICS)], d.metrics.encode()).into_response()
    } else {
        ([(header::CONTENT_TYPE, crate::metrics::TEXT)], d.metrics.encode_text()).into_response()
    }
}

async fn readyz(State(d): State<Arc<Daemon>>) -> Response {
    if d.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if d.stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for the first collection and forecast\n").into_response()
    }
}

async fn targets(State(d): State<Arc<Daemon>>) -> Response {
    let settings = d.settings();
    let status = d.status();
    let targets: Vec<_> = settings
        .policy
        .targets
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "platform": t.platform,
                "entity": t.entity,
                "metric": t.metric,
                "mode": t.mode,
                "enforced": d.options.enforce && t.mode == headroom_core::Mode::Enforce,
                "status": status.targets.get(&t.name),
            })
        })
        .collect();
    axum::Json(json!({ "targets": targets, "jobs": status.jobs, "last_reload": status.last_reload })).into_response()
}

async fn forecasts(State(d): State<Arc<Daemon>>) -> Response {
    let settings = d.settings();
    let Some(f) = d.forecasts() else {
        return axum::Json(json!({ "made": null, "forecasts": [] })).into_response();
    };
    let out: Vec<_> = settings
        .policy
        .targets
        .iter()
        .filter_map(|t| {
            let f = f.current.iter().find(|f| f.key.entity == t.entity && f.key.metric == t.metric)?;
            let ts: Vec<String> = (0..f.q.len()).map(|i| headroom_core::format_ts(f.ts(i))).collect();
            let mut out = json!({
                "target": t.name,
                "series": f.key.to_string(),
                "model": f.model,
                "origin": headroom_core::format_ts(f.origin_ms),
                "ts": ts,
            });
            // Every quantile path by its column name: p10, p50, p90, p95, p99.
            for (name, path) in f.q.paths() {
                out[name] = json!(path);
            }
            Some(out)
        })
        .collect();
    let fallbacks: Vec<_> = f.fallbacks.iter().collect();
    axum::Json(json!({ "made": headroom_core::format_ts(f.made_ms), "forecasts": out, "fallbacks": fallbacks }))
        .into_response()
}

async fn decisions(State(d): State<Arc<Daemon>>) -> Response {
    let status = d.status();
    let latest: Vec<_> = status.decisions.iter().rev().collect();
    axum::Json(json!({ "decisions": latest })).into_response()
}

async fn reload(State(d): State<Arc<Daemon>>) -> Response {
    match d.reload().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({ "reloaded": true }))).into_response(),
        Err(problems) => {
            (StatusCode::BAD_REQUEST, axum::Json(json!({ "reloaded": false, "problems": problems }))).into_response()
        }
    }
}

/// The bearer token in `path`, read at every request (a few bytes), so a
/// rotated token applies at once, whatever the file's times say.
fn read_token(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

async fn authorize(State(d): State<Arc<Daemon>>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let Some(path) = d.settings().daemon.bearer_token_file.clone() else {
        return next.run(request).await;
    };
    let want = match read_token(&path) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) | Err(_) => {
            tracing::error!(file = %path.display(), "daemon.bearer_token_file cannot be read or is empty: refusing every request");
            d.metrics.error("auth");
            return (StatusCode::SERVICE_UNAVAILABLE, "the bearer token file cannot be read\n").into_response();
        }
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), want.as_bytes())) {
        next.run(request).await
    } else {
        d.metrics.error("auth");
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a valid bearer token is required\n")
            .into_response()
    }
}

/// Compares without stopping at the first difference (no timing hint about the token).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
