//! Who may use the console: the admin password (argon2id hash), API tokens (SHA-256 hashes), both
//! in `<data-dir>/console.json` (owner-only); browser sessions (in memory) with their CSRF tokens;
//! the first-run setup code; the login rate limiter; and the middleware that checks all of it on
//! every request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::App;

/// The file holding the password hash and token hashes.
pub const AUTH_FILE: &str = "console.json";
/// The session cookie.
pub const SESSION_COOKIE: &str = "orgtrail_session";
/// The pre-session cookie of the login and setup forms (double-submit CSRF token).
pub const LOGIN_COOKIE: &str = "orgtrail_login";
/// The form field and header carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest admin password.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// A session ends after this long without a request...
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// ... or this long after login.
const SESSION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_SESSIONS: usize = 1000;
/// Failed logins allowed per client address before it must wait...
const LOGIN_BURST: f64 = 5.0;
/// ... one more attempt per this many seconds.
const LOGIN_REFILL_SECS: f64 = 60.0;
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// Largest form body read by the CSRF check.
const MAX_FORM_BYTES: usize = 1 << 20;

/// `console.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AuthData {
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
}

/// An API token as stored: its name and the SHA-256 of its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub sha256: String,
    pub created_at: String,
}

pub fn auth_path(data_dir: &Path) -> PathBuf {
    data_dir.join(AUTH_FILE)
}

/// Reads `console.json` (missing = nothing set yet).
pub fn load(path: &Path) -> anyhow::Result<AuthData> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid console file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthData::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `console.json` atomically, readable by its owner only.
pub fn save(path: &Path, data: &AuthData) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(data)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Hashes a password with argon2id (default parameters, random salt). CPU-heavy: call it off the
/// async workers.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Checks a password against a stored hash. CPU-heavy: call it off the async workers.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Rules for a new admin password; `Err` says what is wrong.
pub fn check_new_password(password: &str, confirm: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password != confirm {
        return Err("the two passwords differ; type the same password twice".to_owned());
    }
    Ok(())
}

