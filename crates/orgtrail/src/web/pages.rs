//! The server-rendered pages (maud escapes every value). Forms post back to these routes, which
//! call the same operations as the API (`ops`), then redirect (or re-render with the error and
//! what was typed, never the API key).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};
use orgtrail_state::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::auth::{self, ClientIp, Identity, LOGIN_COOKIE, SESSION_COOKIE};
use super::ops::{self, OpError};
use super::status::{self, Health};
use super::{App, PENDING_TTL, Pending};

// ----- helpers -----

pub fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn render(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Html(m.into_string()),
    )
        .into_response()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · orgtrail" }
            link rel="stylesheet" href="/static/app.css";
            script src="/static/app.js" defer {}
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Sources,
    Explorer,
    Errors,
}

fn page(title: &str, nav: Nav, ident: &Identity, body: Markup) -> Markup {
    page_with(title, nav, ident, None, body)
}

/// A page; `refresh` makes app.js reload it every so many seconds.
fn page_with(
    title: &str,
    nav: Nav,
    ident: &Identity,
    refresh: Option<u32>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-autorefresh=[refresh] {
                header.topbar {
                    a.brand href="/sources" { "orgtrail" }
                    nav.mainnav {
                        a.active[nav == Nav::Sources] href="/sources" { "Log Sources" }
                        a.active[nav == Nav::Explorer] href="/explorer" { "Data Explorer" }
                        a.active[nav == Nav::Errors] href="/system-errors" { "System Errors" }
                    }
                    form.logout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(ident.csrf());
                        button.linkish type="submit" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main.narrow {
                    p.brand-big { "orgtrail" }
                    (body)
                }
            }
        }
    }
}

/// A page with a title and a sentence (errors outside the normal flow).
pub fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    render(
        status,
        bare(
            title,
            html! {
                h1 { (title) }
                p { (text) }
                p { a href="/sources" { "Back to the console" } }
            },
        ),
    )
}

fn error_box(e: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = e {
            div.alert.error role="alert" { (e) }
        }
    }
}

fn notice(msg: Option<&str>) -> Markup {
    let text = match msg {
        Some("created") => "The source is set up; collection has started.",
        Some("renamed") => "The source was renamed.",
        Some("key_rotated") => "The new API key was verified and saved.",
        Some("alarm_saved") => "The drop-off alarm was saved.",
        Some("expiry_saved") => "The key's expiry date was saved.",
        Some("paused") => "The source is paused.",
        Some("resumed") => "The source is collecting again.",
        Some("deleted") => "The source was deleted; its data stays in the lake.",
        _ => return html! {},
    };
    html! { div.alert.ok role="status" { (text) } }
}

fn csrf_field(ident: &Identity) -> Markup {
    html! { input type="hidden" name="csrf" value=(ident.csrf()); }
}

fn when(t: Option<Timestamp>, now: Timestamp) -> Markup {
    match t {
        None => html! { span.muted { "never" } },
        Some(t) => html! {
            time datetime=(t.to_string()) title=(t.to_string()) {
                (t.strftime("%Y-%m-%d %H:%M UTC").to_string()) " "
                span.muted { "(" (ops::ago(t, now)) ")" }
            }
        },
    }
}

fn when_str(t: Option<&str>, now: Timestamp) -> Markup {
    when(t.and_then(|s| s.parse().ok()), now)
}

fn health_badge(h: Health) -> Markup {
    let class = match h {
        Health::Healthy => "badge good",
        Health::Unhealthy => "badge bad",
        Health::Paused => "badge idle",
        Health::Starting => "badge wait",
    };
    html! { span class=(class) { (h.label()) } }
}

fn alarm_badge(a: &status::AlarmState) -> Markup {
    let class = match a.state {
        "OK" => "badge good",
        "ALARM" => "badge bad",
        _ => "badge wait",
    };
    let name = match a.alarm {
        "SOURCE_NO_DATA" => "Drop-off",
        "SOURCE_FAILING" => "Failing",
        other => other,
    };
    html! { span class=(class) title=(a.message) { (name) ": " (a.state) } }
}

/// A bar chart of hourly counts, rendered on the server as inline SVG.
fn chart(hourly: &[u64], width: u32, height: u32, label: &str) -> Markup {
    let n = u32::try_from(hourly.len().max(1)).unwrap_or(24);
    let max = hourly.iter().copied().max().unwrap_or(0).max(1);
    let slot = width / n;
    let bar = slot.saturating_sub(1).max(1);
    html! {
        svg.chart viewBox=(format!("0 0 {width} {height}")) width=(width) height=(height)
            role="img" aria-label=(label) preserveAspectRatio="none" {
            title { (label) }
            line x1="0" y1=(height - 1) x2=(width) y2=(height - 1) class="axis" {}
            @for (i, v) in hourly.iter().enumerate() {
                @let h = if *v == 0 { 0 } else {
                    // Scaled bar height, at least one pixel for any event.
                    u32::try_from((u128::from(*v) * u128::from(height - 2)).div_ceil(u128::from(max))).unwrap_or(height)
                };
                @let x = u32::try_from(i).unwrap_or(0) * slot;
                rect x=(x) y=(height - 1 - h) width=(bar) height=(h) class="bar" {
                    title { (v) " events" }
                }
            }
        }
    }
}

