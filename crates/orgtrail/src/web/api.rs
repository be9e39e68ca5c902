//! The JSON API under `/api/v1` (documented in the README). Every answer is JSON except CSV
//! downloads; every error is `{"error": code, "message": text}` (plus `field` and `kind` when they
//! apply) with a 4xx or 5xx status.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, extract::Query};
use orgtrail_state::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::App;
use super::auth::Identity;
use super::ops::{self, OpError, OpResult};

/// An error answer.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if let Some(k) = self.kind {
            body["kind"] = json!(k);
        }
        (self.status, Json(body)).into_response()
    }
}

/// A JSON body whose rejection is a JSON error with a message.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> Response {
    let status = rej.status();
    let message = match &rej {
        JsonRejection::MissingJsonContentType(_) => {
            "send a JSON body with Content-Type: application/json".to_owned()
        }
        _ => format!(
            "the request body is not what this route takes: {}",
            rej.body_text()
        ),
    };
    error(status, "bad_request", &message)
}

/// Query parameters whose rejection is a JSON error with a message.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(rej) => Err(query_rejection(rej)),
        }
    }
}

fn query_rejection(rej: QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        &format!("bad query parameters: {}", rej.body_text()),
    )
}

/// `null` → `Some(None)`, a value → `Some(Some(v))`, absent (with `#[serde(default)]`) → `None`.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such API route; see the README for the routes",
    )
}

/// `GET /api/v1/session`: who is calling, and the CSRF token a cookie session must send.
pub async fn session(Extension(ident): Extension<Identity>) -> Json<Value> {
    Json(match ident {
        Identity::Session { csrf } => json!({"auth": "session", "csrf_token": csrf}),
        Identity::Token { name } => json!({"auth": "token", "token_name": name}),
    })
}

/// `GET /api/v1/sources`
pub async fn list_sources(State(app): State<Arc<App>>) -> OpResult<Json<Value>> {
    Ok(Json(json!({"sources": ops::list_sources(&app).await?})))
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    org_id: String,
    api_key: String,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    key_expires_at: Option<String>,
    #[serde(default)]
    dropoff_alarm_minutes: Option<u32>,
    #[serde(default = "yes")]
    verify: bool,
}

