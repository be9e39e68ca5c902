//! Tests of every console route in process (tower `oneshot`), against the simulator: anonymous
//! calls, CSRF, tokens, bad input, the onboarding forms, queries; and the console over TLS.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use orgtrail_lake::Lake;
use orgtrail_state::{SqliteStore, StateStore};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::auth::{self, AuthData, TokenRecord};
use super::{App, Deps, router};

const ORG: &str = "7c0e1d2a-3b4c-4d5e-8f60-718293a4b5c6";
const KEY: &str = "ATCTT3xFfGN0-api-test-secret-key-Zq8Wm2Lp";
const WRONG_KEY: &str = "ATCTT3xFfGN0-wrong-api-test-key-Yx7Vn3Kr";
const PASSWORD: &str = "a long enough password";
const TOKEN: &str = "ot_test-token-value-for-the-api-tests-0123456789";

struct Harness {
    app: Arc<App>,
    router: Router,
    sim: orgtrail_sim::SimHandle,
    _dir: tempfile::TempDir,
    /// Every response body, to check that the key is in none.
    bodies: Vec<String>,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `name=value` of a `Set-Cookie`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap_or("").to_owned())
    }

    fn set_cookie_header(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    }
}

/// A browser session: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn harness_with(password: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let mut data = AuthData::default();
    if password {
        data.password_hash = Some(auth::hash_password(PASSWORD).unwrap());
    }
    data.tokens.push(TokenRecord {
        name: "ci".into(),
        sha256: auth::sha256_hex(TOKEN),
        created_at: "2026-01-01T00:00:00Z".into(),
    });
    auth::save(&auth::auth_path(dir.path()), &data).unwrap();
    let mut cfg = orgtrail_sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        orgs: vec![orgtrail_sim::OrgConfig::new(ORG, KEY)],
        events: 60,
        ..orgtrail_sim::SimConfig::default()
    };
    cfg.rate_limits.enabled = false;
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let app = App::new(
        Deps {
            store,
            lake,
            data_dir: dir.path().to_owned(),
            collectors: None,
        },
        false,
    )
    .unwrap();
    Harness {
        router: router(app.clone()),
        app,
        sim,
        _dir: dir,
        bodies: Vec::new(),
    }
}

async fn harness() -> Harness {
    harness_with(true).await
}