fn steps(current: u8) -> Markup {
    let items = ["Name", "Credentials", "Confirm"];
    html! {
        ol.steps {
            @for (i, s) in items.iter().enumerate() {
                @let n = u8::try_from(i + 1).unwrap_or(0);
                li.current[n == current].done[n < current] { span.num { (n) } (s) }
            }
        }
    }
}

fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/sources".to_owned(),
    }
}

fn redirect(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn op_page(e: &OpError) -> Response {
    message_page(e.status, "Something went wrong", &e.message)
}

// ----- login, first run, logout -----

#[derive(Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

fn login_page(csrf: &str, next: &str, error: Option<&str>) -> Markup {
    bare(
        "Log in",
        html! {
            h1 { "Log in" }
            (error_box(error))
            form.card method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="password" { "Admin password" }
                input #password type="password" name="password" autocomplete="current-password" required autofocus;
                button.primary type="submit" { "Log in" }
            }
            p.muted { "Forgot the password? Set a new one on the server with " code { "orgtrail console password" } "." }
        },
    )
}

/// The pre-session cookie value (reused, or new with its `Set-Cookie`).
fn login_cookie(
    app: &App,
    headers: &HeaderMap,
) -> Result<(String, Option<header::HeaderValue>), OpError> {
    if let Some(v) = auth::cookie_value(headers, LOGIN_COOKIE).filter(|v| v.len() >= 32) {
        return Ok((v.to_owned(), None));
    }
    let v = auth::random_token(32)?;
    let c = app.auth.cookie(LOGIN_COOKIE, &v, Some(3600));
    Ok((v, Some(c)))
}

fn with_cookie(mut resp: Response, cookie: Option<header::HeaderValue>) -> Response {
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

pub async fn login_form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Query(p): axum::extract::Query<NextParam>,
) -> Response {
    if !app.auth.has_password() {
        return redirect("/setup");
    }
    let (csrf, cookie) = match login_cookie(&app, &headers) {
        Ok(x) => x,
        Err(e) => return op_page(&e),
    };
    let next = safe_next(p.next.as_deref());
    with_cookie(
        render(StatusCode::OK, login_page(&csrf, &next, None)),
        cookie,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    password: String,
    next: Option<String>,
    csrf: String,
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = message_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!("Too many failed attempts from this address. Try again in {secs} seconds."),
    );
    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn session_response(app: &App, to: &str) -> Response {
    match app.auth.new_session() {
        Ok(id) => {
            let mut r = redirect(to);
            r.headers_mut().append(
                header::SET_COOKIE,
                app.auth.cookie(SESSION_COOKIE, &id, None),
            );
            r
        }
        Err(e) => op_page(&OpError::from(e)),
    }
}

pub async fn login(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Err(wait) = app.auth.login_allowed(ip) {
        return too_many(wait);
    }
    let Some(hash) = app.auth.password_hash() else {
        return redirect("/setup");
    };
    let password = f.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let next = safe_next(f.next.as_deref());
    if !ok {
        app.auth.login_failed(ip);
        return render(
            StatusCode::UNAUTHORIZED,
            login_page(&f.csrf, &next, Some("Wrong password.")),
        );
    }
    session_response(&app, &next)
}

fn setup_page(csrf: &str, error: Option<&str>) -> Markup {
    bare(
        "First run",
        html! {
            h1 { "Choose the admin password" }
            p { "This is the first run of the console. Enter the setup code printed where orgtrail was started, then choose the admin password (at least " (auth::MIN_PASSWORD_CHARS) " characters)." }
            (error_box(error))
            form.card method="post" action="/setup" {
                input type="hidden" name="csrf" value=(csrf);
                label for="code" { "Setup code" }
                input #code type="text" name="setup_code" autocomplete="off" required autofocus;
                label for="password" { "Admin password" }
                input #password type="password" name="password" autocomplete="new-password" required minlength=(auth::MIN_PASSWORD_CHARS);
                label for="confirm" { "Admin password, again" }
                input #confirm type="password" name="confirm" autocomplete="new-password" required;
                button.primary type="submit" { "Save and log in" }
            }
        },
    )
}

pub async fn setup_form(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.auth.has_password() {
        return redirect("/login");
    }
    let (csrf, cookie) = match login_cookie(&app, &headers) {
        Ok(x) => x,
        Err(e) => return op_page(&e),
    };
    with_cookie(render(StatusCode::OK, setup_page(&csrf, None)), cookie)
}

#[derive(Deserialize)]
pub struct SetupForm {
    setup_code: String,
    password: String,
    confirm: String,
    csrf: String,
}

pub async fn setup(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Form(f): Form<SetupForm>,
) -> Response {
    if app.auth.has_password() {
        return redirect("/login");
    }
    if let Err(wait) = app.auth.login_allowed(ip) {
        return too_many(wait);
    }
    if !app.auth.check_setup_code(&f.setup_code) {
        app.auth.login_failed(ip);
        return render(
            StatusCode::UNAUTHORIZED,
            setup_page(
                &f.csrf,
                Some("Wrong setup code: use the one printed where orgtrail was started."),
            ),
        );
    }
    if let Err(e) = auth::check_new_password(&f.password, &f.confirm) {
        return render(StatusCode::BAD_REQUEST, setup_page(&f.csrf, Some(&e)));
    }
    let password = f.password;
    let hash = match tokio::task::spawn_blocking(move || auth::hash_password(&password)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return op_page(&OpError::from(e)),
        Err(e) => return op_page(&OpError::from(anyhow::anyhow!("{e}"))),
    };
    if let Err(e) = app.auth.set_first_password(hash) {
        return op_page(&OpError::from(e));
    }
    session_response(&app, "/sources")
}

pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(id) = auth::cookie_value(&headers, SESSION_COOKIE) {
        app.auth.end_session(id);
    }
    let mut r = redirect("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        app.auth.cookie(SESSION_COOKIE, "", Some(0)),
    );
    r
}