/// `n` random bytes, URL-safe base64.
pub fn random_token(n: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// A new API token value (`ot_` + 32 random bytes).
pub fn new_api_token() -> anyhow::Result<String> {
    Ok(format!("ot_{}", random_token(32)?))
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal in time independent of where the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who made a request.
#[derive(Clone, Debug)]
pub enum Identity {
    /// A browser session; forms and API calls must carry its CSRF token.
    Session { csrf: String },
    /// An API token (`Authorization: Bearer`), named.
    Token { name: String },
}

impl Identity {
    /// The CSRF token to put in forms (empty for tokens, which need none).
    pub fn csrf(&self) -> &str {
        match self {
            Identity::Session { csrf } => csrf,
            Identity::Token { .. } => "",
        }
    }
}

struct Session {
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The console's authentication state.
pub struct Auth {
    path: PathBuf,
    /// `console.json` as last read, with its modification time (re-read when it changes, so
    /// `orgtrail console token create` works while the server runs).
    file: Mutex<(Option<SystemTime>, AuthData)>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Bucket>>,
    /// Printed on the terminal at first run; needed to choose the admin password.
    setup_code: Mutex<Option<String>>,
    /// Cookies get `Secure` (the console is served over TLS).
    pub secure: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked (every update is one insert or
    // remove), so a poisoned lock is recovered rather than propagated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Auth {
    pub fn open(data_dir: &Path, secure: bool) -> anyhow::Result<Auth> {
        let path = auth_path(data_dir);
        let data = load(&path)?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Auth {
            path,
            file: Mutex::new((mtime, data)),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            setup_code: Mutex::new(None),
            secure,
        })
    }

    /// The current `console.json` (re-read if it changed on disk).
    fn data(&self) -> AuthData {
        let mut file = lock(&self.file);
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime != file.0 {
            match load(&self.path) {
                Ok(d) => *file = (mtime, d),
                Err(e) => tracing::warn!("keeping the previous console settings: {e:#}"),
            }
        }
        file.1.clone()
    }

    pub fn has_password(&self) -> bool {
        self.data().password_hash.is_some()
    }

    /// At first run (no password yet), makes the setup code to print on the terminal.
    pub fn make_setup_code(&self) -> anyhow::Result<Option<String>> {
        if self.has_password() {
            return Ok(None);
        }
        let mut buf = [0u8; 10];
        getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
        // 32 unambiguous symbols, 5 bits each of 10 bytes: 10 symbols, 50 bits.
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let code: String = buf
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                let c = char::from(ALPHABET[usize::from(b % 32)]);
                (i == 5)
                    .then_some('-')
                    .into_iter()
                    .chain(std::iter::once(c))
            })
            .collect();
        *lock(&self.setup_code) = Some(code.clone());
        Ok(Some(code))
    }

    pub fn check_setup_code(&self, given: &str) -> bool {
        let norm = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_uppercase())
                .collect()
        };
        match lock(&self.setup_code).as_deref() {
            Some(code) => ct_eq(norm(code).as_bytes(), norm(given).as_bytes()),
            None => false,
        }
    }

    /// Stores the first admin password (first run). Refuses when one is already set.
    pub fn set_first_password(&self, hash: String) -> anyhow::Result<()> {
        let mut data = load(&self.path)?;
        if data.password_hash.is_some() {
            anyhow::bail!("an admin password is already set");
        }
        data.password_hash = Some(hash);
        save(&self.path, &data)?;
        *lock(&self.setup_code) = None;
        Ok(())
    }

    pub fn password_hash(&self) -> Option<String> {
        self.data().password_hash
    }

    /// The name of the token with this value, if it is valid.
    pub fn check_token(&self, token: &str) -> Option<String> {
        let digest = sha256_hex(token);
        self.data()
            .tokens
            .into_iter()
            .find(|t| ct_eq(t.sha256.as_bytes(), digest.as_bytes()))
            .map(|t| t.name)
    }

    /// A new session; returns the cookie value.
    pub fn new_session(&self) -> anyhow::Result<String> {
        let id = random_token(32)?;
        let now = Instant::now();
        let session = Session {
            csrf: random_token(32)?,
            created: now,
            last_seen: now,
        };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| live(s, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session);
        Ok(id)
    }

    /// The CSRF token of a live session (and marks it used).
    pub fn session(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(id) {
            Some(s) if live(s, now) => {
                s.last_seen = now;
                Some(s.csrf.clone())
            }
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn end_session(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// `Err(wait)` when `ip` used up its failed attempts.
    pub fn login_allowed(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        match failures.get_mut(&ip) {
            Some(b) => {
                refill(b, now);
                if b.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(Duration::from_secs_f64(
                        (1.0 - b.tokens) * LOGIN_REFILL_SECS,
                    ))
                }
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login or setup attempt of `ip`.
    pub fn login_failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_TRACKED_CLIENTS {
            failures.retain(|_, b| {
                refill(b, now);
                b.tokens < LOGIN_BURST
            });
        }
        let b = failures.entry(ip).or_insert(Bucket {
            tokens: LOGIN_BURST,
            at: now,
        });
        refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    /// `Set-Cookie` for a cookie of this console (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS).
    pub fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        // Cookie names are constants and values URL-safe base64, so the header is valid ASCII.
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < SESSION_IDLE && now.duration_since(s.created) < SESSION_MAX
}

fn refill(b: &mut Bucket, now: Instant) {
    let secs = now.duration_since(b.at).as_secs_f64();
    b.tokens = (b.tokens + secs / LOGIN_REFILL_SECS).min(LOGIN_BURST);
    b.at = now;
}

/// The value of cookie `name`.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address (for the login rate limit); loopback when the server has no peer address
/// (in-process tests).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip()),
        ))
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The routes anyone may call: the login and first-run pages and the static files.
fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/setup") || path.starts_with("/static/")
}

/// The check in front of every route: identifies the caller (session cookie or API token), refuses
/// anonymous calls, and checks the CSRF token of every state-changing request made with a cookie
/// (the login and setup forms check theirs against the pre-session cookie).
pub async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let api = path.starts_with("/api/");
    let safe = is_safe(req.method());
    if is_public(&path) {
        if !safe && !path.starts_with("/static/") {
            let expected = cookie_value(req.headers(), LOGIN_COOKIE).map(str::to_owned);
            req = match check_csrf(req, expected.as_deref()).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
        }
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let identity = if let Some(token) = bearer {
        match app.auth.check_token(&token) {
            Some(name) => Identity::Token { name },
            None => {
                return super::api::error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the API token is invalid or was revoked; create one with `orgtrail console token create NAME`",
                );
            }
        }
    } else if let Some(csrf) =
        cookie_value(req.headers(), SESSION_COOKIE).and_then(|id| app.auth.session(id))
    {
        Identity::Session { csrf }
    } else if api {
        return super::api::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "log in to the console, or send an API token: Authorization: Bearer <token>",
        );
    } else if !app.auth.has_password() {
        return Redirect::to("/setup").into_response();
    } else if safe {
        let next_path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let to = format!("/login?next={}", super::pages::url_encode(&next_path));
        return Redirect::to(&to).into_response();
    } else {
        return Redirect::to("/login").into_response();
    };
    if let (Identity::Session { csrf }, false) = (&identity, safe) {
        if cross_site(req.headers()) {
            return csrf_failure(api, "the request came from another site");
        }
        let csrf = csrf.clone();
        req = match check_csrf(req, Some(&csrf)).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// A browser says the request comes from another site (`Sec-Fetch-Site`, or an `Origin` whose host
/// is not this one): refused even with a valid CSRF token.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host,
    ) {
        // Some browsers send `Origin: null` for same-site form posts (privacy settings); the CSRF
        // token and the SameSite=Strict cookie still guard those.
        (Some("null"), _) => false,
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            !origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

fn csrf_failure(api: bool, why: &str) -> Response {
    if api {
        super::api::error(
            StatusCode::FORBIDDEN,
            "csrf",
            &format!(
                "{why}: send the X-CSRF-Token header with the token of your session (the csrf-token meta tag of any page), or use an API token"
            ),
        )
    } else {
        super::pages::message_page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            &format!("{why}. Go back, reload the page and try again."),
        )
    }
}

/// Checks the CSRF token of a state-changing request: the `X-CSRF-Token` header, or the `csrf`
/// field of a form body (which is read and put back).
async fn check_csrf(req: Request, expected: Option<&str>) -> Result<Request, Response> {
    let api = req.uri().path().starts_with("/api/");
    let Some(expected) = expected.filter(|e| !e.is_empty()) else {
        return Err(csrf_failure(api, "the CSRF cookie is missing"));
    };
    if let Some(given) = req.headers().get(CSRF_HEADER) {
        return if ct_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(req)
        } else {
            Err(csrf_failure(api, "the CSRF token is wrong"))
        };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(csrf_failure(api, "the CSRF token is missing"));
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Err(super::api::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the form is larger than 1 MiB",
            ));
        }
    };
    let ok = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .is_some_and(|(_, v)| ct_eq(v.as_bytes(), expected.as_bytes()));
    if !ok {
        return Err(csrf_failure(api, "the CSRF token is missing or wrong"));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