impl Harness {
    async fn send(&mut self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        self.bodies.push(body.clone());
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str, s: Option<&Session>) -> Resp {
        let mut b = Request::get(path);
        if let Some(s) = s {
            b = b.header(header::COOKIE, &s.cookie);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn form(&mut self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Resp {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    /// A form post of a logged-in page, with the session's CSRF token.
    async fn post(&mut self, path: &str, s: &Session, fields: &[(&str, &str)]) -> Resp {
        let mut all = vec![("csrf", s.csrf.as_str())];
        all.extend_from_slice(fields);
        self.form(path, Some(&s.cookie), &all).await
    }

    /// A JSON call with a session (and its CSRF header) or the API token.
    async fn api(
        &mut self,
        method: Method,
        path: &str,
        s: Option<&Session>,
        body: Option<Value>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        match s {
            Some(s) => {
                b = b
                    .header(header::COOKIE, &s.cookie)
                    .header(auth::CSRF_HEADER, &s.csrf)
            }
            None => b = b.header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    async fn login(&mut self) -> Session {
        let page = self.get("/login", None).await;
        assert_eq!(page.status, StatusCode::OK);
        let pre = page.cookie(auth::LOGIN_COOKIE).unwrap();
        let csrf = pre.split_once('=').unwrap().1.to_owned();
        let r = self
            .form(
                "/login",
                Some(&pre),
                &[
                    ("csrf", &csrf),
                    ("password", PASSWORD),
                    ("next", "/sources"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location(), "/sources");
        let cookie = r.cookie(auth::SESSION_COOKIE).expect("a session cookie");
        let s = Session {
            cookie: cookie.clone(),
            csrf: String::new(),
        };
        let me = self.get("/api/v1/session", Some(&s)).await;
        let csrf = me.json()["csrf_token"].as_str().unwrap().to_owned();
        Session { cookie, csrf }
    }

    fn create_body(&self, name: &str) -> Value {
        json!({"name": name, "org_id": ORG, "api_key": KEY, "base_url": self.sim.base_url()})
    }

    /// Adds a source through the API; returns its id.
    async fn add_source(&mut self, name: &str) -> String {
        let body = self.create_body(name);
        let r = self
            .api(Method::POST, "/api/v1/sources", None, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json()["id"].as_str().unwrap().to_owned()
    }

    /// Collects the source once into the lake (the engine the daemon runs).
    async fn collect(&mut self, id: &str) {
        let s = self.app.store.get_source(id).await.unwrap();
        let engine = crate::collect_cmd::engine_for(
            self.app.store.clone(),
            crate::collect_cmd::unlimited_client(&s.base_url).unwrap(),
            &self.app.lake,
            orgtrail_engine::EngineConfig::default(),
        )
        .unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        loop {
            let r = engine
                .collect_once(&s, &orgtrail_atlassian::NoHooks, &cancel)
                .await
                .unwrap();
            if !r.more {
                break;
            }
        }
    }

    fn assert_no_key(&self) {
        for b in &self.bodies {
            assert!(!b.contains(KEY), "the API key is in a response: {b}");
            assert!(!b.contains(WRONG_KEY), "a typed key is in a response: {b}");
        }
    }
}

fn id_of(location: &str) -> String {
    location
        .trim_start_matches("/sources/")
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

/// Every route of the console, with a method that reaches it.
const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/sources"),
    ("POST", "/api/v1/sources"),
    ("POST", "/api/v1/sources/verify"),
    ("GET", "/api/v1/sources/x"),
    ("PATCH", "/api/v1/sources/x"),
    ("DELETE", "/api/v1/sources/x"),
    ("POST", "/api/v1/sources/x/pause"),
    ("POST", "/api/v1/sources/x/resume"),
    ("GET", "/api/v1/sources/x/failures"),
    ("GET", "/api/v1/query?sql=SELECT%201"),
    ("POST", "/api/v1/query"),
    ("GET", "/api/v1/search?q=x"),
    ("GET", "/api/v1/alarms"),
    ("GET", "/api/v1/session"),
];

const PAGE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/sources"),
    ("GET", "/sources/new"),
    ("GET", "/sources/new/atlassian"),
    ("GET", "/sources/new/atlassian/credentials?name=x"),
    ("POST", "/sources/new/atlassian/credentials"),
    ("GET", "/sources/new/atlassian/confirm/x"),
    ("POST", "/sources/new/atlassian/finish/x"),
    ("GET", "/sources/x"),
    ("POST", "/sources/x/rename"),
    ("POST", "/sources/x/key"),
    ("POST", "/sources/x/alarm"),
    ("POST", "/sources/x/expiry"),
    ("POST", "/sources/x/pause"),
    ("POST", "/sources/x/resume"),
    ("GET", "/sources/x/delete"),
    ("POST", "/sources/x/delete"),
    ("GET", "/explorer"),
    ("GET", "/system-errors"),
    ("POST", "/logout"),
];

#[tokio::test]
async fn anonymous_calls_are_refused_everywhere() {
    let mut h = harness().await;
    for (m, path) in API_ROUTES {
        let req = Request::builder()
            .method(*m)
            .uri(*path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let r = h.send(req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}");
        assert_eq!(r.json()["error"], "unauthorized", "{m} {path}");
        assert!(r.json()["message"].as_str().unwrap().contains("Bearer"));
    }
    for (m, path) in PAGE_ROUTES {
        let req = Request::builder()
            .method(*m)
            .uri(*path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=x"))
            .unwrap();
        let r = h.send(req).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{m} {path}");
        assert!(
            r.location().starts_with("/login"),
            "{m} {path}: {}",
            r.location()
        );
    }
    // A wrong token is refused, with a message.
    let r = h
        .send(
            Request::get("/api/v1/sources")
                .header(header::AUTHORIZATION, "Bearer ot_not-a-token")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["message"].as_str().unwrap().contains("invalid"));
    // A logged-out page remembers where to go back.
    let r = h.get("/explorer?sql=SELECT%201", None).await;
    assert_eq!(r.location(), "/login?next=%2Fexplorer%3Fsql%3DSELECT%25201");
    // The static files are public, with their types.
    let r = h.get("/static/app.js", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = h.get("/static/app.css", None).await;
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn every_answer_carries_a_strict_content_security_policy() {
    let mut h = harness().await;
    let s = h.login().await;
    for path in [
        "/login",
        "/sources",
        "/api/v1/sources",
        "/static/app.js",
        "/nope",
    ] {
        let r = h.get(path, Some(&s)).await;
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    // No page has an inline script or style, nor anything from another origin.
    for path in [
        "/sources",
        "/sources/new",
        "/sources/new/atlassian",
        "/explorer",
        "/system-errors",
    ] {
        let r = h.get(path, Some(&s)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            !r.body.contains("<script>") && !r.body.contains("style="),
            "{path}"
        );
        assert!(
            !r.body.contains("http://") && !r.body.contains("https://cdn"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn first_run_sets_the_password_with_the_setup_code() {
    let mut h = harness_with(false).await;
    let code = h.app.auth.make_setup_code().unwrap().expect("a setup code");
    let r = h.get("/sources", None).await;
    assert_eq!(r.location(), "/setup");
    let r = h.get("/login", None).await;
    assert_eq!(r.location(), "/setup");
    let page = h.get("/setup", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let pre = page.cookie(auth::LOGIN_COOKIE).unwrap();
    let csrf = pre.split_once('=').unwrap().1.to_owned();
    // No CSRF token, or a wrong one: refused.
    let r = h
        .form(
            "/setup",
            Some(&pre),
            &[
                ("setup_code", &code),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .form(
            "/setup",
            None,
            &[
                ("csrf", &csrf),
                ("setup_code", &code),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the cookie must match");
    let setup = |code: &str, p: &str, c: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("setup_code".to_owned(), code.to_owned()),
            ("password".to_owned(), p.to_owned()),
            ("confirm".to_owned(), c.to_owned()),
        ]
    };
    let as_refs = |v: &Vec<(String, String)>| -> Vec<(String, String)> { v.clone() };
    for (fields, status, text) in [
        (
            setup("WRONG-CODE", PASSWORD, PASSWORD),
            StatusCode::UNAUTHORIZED,
            "Wrong setup code",
        ),
        (
            setup(&code, "short", "short"),
            StatusCode::BAD_REQUEST,
            "at least 10 characters",
        ),
        (
            setup(&code, PASSWORD, "something else entirely"),
            StatusCode::BAD_REQUEST,
            "differ",
        ),
    ] {
        let f = as_refs(&fields);
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = h.form("/setup", Some(&pre), &pairs).await;
        assert_eq!(r.status, status);
        assert!(r.body.contains(text), "{}", r.body);
    }
    // The code is accepted with any case and without the dash.
    let loose = code.replace('-', "").to_lowercase();
    let f = setup(&loose, PASSWORD, PASSWORD);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = h.form("/setup", Some(&pre), &pairs).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set_cookie = r.set_cookie_header(auth::SESSION_COOKIE);
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains("Secure"), "plain HTTP on loopback");
    let stored = auth::load(&auth::auth_path(h._dir.path())).unwrap();
    assert!(stored.password_hash.unwrap().starts_with("$argon2id$"));
    // Set once: the setup page now sends to the login page, and a second setup is refused.
    assert_eq!(h.get("/setup", None).await.location(), "/login");
    let r = h.form("/setup", Some(&pre), &pairs).await;
    assert_eq!(r.location(), "/login");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(auth::auth_path(h._dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "console.json is readable by its owner only"
        );
    }
}

#[tokio::test]
async fn login_logout_and_the_login_rate_limit() {
    let mut h = harness().await;
    let page = h.get("/login?next=//evil.example/x", None).await;
    let pre = page.cookie(auth::LOGIN_COOKIE).unwrap();
    let csrf = pre.split_once('=').unwrap().1.to_owned();
    assert!(
        page.body.contains("value=\"/sources\""),
        "an off-site next is dropped"
    );
    // Without the CSRF token: refused before the password is even checked.
    let r = h
        .form("/login", Some(&pre), &[("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let s = h.login().await;
    assert_eq!(h.get("/sources", Some(&s)).await.status, StatusCode::OK);
    // Logging out ends the session.
    let r = h.post("/logout", &s, &[]).await;
    assert_eq!(r.location(), "/login");
    assert!(
        r.set_cookie_header(auth::SESSION_COOKIE)
            .contains("Max-Age=0")
    );
    assert_eq!(
        h.get("/sources", Some(&s)).await.status,
        StatusCode::SEE_OTHER
    );
    let r = h.api(Method::GET, "/api/v1/sources", Some(&s), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Five wrong passwords, then even the right one must wait.
    for _ in 0..5 {
        let r = h
            .form(
                "/login",
                Some(&pre),
                &[("csrf", &csrf), ("password", "wrong password")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("Wrong password"));
    }
    let r = h
        .form(
            "/login",
            Some(&pre),
            &[("csrf", &csrf), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert!(r.body.contains("Too many failed attempts"));
}

#[tokio::test]
async fn state_changes_need_the_csrf_token_with_a_session_but_not_with_a_token() {
    let mut h = harness().await;
    let s = h.login().await;
    let id = h.add_source("CSRF test").await;
    let body = h.create_body("Another");
    // JSON without the header, with a wrong one, or from another site.
    let no_header = Request::post("/api/v1/sources")
        .header(header::COOKIE, &s.cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = h.send(no_header).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "csrf");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("X-CSRF-Token")
    );
    let wrong = Session {
        cookie: s.cookie.clone(),
        csrf: "wrong".into(),
    };
    let r = h
        .api(
            Method::POST,
            &format!("/api/v1/sources/{id}/pause"),
            Some(&wrong),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let cross = Request::post(format!("/api/v1/sources/{id}/pause"))
        .header(header::COOKIE, &s.cookie)
        .header(auth::CSRF_HEADER, &s.csrf)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(cross).await.status, StatusCode::FORBIDDEN);
    // Forms without the field, or with a wrong one.
    for path in [
        "pause", "resume", "rename", "key", "alarm", "expiry", "delete",
    ] {
        let path = format!("/sources/{id}/{path}");
        let r = h.form(&path, Some(&s.cookie), &[("name", "x")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(r.body.contains("This form has expired"));
        let r = h.form(&path, Some(&s.cookie), &[("csrf", "nope")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    for path in [
        "/sources/new/atlassian/credentials",
        "/sources/new/atlassian/finish/x",
        "/logout",
    ] {
        let r = h.form(path, Some(&s.cookie), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let src = h.app.store.get_source(&id).await.unwrap();
    assert!(!src.paused, "nothing changed");
    // The right token works; an API token needs none.
    let r = h
        .api(
            Method::POST,
            &format!("/api/v1/sources/{id}/pause"),
            Some(&s),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .api(
            Method::POST,
            &format!("/api/v1/sources/{id}/resume"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["paused"], false);
    let r = h.api(Method::GET, "/api/v1/session", None, None).await;
    assert_eq!(r.json(), json!({"auth": "token", "token_name": "ci"}));
}

#[tokio::test]
async fn the_sources_api_verifies_validates_and_never_returns_the_key() {
    let mut h = harness().await;
    let base = h.sim.base_url().to_owned();
    // Live verification failures, in words.
    let r = h
        .api(
            Method::POST,
            "/api/v1/sources",
            None,
            Some(json!({"name": "S", "org_id": ORG, "api_key": WRONG_KEY, "base_url": base})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let j = r.json();
    assert_eq!(
        (j["error"].as_str(), j["kind"].as_str(), j["field"].as_str()),
        (Some("verification_failed"), Some("auth"), Some("api_key"))
    );
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("invalid, revoked or expired")
    );
    let other_org = "00000000-0000-4000-8000-000000000000";
    let r = h
        .api(
            Method::POST,
            "/api/v1/sources",
            None,
            Some(json!({"name": "S", "org_id": other_org, "api_key": KEY, "base_url": base})),
        )
        .await;
    assert_eq!(r.json()["kind"], "not_found");
    assert!(r.json()["message"].as_str().unwrap().contains(other_org));
    // Bad input: 4xx with the field and a message; nothing is sent to the API.
    for (body, status, field) in [
        (
            json!({"name": " ", "org_id": ORG, "api_key": KEY}),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            json!({"name": "S", "org_id": "", "api_key": KEY}),
            StatusCode::BAD_REQUEST,
            Some("org_id"),
        ),
        (
            json!({"name": "S", "org_id": ORG, "api_key": ""}),
            StatusCode::BAD_REQUEST,
            Some("api_key"),
        ),
        (
            json!({"name": "S", "org_id": ORG, "api_key": "two words"}),
            StatusCode::BAD_REQUEST,
            Some("api_key"),
        ),
        (
            json!({"name": "S", "org_id": ORG, "api_key": KEY, "base_url": "ftp://x"}),
            StatusCode::BAD_REQUEST,
            Some("base_url"),
        ),
        (
            json!({"name": "S", "org_id": ORG, "api_key": KEY, "key_expires_at": "soon"}),
            StatusCode::BAD_REQUEST,
            Some("key_expires_at"),
        ),
        (
            json!({"name": "S", "org_id": ORG, "api_key": KEY, "dropoff_alarm_minutes": 5}),
            StatusCode::BAD_REQUEST,
            Some("dropoff_alarm_minutes"),
        ),
        (
            json!({"name": "S", "org_id": ORG, "api_key": KEY, "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (json!({"name": "S"}), StatusCode::UNPROCESSABLE_ENTITY, None),
    ] {
        let r = h
            .api(Method::POST, "/api/v1/sources", None, Some(body.clone()))
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(!r.json()["message"].as_str().unwrap().is_empty());
        if let Some(f) = field {
            assert_eq!(r.json()["field"], f, "{body}");
        }
    }
    let not_json = Request::post("/api/v1/sources")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("name=x"))
        .unwrap();
    let r = h.send(not_json).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    assert!(h.app.store.list_sources().await.unwrap().is_empty());

    // Created: verified, stored, shown with the key's last four characters only.
    let mut body = h.create_body("Prod org");
    body["dropoff_alarm_minutes"] = json!(1440);
    body["key_expires_at"] = json!("2027-06-30");
    let r = h
        .api(Method::POST, "/api/v1/sources", None, Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        v["api_key"],
        json!({"reference": "stored", "last4": &KEY[KEY.len() - 4..]})
    );
    assert_eq!(v["dropoff_alarm_minutes"], 1440);
    assert_eq!(v["key_expires_at"], "2027-06-30T00:00:00Z");
    let r = h
        .api(Method::POST, "/api/v1/sources", None, Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "duplicate_name");

    // Read.
    let r = h.api(Method::GET, "/api/v1/sources", None, None).await;
    let list = r.json();
    assert_eq!(list["sources"][0]["name"], "Prod org");
    assert_eq!(list["sources"][0]["status"]["health"], "starting");
    assert_eq!(
        list["sources"][0]["status"]["alarms"][0]["state"],
        "INSUFFICIENT_DATA"
    );
    assert_eq!(
        list["sources"][0]["activity"]["hourly"]
            .as_array()
            .unwrap()
            .len(),
        24
    );
    let r = h
        .api(Method::GET, &format!("/api/v1/sources/{id}"), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["progress"]["events_in_lake"], 0);
    let r = h
        .api(Method::GET, "/api/v1/sources/Prod%20org", None, None)
        .await;
    assert_eq!(r.json()["id"], id.as_str(), "by name too");
    let r = h.api(Method::GET, "/api/v1/sources/nope", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "not_found");

    // Update: rename, alarm on and off, a key that fails (nothing changes), a good key.
    let path = format!("/api/v1/sources/{id}");
    let r = h
        .api(
            Method::PATCH,
            &path,
            None,
            Some(json!({"name": "Renamed", "dropoff_alarm_minutes": 30})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (
            r.json()["name"].as_str(),
            r.json()["dropoff_alarm_minutes"].as_u64()
        ),
        (Some("Renamed"), Some(30))
    );
    let r = h
        .api(
            Method::PATCH,
            &path,
            None,
            Some(json!({"dropoff_alarm_minutes": null, "key_expires_at": null})),
        )
        .await;
    assert_eq!(
        (
            r.json()["dropoff_alarm_minutes"].clone(),
            r.json()["key_expires_at"].clone()
        ),
        (Value::Null, Value::Null)
    );
    let r = h
        .api(
            Method::PATCH,
            &path,
            None,
            Some(json!({"api_key": WRONG_KEY})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["kind"], "auth");
    let r = h
        .api(
            Method::PATCH,
            &path,
            None,
            Some(json!({"dropoff_alarm_minutes": 50_000})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .api(
            Method::PATCH,
            &path,
            None,
            Some(json!({"poll_interval_secs": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .api(Method::PATCH, &path, None, Some(json!({"name": ""})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .api(
            Method::PATCH,
            &path,
            None,
            Some(json!({"api_key": KEY, "poll_interval_secs": 120})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["poll_interval_secs"], 120);
    let r = h
        .api(
            Method::PATCH,
            "/api/v1/sources/nope",
            None,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Pause, resume, failures.
    let r = h
        .api(Method::POST, &format!("{path}/pause"), None, None)
        .await;
    assert_eq!(r.json()["paused"], true);
    let r = h.api(Method::GET, &path, None, None).await;
    assert_eq!(r.json()["status"]["health"], "paused");
    let r = h
        .api(Method::POST, &format!("{path}/resume"), None, None)
        .await;
    assert_eq!(r.json()["paused"], false);
    let r = h
        .api(Method::POST, "/api/v1/sources/nope/pause", None, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .api(Method::GET, &format!("{path}/failures?limit=5"), None, None)
        .await;
    assert_eq!(r.json(), json!({"failures": []}));
    let r = h
        .api(
            Method::GET,
            &format!("{path}/failures?limit=lots"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Verify without saving.
    let r = h
        .api(
            Method::POST,
            "/api/v1/sources/verify",
            None,
            Some(json!({"org_id": ORG, "api_key": KEY, "base_url": base})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["ok"], true);
    let r = h
        .api(
            Method::POST,
            "/api/v1/sources/verify",
            None,
            Some(json!({"org_id": ORG, "api_key": WRONG_KEY, "base_url": base})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = h
        .api(
            Method::POST,
            "/api/v1/sources/verify",
            None,
            Some(json!({"org_id": ORG})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Delete: gone from the store, and a second delete is a 404.
    let r = h.api(Method::DELETE, &path, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("stays in the lake")
    );
    let r = h.api(Method::DELETE, &path, None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .api(Method::DELETE, &format!("{path}?force=maybe"), None, None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h.api(Method::GET, "/api/v1/nothing", None, None).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    h.assert_no_key();
}

#[tokio::test]
async fn queries_search_downloads_and_alarms() {
    let mut h = harness().await;
    let id = h.add_source("Query test").await;
    h.collect(&id).await;
    let count_sql = "SELECT count(*) AS n FROM atlassian_audit";
    let enc = super::pages::url_encode(count_sql);
    let r = h
        .api(Method::GET, &format!("/api/v1/query?sql={enc}"), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let n = r.json()["rows"][0]["n"].as_u64().unwrap();
    assert!(n > 0, "{}", r.body);
    assert_eq!(r.json()["columns"][0]["name"], "n");
    assert_eq!(r.json()["truncated"], false);
    // The detail shows the progress.
    let r = h
        .api(Method::GET, &format!("/api/v1/sources/{id}"), None, None)
        .await;
    assert_eq!(r.json()["progress"]["events_in_lake"].as_u64(), Some(n));
    assert_eq!(r.json()["status"]["health"], "healthy");
    assert_eq!(r.json()["activity"]["hourly"].as_array().unwrap().len(), 24);
    // CSV download, JSON download, POST, row limit.
    let all = super::pages::url_encode(
        "SELECT id, attributes.action AS action FROM atlassian_audit ORDER BY id",
    );
    let r = h
        .api(
            Method::GET,
            &format!("/api/v1/query?format=csv&sql={all}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(
        r.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    assert!(r.body.starts_with("id,action\n"), "{}", r.body);
    assert_eq!(r.body.lines().count() as u64, n + 1);
    let r = h
        .api(
            Method::GET,
            &format!("/api/v1/query?format=json&download=true&max_rows=3&sql={all}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    assert_eq!(r.headers["x-orgtrail-truncated"], "true");
    let r = h
        .api(
            Method::POST,
            "/api/v1/query",
            None,
            Some(json!({"sql": count_sql})),
        )
        .await;
    assert_eq!(r.json()["rows"][0]["n"].as_u64(), Some(n));
    // Every sample query of the Data Explorer runs.
    for (title, sql) in super::ops::SAMPLES {
        let r = h
            .api(
                Method::POST,
                "/api/v1/query",
                None,
                Some(json!({"sql": sql})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{title}: {}", r.body);
    }
    // Bad queries: clear 4xx.
    for (body, field) in [
        (json!({"sql": "SELEC nonsense"}), "sql"),
        (json!({"sql": "SELECT * FROM no_such_table"}), "sql"),
        (json!({"sql": "COPY (SELECT 1) TO '/tmp/x.csv'"}), "sql"),
        (json!({"sql": "CREATE TABLE t AS SELECT 1"}), "sql"),
        (json!({"sql": " "}), "sql"),
        (json!({"sql": "SELECT 1", "format": "xml"}), "format"),
        (json!({"sql": "SELECT 1", "max_rows": 0}), "max_rows"),
    ] {
        let r = h
            .api(Method::POST, "/api/v1/query", None, Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}");
        assert!(!r.json()["message"].as_str().unwrap().is_empty());
    }
    let r = h.api(Method::GET, "/api/v1/query", None, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("sql"));
    // Quick search over the p_any_* columns.
    let ip_sql = super::pages::url_encode(
        "SELECT p_any_ip_addresses[1] AS ip FROM atlassian_audit WHERE p_any_ip_addresses IS NOT NULL LIMIT 1",
    );
    let r = h
        .api(
            Method::GET,
            &format!("/api/v1/query?sql={ip_sql}"),
            None,
            None,
        )
        .await;
    let ip = r.json()["rows"][0]["ip"].as_str().unwrap().to_owned();
    let r = h
        .api(
            Method::GET,
            &format!("/api/v1/search?q={}", super::pages::url_encode(&ip)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json()["row_count"].as_u64().unwrap() > 0);
    assert!(
        r.json()["sql"]
            .as_str()
            .unwrap()
            .contains("array_has(p_any_ip_addresses")
    );
    let r = h
        .api(Method::GET, "/api/v1/search?q=no'such%20value", None, None)
        .await;
    assert_eq!(
        (r.status, r.json()["row_count"].as_u64()),
        (StatusCode::OK, Some(0)),
        "quotes are escaped"
    );
    let r = h.api(Method::GET, "/api/v1/search?q=%20", None, None).await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("q"))
    );
    // Alarms: the current states (no monitor runs in this harness, so the new drop-off alarm is not
    // evaluated yet), and no recorded history yet.
    h.api(
        Method::PATCH,
        &format!("/api/v1/sources/{id}"),
        None,
        Some(json!({"dropoff_alarm_minutes": 60})),
    )
    .await;
    let r = h.api(Method::GET, "/api/v1/alarms", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["current"][0]["alarm"], "SOURCE_NO_DATA");
    assert_eq!(r.json()["current"][0]["state"], "INSUFFICIENT_DATA");
    assert_eq!(r.json()["history"], json!([]));
    h.assert_no_key();
}

#[tokio::test]
async fn the_pages_onboard_edit_and_delete_a_source() {
    let mut h = harness().await;
    let s = h.login().await;
    let base = h.sim.base_url().to_owned();
    // Name: empty or taken names are refused with the name kept.
    let r = h
        .get("/sources/new/atlassian/credentials?name=%20", Some(&s))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("enter a descriptive name"));
    let r = h
        .get("/sources/new/atlassian/credentials?name=My%20org", Some(&s))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Set Credentials") && r.body.contains("value=\"My org\""));
    // Credentials: a wrong key is explained, the fields are kept, the key is not.
    let creds = |key: &'static str| {
        vec![
            ("name", "My org".to_owned()),
            ("org_id", ORG.to_owned()),
            ("api_key", key.to_owned()),
            ("base_url", base.clone()),
            ("key_expires_at", "2027-01-31".to_owned()),
        ]
    };
    async fn post_creds(h: &mut Harness, s: &Session, fields: Vec<(&'static str, String)>) -> Resp {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.post("/sources/new/atlassian/credentials", s, &pairs)
            .await
    }
    let r = post_creds(&mut h, &s, creds(WRONG_KEY)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Atlassian rejected the API key"));
    assert!(
        r.body.contains(&format!("value=\"{ORG}\""))
            && r.body.contains(&format!("value=\"{base}\""))
    );
    assert!(r.body.contains("value=\"2027-01-31\""));
    let mut bad_url = creds(KEY);
    bad_url[3].1 = "not a url".into();
    let r = post_creds(&mut h, &s, bad_url).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("must be an http(s) URL"));
    // The right key: on to the confirmation, then Finish with a drop-off alarm.
    let r = post_creds(&mut h, &s, creds(KEY)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let confirm = r.location().to_owned();
    assert!(confirm.starts_with("/sources/new/atlassian/confirm/"));
    let r = h.get(&confirm, Some(&s)).await;
    assert!(r.body.contains("The credentials were verified") && r.body.contains("Finish Setup"));
    let finish = confirm.replace("/confirm/", "/finish/");
    let r = h
        .post(
            &finish,
            &s,
            &[
                ("alarm_enabled", "on"),
                ("alarm_value", "5"),
                ("alarm_unit", "minutes"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("between 15 minutes and 30 days"));
    let r = h
        .post(
            &finish,
            &s,
            &[
                ("alarm_enabled", "on"),
                ("alarm_value", "2"),
                ("alarm_unit", "days"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().ends_with("?msg=created"));
    let id = id_of(r.location());
    let src = h.app.store.get_source(&id).await.unwrap();
    assert_eq!(
        (src.name.as_str(), src.dropoff_alarm_minutes),
        ("My org", Some(2880))
    );
    assert_eq!(
        src.key_expires_at.map(|t| t.to_string()),
        Some("2027-01-31T00:00:00Z".into())
    );
    let r = h.post(&finish, &s, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a setup finishes once");
    let r = h
        .get("/sources/new/atlassian/confirm/unknown", Some(&s))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The detail page and its forms.
    let detail = format!("/sources/{id}");
    let r = h.get(&format!("{detail}?msg=created"), Some(&s)).await;
    assert!(
        r.body.contains("collection has started") && r.body.contains("Drop-off: INSUFFICIENT_DATA")
    );
    let r = h
        .post(&format!("{detail}/rename"), &s, &[("name", "Renamed org")])
        .await;
    assert_eq!(r.location(), format!("{detail}?msg=renamed"));
    let r = h
        .post(&format!("{detail}/rename"), &s, &[("name", "")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("enter a descriptive name"));
    let r = h
        .post(&format!("{detail}/key"), &s, &[("api_key", WRONG_KEY)])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Atlassian rejected the API key"));
    let r = h
        .post(&format!("{detail}/key"), &s, &[("api_key", KEY)])
        .await;
    assert_eq!(r.location(), format!("{detail}?msg=key_rotated"));
    let r = h
        .post(
            &format!("{detail}/alarm"),
            &s,
            &[
                ("alarm_enabled", "on"),
                ("alarm_value", "x"),
                ("alarm_unit", "hours"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            &format!("{detail}/alarm"),
            &s,
            &[("alarm_value", "3"), ("alarm_unit", "hours")],
        )
        .await;
    assert_eq!(r.location(), format!("{detail}?msg=alarm_saved"));
    assert_eq!(
        h.app
            .store
            .get_source(&id)
            .await
            .unwrap()
            .dropoff_alarm_minutes,
        None,
        "unchecked turns it off"
    );
    let r = h
        .post(
            &format!("{detail}/expiry"),
            &s,
            &[("key_expires_at", "2028-02-29")],
        )
        .await;
    assert_eq!(r.location(), format!("{detail}?msg=expiry_saved"));
    let r = h.get(&format!("{detail}?msg=expiry_saved"), Some(&s)).await;
    assert!(r.body.contains("value=\"2028-02-29\"") && r.body.contains("expiry date was saved"));
    let r = h
        .post(
            &format!("{detail}/expiry"),
            &s,
            &[("key_expires_at", "someday")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("is not a date"));
    let r = h
        .post(&format!("{detail}/expiry"), &s, &[("key_expires_at", "")])
        .await;
    assert_eq!(r.location(), format!("{detail}?msg=expiry_saved"));
    assert_eq!(
        h.app.store.get_source(&id).await.unwrap().key_expires_at,
        None,
        "empty clears it"
    );
    let r = h.post(&format!("{detail}/pause"), &s, &[]).await;
    assert_eq!(r.location(), format!("{detail}?msg=paused"));
    let r = h.get(&format!("{detail}?msg=paused"), Some(&s)).await;
    assert!(r.body.contains("Resume") && r.body.contains("The source is paused"));
    let r = h.post(&format!("{detail}/resume"), &s, &[]).await;
    assert_eq!(r.location(), format!("{detail}?msg=resumed"));
    let r = h.post("/sources/nope/pause", &s, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.get("/sources/nope", Some(&s)).await.status,
        StatusCode::NOT_FOUND
    );

    // The list, the explorer, the system errors page.
    let r = h.get("/sources", Some(&s)).await;
    assert!(r.body.contains("Renamed org") && r.body.contains("<svg"));
    h.collect(&id).await;
    let r = h
        .get(
            &format!(
                "/explorer?sql={}",
                super::pages::url_encode("SELECT count(*) AS n FROM atlassian_audit")
            ),
            Some(&s),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"results\"") && r.body.contains("Download CSV"));
    let r = h.get("/explorer?sql=SELEC%20x", Some(&s)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("class=\"alert error\""));
    let r = h.get("/explorer?q=%20", Some(&s)).await;
    assert_eq!(r.status, StatusCode::OK, "an empty search is no search");
    let r = h.get("/system-errors", Some(&s)).await;
    assert!(r.body.contains("Alarm history") && r.body.contains("No alarm transitions recorded"));
    assert_eq!(
        h.get("/nowhere", Some(&s)).await.status,
        StatusCode::NOT_FOUND
    );

    // Delete, with confirmation; the data stays in the lake.
    let r = h.get(&format!("{detail}/delete"), Some(&s)).await;
    assert!(r.body.contains("stay in the lake"));
    let r = h.post(&format!("{detail}/delete"), &s, &[]).await;
    assert_eq!(r.location(), "/sources?msg=deleted");
    assert!(h.app.store.find_source(&id).await.unwrap().is_none());
    let r = h
        .api(
            Method::GET,
            &format!(
                "/api/v1/query?sql={}",
                super::pages::url_encode("SELECT count(*) AS n FROM atlassian_audit")
            ),
            None,
            None,
        )
        .await;
    assert!(
        r.json()["rows"][0]["n"].as_u64().unwrap() > 0,
        "the data stays"
    );
    assert_eq!(
        h.get(&format!("{detail}/delete"), Some(&s)).await.status,
        StatusCode::NOT_FOUND
    );
    h.assert_no_key();
}

#[test]
fn a_console_beyond_loopback_without_tls_is_warned_about() {
    assert!(super::exposure_warning("127.0.0.1:8080".parse().unwrap(), false).is_none());
    assert!(super::exposure_warning("[::1]:8080".parse().unwrap(), false).is_none());
    assert!(super::exposure_warning("0.0.0.0:8080".parse().unwrap(), true).is_none());
    let w = super::exposure_warning("0.0.0.0:8080".parse().unwrap(), false).unwrap();
    assert!(w.contains("without TLS") && w.contains("--tls-cert"));
}

#[test]
fn last_four_only_for_long_keys() {
    assert_eq!(
        super::ops::last4("abcdefghijklmnop").as_deref(),
        Some("mnop")
    );
    assert_eq!(super::ops::last4("short-key"), None);
}

#[tokio::test]
async fn over_tls_the_cookies_are_secure() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let args = super::ConsoleArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        no_console: false,
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let deps = Deps {
        store,
        lake,
        data_dir: dir.path().to_owned(),
        collectors: None,
    };
    let server = super::start(&args, deps, cancel.clone())
        .await
        .unwrap()
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/setup", server.addr.port());
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let cookie = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        r.headers()
            .contains_key(reqwest::header::STRICT_TRANSPORT_SECURITY)
    );
    // Plain HTTP on the TLS port gets nothing.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/setup", server.addr.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    cancel.cancel();
    server.stopped().await;
}

#[test]
fn times_read_as_ago_or_in() {
    let now: jiff::Timestamp = "2026-01-10T12:00:00Z".parse().unwrap();
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    assert_eq!(super::ops::ago(at("2026-01-10T11:59:30Z"), now), "30 s ago");
    assert_eq!(super::ops::ago(at("2026-01-10T10:00:00Z"), now), "2 h ago");
    assert_eq!(
        super::ops::ago(at("2026-01-13T12:00:00Z"), now),
        "in 3 days"
    );
}

#[tokio::test]
async fn health_alarms_and_history_come_from_the_health_module() {
    use super::status::{Health, alarm_history, source_status};
    use orgtrail_state::{
        AlarmKind, AlarmRecord, AlarmState, AlarmStore, Checkpoint, EventKey, KeyInput,
        NewAlarmEvent, NewSource, SecretString,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let mut new = NewSource::new(
        "S",
        ORG,
        KeyInput::Value(SecretString::from(KEY.to_owned())),
    );
    new.dropoff_alarm_minutes = Some(15);
    let s = store.add_source(new).await.unwrap();
    let now = jiff::Timestamp::now();
    let st = source_status(&store, &s, now).await.unwrap();
    assert_eq!(st.health, Health::Starting);
    // A failed poll: unhealthy, with the reason.
    store
        .record_error(&s.id, now, "HTTP 401: the key is invalid")
        .await
        .unwrap();
    let st = source_status(&store, &s, now).await.unwrap();
    assert_eq!(st.health, Health::Unhealthy);
    assert!(
        st.reason
            .as_deref()
            .unwrap_or("")
            .contains("the key is invalid"),
        "{:?}",
        st.reason
    );
    // Events arrive and a poll succeeds: healthy.
    let event = EventKey {
        event_id: "e1".into(),
        processed_at_ms: Some(now.as_millisecond()),
    };
    let cp = Checkpoint {
        page_seq: 1,
        ..Checkpoint::default()
    };
    store.begin_batch(&s.id, "b1", &[event], &[]).await.unwrap();
    store.commit_batch("b1", 1, Some(&cp)).await.unwrap();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    store.record_success(&s.id, later).await.unwrap();
    assert_eq!(
        source_status(&store, &s, later).await.unwrap().health,
        Health::Healthy
    );
    // The monitor records the drop-off alarm firing: the console shows it and its history.
    let alarm = AlarmRecord {
        source_id: s.id.clone(),
        kind: AlarmKind::NoData,
        state: AlarmState::Alarm,
        since: later,
        evaluated_at: later,
        threshold_minutes: Some(15),
        armed_at: Some(now),
        last_data_at: Some(now),
        stage: None,
        message: "no events received for 15 minutes".into(),
        remedy: Some("check the source".into()),
    };
    let transition = NewAlarmEvent {
        source_id: s.id.clone(),
        source_name: s.name.clone(),
        kind: AlarmKind::NoData,
        from: AlarmState::Ok,
        to: AlarmState::Alarm,
        stage: None,
        at: later,
        message: "no events received for 15 minutes".into(),
        remedy: None,
        notify: true,
    };
    store
        .save_alarms(&s.id, &[alarm], &[], &[transition])
        .await
        .unwrap();
    let st = source_status(&store, &s, later).await.unwrap();
    assert_eq!(st.health, Health::Unhealthy);
    let a = &st.alarms[0];
    assert_eq!((a.alarm, a.state), ("SOURCE_NO_DATA", "ALARM"));
    assert!(a.message.contains("15 minutes") && a.message.contains("check the source"));
    let history = alarm_history(&store, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].alarm.as_str(), history[0].state.as_str()),
        ("SOURCE_NO_DATA", "ALARM")
    );
    // Paused wins over everything else.
    let s = store.set_paused(&s.id, true).await.unwrap();
    assert_eq!(
        source_status(&store, &s, later).await.unwrap().health,
        Health::Paused
    );
}