// ----- log sources -----

pub async fn home() -> Response {
    redirect("/sources")
}

#[derive(Deserialize)]
pub struct MsgParam {
    msg: Option<String>,
}

pub async fn sources(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    axum::extract::Query(p): axum::extract::Query<MsgParam>,
) -> Response {
    let rows = match ops::list_sources(&app).await {
        Ok(r) => r,
        Err(e) => return op_page(&e),
    };
    let now = Timestamp::now();
    let body = html! {
        div.pagehead {
            h1 { "Log Sources" }
            a.button.primary href="/sources/new" { "Create New" }
        }
        (notice(p.msg.as_deref()))
        @if rows.is_empty() {
            div.card.empty {
                p { "No log sources yet." }
                p { a.button.primary href="/sources/new" { "Create New" } }
            }
        } @else {
            div.tablewrap {
                table.list.cards #sources {
                    thead { tr {
                        th { "Name" } th { "Type" } th { "Health" } th { "Last event received" }
                        th.num { "Events (24 h)" } th { "Alarms" } th { "Events over time" }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td data-label="Name" { a href=(format!("/sources/{}", r.source.id)) { (r.source.name) } }
                                td data-label="Type" { "Atlassian" }
                                td data-label="Health" { (health_badge(r.status.health)) }
                                td data-label="Last event received" { (when(r.status.last_event_at, now)) }
                                td.num data-label="Events (24 h)" { (r.activity.events_24h) }
                                td data-label="Alarms" {
                                    @if r.status.alarms.is_empty() { span.muted { "none" } }
                                    @for a in &r.status.alarms { (alarm_badge(a)) " " }
                                }
                                td data-label="Events over time" {
                                    (chart(&r.activity.hourly, 120, 28, &format!("{} events in the last 24 hours, per hour", r.activity.events_24h)))
                                }
                            }
                        }
                    }
                }
            }
            p.muted.small { "Events (24 h) and the chart count events by event time, per hour. The page refreshes every 30 seconds." }
        }
    };
    render(
        StatusCode::OK,
        page_with("Log Sources", Nav::Sources, &ident, Some(30), body),
    )
}

pub async fn new_source(Extension(ident): Extension<Identity>) -> Response {
    let body = html! {
        div.pagehead { h1 { "Create New Log Source" } }
        p { "Select a log source to pull logs from." }
        div.tiles {
            div.card.tile {
                h2 { "Atlassian" }
                p { "Organization audit log through the Atlassian Organizations REST API: administrative actions and security policy changes." }
                a.button.primary href="/sources/new/atlassian" { "Start Source Setup" }
            }
        }
    };
    render(
        StatusCode::OK,
        page("Create New", Nav::Sources, &ident, body),
    )
}

fn name_page(ident: &Identity, name: &str, error: Option<&str>) -> Markup {
    page(
        "New Atlassian source",
        Nav::Sources,
        ident,
        html! {
            h1 { "Atlassian" }
            (steps(1))
            (error_box(error))
            form.card method="get" action="/sources/new/atlassian/credentials" {
                label for="name" { "Name" }
                input #name type="text" name="name" value=(name) placeholder="My Atlassian Event logs" required maxlength="200" autofocus;
                p.hint { "A descriptive name for this source." }
                div.actions {
                    a.button href="/sources/new" { "Back" }
                    button.primary type="submit" { "Continue Setup" }
                }
            }
        },
    )
}

pub async fn wizard_name(
    Extension(ident): Extension<Identity>,
    axum::extract::Query(p): axum::extract::Query<NameParam>,
) -> Response {
    render(
        StatusCode::OK,
        name_page(&ident, p.name.as_deref().unwrap_or(""), None),
    )
}

#[derive(Deserialize)]
pub struct NameParam {
    name: Option<String>,
}

#[derive(Default)]
struct CredValues {
    name: String,
    org_id: String,
    base_url: String,
    key_expires_at: String,
}