/// `POST /api/v1/sources`: verifies the credentials live, saves, starts collecting.
pub async fn create_source(
    State(app): State<Arc<App>>,
    JsonBody(b): JsonBody<CreateBody>,
) -> OpResult<(StatusCode, Json<ops::SourceView>)> {
    let input = ops::CreateInput {
        name: b.name,
        org_id: b.org_id,
        api_key: SecretString::from(b.api_key),
        base_url: b.base_url,
        key_expires_at: b.key_expires_at,
        dropoff_alarm_minutes: b.dropoff_alarm_minutes,
    };
    let s = ops::create_source(&app, input, b.verify).await?;
    Ok((StatusCode::CREATED, Json(ops::source_view(&s))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    org_id: String,
    api_key: String,
    #[serde(default)]
    base_url: Option<String>,
}

/// `POST /api/v1/sources/verify`: checks credentials without saving anything.
pub async fn verify(
    State(_app): State<Arc<App>>,
    JsonBody(b): JsonBody<VerifyBody>,
) -> OpResult<Json<Value>> {
    let key = SecretString::from(b.api_key);
    let creds = ops::check_credentials(&b.org_id, &key, b.base_url.as_deref(), None)?;
    ops::verify(
        &creds.base_url,
        &creds.org_id,
        &SecretString::from(
            orgtrail_state::ExposeSecret::expose_secret(&key)
                .trim()
                .to_owned(),
        ),
    )
    .await?;
    Ok(Json(json!({
        "ok": true,
        "message": format!("the API key can read the audit log of organization {}", creds.org_id),
    })))
}

/// `GET /api/v1/sources/{id}` (id or name)
pub async fn get_source(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> OpResult<Json<ops::SourceDetail>> {
    Ok(Json(ops::source_detail(&app, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    key_expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    dropoff_alarm_minutes: Option<Option<u32>>,
    #[serde(default)]
    poll_interval_secs: Option<u32>,
}

/// `PATCH /api/v1/sources/{id}`: rename, rotate the key (verified first), change the base URL,
/// key expiry, drop-off alarm or poll interval.
pub async fn update_source(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UpdateBody>,
) -> OpResult<Json<ops::SourceView>> {
    let input = ops::UpdateInput {
        name: b.name,
        api_key: b.api_key.map(SecretString::from),
        base_url: b.base_url,
        key_expires_at: b.key_expires_at,
        dropoff_alarm_minutes: b.dropoff_alarm_minutes,
        poll_interval_secs: b.poll_interval_secs,
    };
    let s = ops::update_source(&app, &id, input).await?;
    Ok(Json(ops::source_view(&s)))
}

/// `POST /api/v1/sources/{id}/pause`
pub async fn pause(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> OpResult<Json<ops::SourceView>> {
    Ok(Json(ops::source_view(
        &ops::set_paused(&app, &id, true).await?,
    )))
}

/// `POST /api/v1/sources/{id}/resume`
pub async fn resume(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> OpResult<Json<ops::SourceView>> {
    Ok(Json(ops::source_view(
        &ops::set_paused(&app, &id, false).await?,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    #[serde(default)]
    force: bool,
}

/// `DELETE /api/v1/sources/{id}[?force=true]`: the source's data stays in the lake.
pub async fn delete_source(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Params(p): Params<DeleteParams>,
) -> OpResult<Json<Value>> {
    let s = ops::delete_source(&app, &id, p.force).await?;
    Ok(Json(json!({
        "deleted": s.id,
        "name": s.name,
        "message": "the source is removed; its data stays in the lake",
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitParams {
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/sources/{id}/failures[?limit=N]`: classification failures with their payloads.
pub async fn failures(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Params(p): Params<LimitParams>,
) -> OpResult<Json<Value>> {
    let s = app.store.get_source(&id).await.map_err(OpError::from)?;
    let f = ops::failures(&app, &s.id, p.limit.unwrap_or(50)).await?;
    Ok(Json(json!({"failures": f})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    sql: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    max_rows: Option<usize>,
    /// Answer as a file download (`Content-Disposition: attachment`).
    #[serde(default)]
    download: Option<bool>,
}

/// `GET /api/v1/query?sql=...&format=json|csv[&max_rows=N][&download=true]`
pub async fn query_get(State(app): State<Arc<App>>, Params(p): Params<QueryParams>) -> Response {
    query(&app, p)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /api/v1/query` with `{"sql": ..., "format": ..., "max_rows": ...}`
pub async fn query_post(
    State(app): State<Arc<App>>,
    JsonBody(p): JsonBody<QueryParams>,
) -> Response {
    query(&app, p)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn query(app: &App, p: QueryParams) -> OpResult<Response> {
    let format = p.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(OpError::invalid("format", "format must be json or csv"));
    }
    let max_rows = p.max_rows.unwrap_or(10_000);
    if max_rows == 0 || max_rows > ops::MAX_ROWS {
        return Err(OpError::invalid(
            "max_rows",
            format!("max_rows must be between 1 and {}", ops::MAX_ROWS),
        ));
    }
    let out = ops::run_query(app, &p.sql, max_rows).await?;
    result_response(&out, format, p.download.unwrap_or(false), None)
}

fn result_response(
    out: &ops::QueryOutput,
    format: &str,
    download: bool,
    sql: Option<&str>,
) -> OpResult<Response> {
    let truncated = if out.truncated { "true" } else { "false" };
    if format == "csv" {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"orgtrail-query.csv\"",
                ),
                (
                    header::HeaderName::from_static("x-orgtrail-truncated"),
                    truncated,
                ),
            ],
            ops::csv(out)?,
        )
            .into_response());
    }
    let rows = ops::json_rows(&out.batches)?;
    if download {
        return Ok((
            [
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"orgtrail-query.json\"",
                ),
                (
                    header::HeaderName::from_static("x-orgtrail-truncated"),
                    truncated,
                ),
            ],
            Json(rows),
        )
            .into_response());
    }
    let columns: Vec<Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut body = json!({
        "columns": columns,
        "rows": rows,
        "row_count": out.rows(),
        "truncated": out.truncated,
        "elapsed_ms": out.elapsed.as_millis(),
    });
    if let Some(sql) = sql {
        body["sql"] = json!(sql);
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    q: String,
    #[serde(default)]
    max_rows: Option<usize>,
}

/// `GET /api/v1/search?q=VALUE`: events whose `p_any_*` indicators contain VALUE exactly.
pub async fn search(
    State(app): State<Arc<App>>,
    Params(p): Params<SearchParams>,
) -> OpResult<Response> {
    let sql = ops::search_sql(&app, &p.q)?;
    let max_rows = p.max_rows.unwrap_or(200).clamp(1, ops::MAX_ROWS);
    let out = ops::run_query(&app, &sql, max_rows).await?;
    result_response(&out, "json", false, Some(&sql))
}

/// `GET /api/v1/alarms`: the current alarm states of every source, and the alarm history (newest
/// first).
pub async fn alarms(State(app): State<Arc<App>>) -> OpResult<Json<Value>> {
    let now = jiff::Timestamp::now();
    let mut current = Vec::new();
    for s in app.store.list_sources().await.map_err(OpError::from)? {
        let st = super::status::source_status(app.store.as_ref(), &s, now)
            .await
            .map_err(OpError::from)?;
        for a in st.alarms {
            current.push(json!({
                "source_id": s.id, "source_name": s.name,
                "alarm": a.alarm, "state": a.state, "message": a.message,
            }));
        }
    }
    let history = super::status::alarm_history(app.store.as_ref(), 500)
        .await
        .map_err(OpError::from)?;
    Ok(Json(json!({"current": current, "history": history})))
}
