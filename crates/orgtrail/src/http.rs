//! The HTTP listener of `orgtrail run` (`--metrics-listen`, default 127.0.0.1:9464): Prometheus
//! `/metrics`, the probes `/healthz` (alive) and `/readyz` (started and the state database answers),
//! and read-only JSON: `/health/sources`, `/health/sources/{name}`, `/alarms`.
//!
//! Nothing served here can hold an API key: health and alarms come from the state store's health
//! and alarm tables, which never contain one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use orgtrail_engine::WallClock;
use orgtrail_state::StateStore;
use tokio_util::sync::CancellationToken;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub prom: PrometheusHandle,
    pub store: Arc<dyn StateStore>,
    pub ready: Arc<AtomicBool>,
    pub clock: Arc<dyn WallClock>,
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        )
            .into_response(),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prom.render(),
    )
        .into_response()
}

/// Liveness: the process answers. The body summarizes every source (a failing source does not
/// make the process unhealthy: see `/health/sources` and the alarms).
async fn healthz(State(s): State<HttpState>) -> Response {
    let sources = match orgtrail_engine::health_reports(s.store.as_ref(), s.clock.now()).await {
        Ok(r) => r
            .into_iter()
            .map(
                |r| serde_json::json!({ "name": r.name, "status": r.status, "reasons": r.reasons }),
            )
            .collect::<Vec<_>>(),
        Err(e) => {
            return json(
                StatusCode::OK,
                &serde_json::json!({ "status": "ok", "sources_error": e.to_string() }),
            );
        }
    };
    json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ok", "sources": sources }),
    )
}

/// Readiness: the collector has started (config synced, monitor evaluated once) and the state
/// database answers.
async fn readyz(State(s): State<HttpState>) -> Response {
    if !s.ready.load(Ordering::SeqCst) {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "ready": false, "reason": "starting" }),
        );
    }
    match s.store.list_sources().await {
        Ok(_) => json(StatusCode::OK, &serde_json::json!({ "ready": true })),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "ready": false, "reason": e.to_string() }),
        ),
    }
}

async fn sources_health(State(s): State<HttpState>) -> Response {
    match orgtrail_engine::health_reports(s.store.as_ref(), s.clock.now()).await {
        Ok(r) => json(StatusCode::OK, &r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn source_health(State(s): State<HttpState>, Path(name): Path<String>) -> Response {
    let source = match s.store.find_source(&name).await {
        Ok(Some(src)) => src,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no source named or with id {name:?}; GET /health/sources lists them"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match orgtrail_engine::source_health_report(s.store.as_ref(), &source, s.clock.now()).await {
        Ok(r) => json(StatusCode::OK, &r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn alarms(State(s): State<HttpState>) -> Response {
    let alarms = orgtrail_engine::list_alarms(s.store.as_ref(), None).await;
    let history = orgtrail_engine::alarm_history(s.store.as_ref(), None, 100).await;
    match (alarms, history) {
        (Ok(a), Ok(h)) => json(
            StatusCode::OK,
            &serde_json::json!({ "alarms": a, "history": h }),
        ),
        (Err(e), _) | (_, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Serves until `shutdown`; runs the recorder's upkeep meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) {
    let prom = state.prom.clone();
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(5)) => prom.run_upkeep(),
            }
        }
    });
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/health/sources", get(sources_health))
        .route("/health/sources/{name}", get(source_health))
        .route("/alarms", get(alarms))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        eprintln!("warning: the metrics listener stopped: {e}");
    }
}