fn credentials_page(ident: &Identity, v: &CredValues, error: Option<&OpError>) -> Markup {
    let open_advanced = !v.base_url.is_empty()
        || !v.key_expires_at.is_empty()
        || error.is_some_and(|e| matches!(e.field, Some("base_url") | Some("key_expires_at")));
    let bad = |f: &str| error.is_some_and(|e| e.field == Some(f));
    page(
        "New Atlassian source",
        Nav::Sources,
        ident,
        html! {
            h1 { "Atlassian" }
            (steps(2))
            h2 { "Set Credentials" }
            (error_box(error.map(|e| e.message.as_str())))
            form.card #credentials method="post" action="/sources/new/atlassian/credentials" data-busy="Verifying…" {
                (csrf_field(ident))
                input type="hidden" name="name" value=(v.name);
                p { "Source: " strong { (v.name) } }
                label for="org_id" { "Organization" }
                input #org_id.invalid[bad("org_id")] type="text" name="org_id" value=(v.org_id)
                    placeholder="2d2790c2-d6c8-49dc-a9fe-3b0a11a28927" required autocomplete="off" spellcheck="false";
                p.hint { "The Organization ID: the UUID in admin.atlassian.com/o/<Organization ID>/…" }
                label for="api_key" { "API Key" }
                input #api_key.invalid[bad("api_key")] type="password" name="api_key" required autocomplete="off" spellcheck="false";
                p.hint { "Created in admin.atlassian.com → Settings → API keys. It is verified now and never shown again." }
                details open[open_advanced] {
                    summary { "Advanced" }
                    label for="base_url" { "API base URL" }
                    input #base_url.invalid[bad("base_url")] type="url" name="base_url" value=(v.base_url) placeholder=(orgtrail_state::DEFAULT_BASE_URL);
                    label for="key_expires_at" { "API key expires on" }
                    input #key_expires_at.invalid[bad("key_expires_at")] type="date" name="key_expires_at" value=(v.key_expires_at);
                    p.hint { "orgtrail warns before the key expires." }
                }
                div.actions {
                    a.button href=(format!("/sources/new/atlassian?name={}", url_encode(&v.name))) { "Back" }
                    button.primary type="submit" { "Continue Setup" }
                }
            }
        },
    )
}

pub async fn wizard_credentials_form(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    axum::extract::Query(p): axum::extract::Query<NameParam>,
) -> Response {
    let raw = p.name.unwrap_or_default();
    let checked = match ops::check_name(&raw) {
        Ok(n) => ops::check_name_free(&app, &n).await.map(|()| n),
        Err(e) => Err(e),
    };
    match checked {
        Ok(name) => render(
            StatusCode::OK,
            credentials_page(
                &ident,
                &CredValues {
                    name,
                    ..CredValues::default()
                },
                None,
            ),
        ),
        Err(e) => render(e.status, name_page(&ident, &raw, Some(&e.message))),
    }
}

#[derive(Deserialize)]
pub struct CredentialsForm {
    name: String,
    org_id: String,
    api_key: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    key_expires_at: String,
}

pub async fn wizard_credentials(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Form(f): Form<CredentialsForm>,
) -> Response {
    let values = CredValues {
        name: f.name.clone(),
        org_id: f.org_id.clone(),
        base_url: f.base_url.clone(),
        key_expires_at: f.key_expires_at.clone(),
    };
    let key = SecretString::from(f.api_key.trim().to_owned());
    let result = async {
        let name = ops::check_name(&f.name)?;
        ops::check_name_free(&app, &name).await?;
        let creds =
            ops::check_credentials(&f.org_id, &key, Some(&f.base_url), Some(&f.key_expires_at))?;
        ops::verify(&creds.base_url, &creds.org_id, &key).await?;
        Ok::<_, OpError>((name, creds))
    }
    .await;
    match result {
        Err(e) => render(e.status, credentials_page(&ident, &values, Some(&e))),
        Ok((name, creds)) => {
            let pid = match auth::random_token(24) {
                Ok(p) => p,
                Err(e) => return op_page(&OpError::from(e)),
            };
            let mut pending = app.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.retain(|_, p| p.created.elapsed() < PENDING_TTL);
            if pending.len() >= 100 {
                return message_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many setups in progress",
                    "Finish or abandon the other source setups (they expire after 30 minutes).",
                );
            }
            pending.insert(
                pid.clone(),
                Pending {
                    name,
                    org_id: creds.org_id,
                    base_url: creds.base_url,
                    key,
                    key_expires_at: creds.key_expires_at,
                    created: std::time::Instant::now(),
                },
            );
            redirect(&format!("/sources/new/atlassian/confirm/{pid}"))
        }
    }
}

fn alarm_fields(enabled: bool, minutes: u32) -> Markup {
    let (value, unit) = if minutes.is_multiple_of(1440) {
        (minutes / 1440, "days")
    } else if minutes.is_multiple_of(60) {
        (minutes / 60, "hours")
    } else {
        (minutes, "minutes")
    };
    html! {
        label.check {
            input #alarm_enabled type="checkbox" name="alarm_enabled" value="on" checked[enabled];
            " Alarm when no events are received for"
        }
        div.inline {
            input #alarm_value type="number" name="alarm_value" min="1" max="43200" value=(value) aria-label="Interval";
            select #alarm_unit name="alarm_unit" aria-label="Unit" {
                option value="minutes" selected[unit == "minutes"] { "minutes" }
                option value="hours" selected[unit == "hours"] { "hours" }
                option value="days" selected[unit == "days"] { "days" }
            }
        }
        p.hint { "From 15 minutes to 30 days. The alarm measures when events are received, not their event time." }
    }
}

#[derive(Deserialize)]
pub struct AlarmForm {
    alarm_enabled: Option<String>,
    #[serde(default)]
    alarm_value: String,
    #[serde(default)]
    alarm_unit: String,
}

impl AlarmForm {
    fn minutes(&self) -> Result<Option<u32>, OpError> {
        if self.alarm_enabled.is_none() {
            return Ok(None);
        }
        let bad = || {
            OpError::invalid(
                "dropoff_alarm_minutes",
                "enter the drop-off interval as a whole number of minutes, hours or days (15 minutes to 30 days)",
            )
        };
        let v: u32 = self.alarm_value.trim().parse().map_err(|_| bad())?;
        let mult = match self.alarm_unit.as_str() {
            "minutes" => 1,
            "hours" => 60,
            "days" => 1440,
            _ => return Err(bad()),
        };
        let m = v.checked_mul(mult).ok_or_else(bad)?;
        ops::check_alarm(Some(m))
    }
}

fn confirm_page(ident: &Identity, pid: &str, p: &Pending, error: Option<&str>) -> Markup {
    let last4 = ops::last4(p.key.expose_secret());
    page(
        "New Atlassian source",
        Nav::Sources,
        ident,
        html! {
            h1 { "Atlassian" }
            (steps(3))
            div.alert.ok role="status" { "The credentials were verified: the API key can read the audit log of this organization." }
            (error_box(error))
            div.card {
                dl.facts {
                    dt { "Name" } dd { (p.name) }
                    dt { "Organization ID" } dd { code { (p.org_id) } }
                    dt { "API key" } dd { "••••" @if let Some(l) = &last4 { (l) } }
                    dt { "API base URL" } dd { (p.base_url) }
                    dt { "Key expires" } dd { (p.key_expires_at.map_or("not given".to_owned(), |t| t.strftime("%Y-%m-%d").to_string())) }
                }
            }
            form.card #finish method="post" action=(format!("/sources/new/atlassian/finish/{pid}")) {
                (csrf_field(ident))
                h2 { "Log drop-off alarm (optional)" }
                (alarm_fields(false, 1440))
                div.actions {
                    a.button href="/sources" { "Cancel" }
                    button.primary type="submit" { "Finish Setup" }
                }
            }
        },
    )
}

fn pending_expired() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "This setup has expired",
        "Source setups wait 30 minutes for Finish Setup. Start again from Log Sources → Create New.",
    )
}

pub async fn wizard_confirm(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(pid): Path<String>,
) -> Response {
    let pending = app.pending.lock().unwrap_or_else(|p| p.into_inner());
    match pending.get(&pid) {
        Some(p) if p.created.elapsed() < PENDING_TTL => {
            render(StatusCode::OK, confirm_page(&ident, &pid, p, None))
        }
        _ => pending_expired(),
    }
}

pub async fn wizard_finish(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(pid): Path<String>,
    Form(f): Form<AlarmForm>,
) -> Response {
    let taken = {
        let mut pending = app.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.remove(&pid)
    };
    let Some(p) = taken.filter(|p| p.created.elapsed() < PENDING_TTL) else {
        return pending_expired();
    };
    let alarm = match f.minutes() {
        Ok(a) => a,
        Err(e) => {
            let r = render(e.status, confirm_page(&ident, &pid, &p, Some(&e.message)));
            app.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pid, p);
            return r;
        }
    };
    match ops::add_verified(
        &app,
        p.name.clone(),
        p.org_id.clone(),
        p.base_url.clone(),
        p.key.clone(),
        p.key_expires_at,
        alarm,
    )
    .await
    {
        Ok(s) => redirect(&format!("/sources/{}?msg=created", s.id)),
        Err(e) => {
            let r = render(e.status, confirm_page(&ident, &pid, &p, Some(&e.message)));
            app.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pid, p);
            r
        }
    }
}

// ----- source detail -----

/// Where a form error of the detail page belongs.
struct FormError<'a> {
    section: &'a str,
    message: &'a str,
}

async fn detail_response(
    app: &App,
    ident: &Identity,
    id: &str,
    msg: Option<&str>,
    status: StatusCode,
    form_error: Option<FormError<'_>>,
) -> Response {
    let d = match ops::source_detail(app, id).await {
        Ok(d) => d,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return message_page(StatusCode::NOT_FOUND, "No such source", &e.message);
        }
        Err(e) => return op_page(&e),
    };
    let now = Timestamp::now();
    let err_for = |section: &str| {
        form_error
            .as_ref()
            .filter(|f| f.section == section)
            .map(|f| f.message)
    };
    let s = &d.source;
    let base = format!("/sources/{}", s.id);
    let body = html! {
        p.crumbs { a href="/sources" { "Log Sources" } " / " }
        div.pagehead {
            h1 { (s.name) " " (health_badge(d.status.health)) }
            div.headactions {
                @if s.paused {
                    form method="post" action=(format!("{base}/resume")) {
                        (csrf_field(ident)) button.primary type="submit" { "Resume" }
                    }
                } @else {
                    form method="post" action=(format!("{base}/pause")) {
                        (csrf_field(ident)) button type="submit" { "Pause" }
                    }
                }
                a.button.danger href=(format!("{base}/delete")) { "Delete" }
            }
        }
        (notice(msg))
        @if let Some(e) = err_for("top") { (error_box(Some(e))) }
        div.grid {
            section.card {
                h2 { "Health" }
                dl.facts {
                    dt { "Status" } dd { (health_badge(d.status.health)) }
                    @if let Some(r) = &d.status.reason { dt { "Reason" } dd { (r) } }
                    dt { "Last event received" } dd { (when(d.status.last_event_at, now)) }
                    dt { "Last successful poll" } dd { (when(d.status.last_success_at, now)) }
                    @if let Some(e) = &d.status.last_error {
                        dt { "Last error" } dd { (when(d.status.last_error_at, now)) br; span.errtext { (e) } }
                    }
                    dt { "Key expires" } dd { (when_str(s.key_expires_at.as_deref(), now)) }
                }
            }
            section.card {
                h2 { "Alarms" }
                @if d.status.alarms.is_empty() { p.muted { "No alarm is set." } }
                ul.plain {
                    @for a in &d.status.alarms { li { (alarm_badge(a)) " " span.small { (a.message) } } }
                }
            }
            section.card {
                h2 { "Events over time" }
                (chart(&d.activity.hourly, 480, 80, &format!("{} events in the last 24 hours, per hour", d.activity.events_24h)))
                p.small.muted { (d.activity.events_24h) " events in the last 24 hours (by event time), per hour." }
            }
            section.card {
                h2 { "Collection progress" }
                dl.facts {
                    dt { "Collected up to" } dd { (when_str(d.progress.collected_up_to.as_deref(), now)) }
                    dt { "Pages read" } dd { (d.progress.pages) }
                    dt { "Lake batches in progress" } dd { (d.progress.unfinished_batches) }
                    dt { "Events in the lake" } dd #events-in-lake { (d.progress.events_in_lake) }
                    dt { "Classification failures" } dd { (d.progress.failures_in_lake) }
                }
            }
            section.card {
                h2 { "Settings" }
                dl.facts {
                    dt { "Organization ID" } dd { code { (s.org_id) } }
                    dt { "API base URL" } dd { (s.base_url) }
                    dt { "API key" } dd { "••••" @if let Some(l) = &s.api_key.last4 { (l) } " " span.muted.small { "(" (s.api_key.reference) ")" } }
                    dt { "Poll interval" } dd { (s.poll_interval_secs) " s" }
                }
                form #rename method="post" action=(format!("{base}/rename")) {
                    (csrf_field(ident))
                    h3 { "Name" }
                    (error_box(err_for("rename")))
                    div.inline {
                        input #new_name type="text" name="name" value=(s.name) required maxlength="200" aria-label="Name";
                        button type="submit" { "Rename" }
                    }
                }
                form #rotate method="post" action=(format!("{base}/key")) data-busy="Verifying…" {
                    (csrf_field(ident))
                    h3 { "Rotate the API key" }
                    (error_box(err_for("key")))
                    div.inline {
                        input #new_key type="password" name="api_key" required autocomplete="off" aria-label="New API key" placeholder="New API key";
                        button type="submit" { "Verify and save" }
                    }
                }
                form #expiry method="post" action=(format!("{base}/expiry")) {
                    (csrf_field(ident))
                    h3 { "API key expires on" }
                    (error_box(err_for("expiry")))
                    div.inline {
                        input #key_expires type="date" name="key_expires_at" aria-label="API key expires on"
                            value=(s.key_expires_at.as_deref().map_or(String::new(), |t| t.chars().take(10).collect()));
                        button type="submit" { "Save date" }
                    }
                    p.hint { "Leave empty if unknown." }
                }
                form #alarm method="post" action=(format!("{base}/alarm")) {
                    (csrf_field(ident))
                    h3 { "Log drop-off alarm" }
                    (error_box(err_for("alarm")))
                    (alarm_fields(s.dropoff_alarm_minutes.is_some(), s.dropoff_alarm_minutes.unwrap_or(1440)))
                    button type="submit" { "Save alarm" }
                }
            }
        }
        section.card {
            h2 { "Recent errors" }
            @if d.recent_errors.is_empty() { p.muted { "No failed polls recently." } }
            ul.plain {
                @for r in &d.recent_errors {
                    li { (when_str(Some(&r.ended_at), now)) br; span.errtext { (r.error.as_deref().unwrap_or("")) } }
                }
            }
        }
        section.card {
            h2 { "Classification failures" }
            @if d.failures.is_empty() { p.muted { "No event failed to classify." } }
            @for f in &d.failures {
                details.failure {
                    summary { (when_str(f.parse_time.as_deref(), now)) " — " (f.errors.join("; ")) }
                    pre { (f.payload) }
                }
            }
        }
        section.card {
            h2 { "Recent polls" }
            div.tablewrap {
                table.list {
                    thead { tr { th { "Ended" } th { "Status" } th.num { "Pages" } th.num { "New events" } } }
                    tbody {
                        @for r in &d.recent_runs {
                            tr {
                                td { (when_str(Some(&r.ended_at), now)) }
                                td { (r.status) }
                                td.num { (r.pages) }
                                td.num { (r.events) }
                            }
                        }
                    }
                }
            }
        }
    };
    render(status, page(&s.name, Nav::Sources, ident, body))
}

pub async fn source_detail(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
    axum::extract::Query(p): axum::extract::Query<MsgParam>,
) -> Response {
    detail_response(&app, &ident, &id, p.msg.as_deref(), StatusCode::OK, None).await
}

async fn after_edit(
    app: &App,
    ident: &Identity,
    id: &str,
    section: &str,
    r: Result<String, OpError>,
    msg: &str,
) -> Response {
    match r {
        Ok(id) => redirect(&format!("/sources/{id}?msg={msg}")),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            message_page(StatusCode::NOT_FOUND, "No such source", &e.message)
        }
        Err(e) => {
            let fe = FormError {
                section,
                message: &e.message,
            };
            detail_response(app, ident, id, None, e.status, Some(fe)).await
        }
    }
}

#[derive(Deserialize)]
pub struct RenameForm {
    name: String,
}

pub async fn rename(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
    Form(f): Form<RenameForm>,
) -> Response {
    let input = ops::UpdateInput {
        name: Some(f.name),
        ..Default::default()
    };
    let r = ops::update_source(&app, &id, input).await.map(|s| s.id);
    after_edit(&app, &ident, &id, "rename", r, "renamed").await
}

#[derive(Deserialize)]
pub struct KeyForm {
    api_key: String,
}

pub async fn rotate_key(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
    Form(f): Form<KeyForm>,
) -> Response {
    let input = ops::UpdateInput {
        api_key: Some(SecretString::from(f.api_key)),
        ..Default::default()
    };
    let r = ops::update_source(&app, &id, input).await.map(|s| s.id);
    after_edit(&app, &ident, &id, "key", r, "key_rotated").await
}

#[derive(Deserialize)]
pub struct ExpiryForm {
    #[serde(default)]
    key_expires_at: String,
}

pub async fn set_expiry(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
    Form(f): Form<ExpiryForm>,
) -> Response {
    let date = Some(f.key_expires_at).filter(|d| !d.trim().is_empty());
    let input = ops::UpdateInput {
        key_expires_at: Some(date),
        ..Default::default()
    };
    let r = ops::update_source(&app, &id, input).await.map(|s| s.id);
    after_edit(&app, &ident, &id, "expiry", r, "expiry_saved").await
}

pub async fn set_alarm(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
    Form(f): Form<AlarmForm>,
) -> Response {
    let r = match f.minutes() {
        Ok(m) => {
            let input = ops::UpdateInput {
                dropoff_alarm_minutes: Some(m),
                ..Default::default()
            };
            ops::update_source(&app, &id, input).await.map(|s| s.id)
        }
        Err(e) => Err(e),
    };
    after_edit(&app, &ident, &id, "alarm", r, "alarm_saved").await
}

pub async fn pause(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
) -> Response {
    let r = ops::set_paused(&app, &id, true).await.map(|s| s.id);
    after_edit(&app, &ident, &id, "top", r, "paused").await
}

pub async fn resume(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
) -> Response {
    let r = ops::set_paused(&app, &id, false).await.map(|s| s.id);
    after_edit(&app, &ident, &id, "top", r, "resumed").await
}

fn delete_page(ident: &Identity, id: &str, name: &str, error: Option<&str>) -> Markup {
    page(
        "Delete source",
        Nav::Sources,
        ident,
        html! {
            h1 { "Delete " (name) "?" }
            (error_box(error))
            form.card method="post" action=(format!("/sources/{id}/delete")) {
                (csrf_field(ident))
                p { "Collection from this organization stops. The events already collected stay in the lake: queries in the Data Explorer keep finding them." }
                label.check {
                    input type="checkbox" name="force" value="on";
                    " Also drop the events received but not yet written to the lake"
                }
                div.actions {
                    a.button href=(format!("/sources/{id}")) { "Cancel" }
                    button.danger type="submit" { "Delete source" }
                }
            }
        },
    )
}

pub async fn delete_form(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
) -> Response {
    match app.store.get_source(&id).await {
        Ok(s) => render(StatusCode::OK, delete_page(&ident, &s.id, &s.name, None)),
        Err(e) => {
            let e = OpError::from(e);
            message_page(e.status, "No such source", &e.message)
        }
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    force: Option<String>,
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<String>,
    Form(f): Form<DeleteForm>,
) -> Response {
    match ops::delete_source(&app, &id, f.force.is_some()).await {
        Ok(_) => redirect("/sources?msg=deleted"),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            message_page(StatusCode::NOT_FOUND, "No such source", &e.message)
        }
        Err(e) => {
            let name = app
                .store
                .find_source(&id)
                .await
                .ok()
                .flatten()
                .map_or(id.clone(), |s| s.name);
            render(e.status, delete_page(&ident, &id, &name, Some(&e.message)))
        }
    }
}

// ----- data explorer -----

#[derive(Deserialize)]
pub struct ExplorerParams {
    sql: Option<String>,
    q: Option<String>,
}

pub async fn explorer(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
    axum::extract::Query(p): axum::extract::Query<ExplorerParams>,
) -> Response {
    let q = p.q.unwrap_or_default();
    let mut sql = p.sql.unwrap_or_default();
    let mut status = StatusCode::OK;
    let mut error: Option<String> = None;
    if !q.trim().is_empty() {
        match ops::search_sql(&app, &q) {
            Ok(s) => sql = s,
            Err(e) => {
                status = e.status;
                error = Some(e.message);
            }
        }
    }
    let result = if sql.trim().is_empty() || error.is_some() {
        None
    } else {
        match ops::run_query(&app, &sql, ops::PAGE_ROWS).await {
            Ok(out) => match ops::cells(&out) {
                Ok(c) => Some((out, c)),
                Err(e) => {
                    status = e.status;
                    error = Some(e.message);
                    None
                }
            },
            Err(e) => {
                status = e.status;
                error = Some(e.message);
                None
            }
        }
    };
    let editor_sql = if sql.is_empty() {
        ops::SAMPLES[0].1
    } else {
        sql.as_str()
    };
    let body = html! {
        div.pagehead { h1 { "Data Explorer" } }
        form.card.search method="get" action="/explorer" {
            label for="q" { "Quick search across indicators" }
            div.inline {
                input #q type="search" name="q" value=(q) placeholder="IP address, email, username, domain…";
                button type="submit" { "Search" }
            }
            p.hint { "Finds events whose p_any_* indicator fields contain this exact value." }
        }
        div.explorer {
            form.card.editor #query method="get" action="/explorer" {
                label for="sql" { "SQL" }
                textarea #sql name="sql" rows="8" spellcheck="false" { (editor_sql) }
                div.actions {
                    span.hint { "Tables: atlassian_audit, classification_failures. Ctrl+Enter runs." }
                    button.primary type="submit" { "Run" }
                }
            }
            aside.card.samples {
                h2 { "Sample queries" }
                ul.plain {
                    @for (title, s) in ops::SAMPLES {
                        li { a href=(format!("/explorer?sql={}", url_encode(s))) { (title) } }
                    }
                }
            }
        }
        (error_box(error.as_deref()))
        @if let Some((out, (names, rows))) = &result {
            section.card #results {
                div.resulthead {
                    p {
                        strong #row-count { (rows.len()) } " rows"
                        @if out.truncated { " (the first " (ops::PAGE_ROWS) "; downloads hold up to " (ops::MAX_ROWS) ")" }
                        " in " (out.elapsed.as_millis()) " ms"
                    }
                    div.downloads {
                        a.button href=(format!("/api/v1/query?format=csv&max_rows={}&sql={}", ops::MAX_ROWS, url_encode(&sql))) download="orgtrail-query.csv" { "Download CSV" }
                        a.button href=(format!("/api/v1/query?format=json&download=true&max_rows={}&sql={}", ops::MAX_ROWS, url_encode(&sql))) download="orgtrail-query.json" { "Download JSON" }
                    }
                }
                div.tablewrap {
                    table.list.results {
                        thead { tr { @for n in names { th { (n) } } } }
                        tbody {
                            @for r in rows {
                                tr { @for c in r {
                                    @match c {
                                        Some(v) => td { (v) },
                                        None => td.muted { "null" },
                                    }
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    render(status, page("Data Explorer", Nav::Explorer, &ident, body))
}

// ----- system errors -----

pub async fn system_errors(
    State(app): State<Arc<App>>,
    Extension(ident): Extension<Identity>,
) -> Response {
    let now = Timestamp::now();
    let sources = match app.store.list_sources().await {
        Ok(s) => s,
        Err(e) => return op_page(&OpError::from(e)),
    };
    let mut current = Vec::new();
    for s in &sources {
        match status::source_status(app.store.as_ref(), s, now).await {
            Ok(st) => {
                for a in st.alarms.into_iter().filter(|a| a.state != "OK") {
                    current.push((s.clone(), a));
                }
            }
            Err(e) => return op_page(&OpError::from(e)),
        }
    }
    let history = match status::alarm_history(app.store.as_ref(), 500).await {
        Ok(h) => h,
        Err(e) => return op_page(&OpError::from(e)),
    };
    let body = html! {
        div.pagehead { h1 { "System Errors" } }
        section.card {
            h2 { "Current alarms" }
            @if current.is_empty() { p.muted { "No alarm is raised." } }
            ul.plain {
                @for (s, a) in &current {
                    li { (alarm_badge(a)) " " a href=(format!("/sources/{}", s.id)) { (s.name) } ": " (a.message) }
                }
            }
        }
        section.card {
            h2 { "Alarm history" }
            @if history.is_empty() { p.muted { "No alarm transitions recorded." } } @else {
                div.tablewrap {
                    table.list.cards {
                        thead { tr { th { "Time" } th { "Source" } th { "Alarm" } th { "State" } th { "Message" } } }
                        tbody {
                            @for h in &history {
                                tr {
                                    td data-label="Time" { (when(Some(h.at), now)) }
                                    td data-label="Source" { (h.source_name.as_deref().unwrap_or("—")) }
                                    td data-label="Alarm" { (h.alarm) }
                                    td data-label="State" { (h.state) }
                                    td data-label="Message" { (h.message) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    render(
        StatusCode::OK,
        page("System Errors", Nav::Errors, &ident, body),
    )
}

pub async fn not_found(ident: Option<Extension<Identity>>) -> Response {
    match ident {
        Some(Extension(ident)) => render(
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                Nav::Sources,
                &ident,
                html! { h1 { "Not found" } p { "There is no such page. " a href="/sources" { "Log Sources" } } },
            ),
        ),
        None => message_page(StatusCode::NOT_FOUND, "Not found", "There is no such page."),
    }
}
