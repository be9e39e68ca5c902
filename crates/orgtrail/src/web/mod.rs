//! The web console and its JSON API, served by `orgtrail run` and `orgtrail demo`.
//!
//! - `auth`: password, API tokens, sessions, CSRF, login rate limit, the guard middleware;
//! - `ops`: what the pages and the API do (one function per operation, shared by both);
//! - `status`: source health and alarm states, the boundary the health/alarm module plugs into;
//! - `api`: the JSON routes under `/api/v1`; `pages`: the server-rendered HTML pages;
//! - `cli`: `orgtrail console password | token ...`; `assets/`: the CSS and the one JS file.

pub mod api;
pub mod auth;
pub mod cli;
pub mod ops;
pub mod pages;
pub mod status;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orgtrail_lake::Lake;
use orgtrail_state::{SecretString, StateStore};
use tokio_util::sync::CancellationToken;

use crate::collector::Collectors;

/// `--listen`, `--no-console`, `--tls-cert`, `--tls-key` of `run` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// Serve the web console and its API on this address (IP:PORT; port 0 picks a free one)
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "ORGTRAIL_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Do not serve the web console
    #[arg(long)]
    pub no_console: bool,
    /// Serve the console over TLS with this certificate chain (PEM); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// What the console works on.
pub struct Deps {
    pub store: Arc<dyn StateStore>,
    pub lake: Lake,
    pub data_dir: PathBuf,
    /// Starts collection of a new source at once (`None`: the next `orgtrail run` does).
    pub collectors: Option<Collectors>,
}

/// The console's shared state.
pub struct App {
    pub store: Arc<dyn StateStore>,
    pub lake: Lake,
    pub registry: orgtrail_schema::Registry,
    pub collectors: Option<Collectors>,
    pub auth: auth::Auth,
    /// Verified credentials waiting for "Finish Setup", by wizard id.
    pub pending: Mutex<std::collections::HashMap<String, Pending>>,
}

/// An onboarding whose credentials were verified; the key stays on the server.
pub struct Pending {
    pub name: String,
    pub org_id: String,
    pub base_url: String,
    pub key: SecretString,
    pub key_expires_at: Option<jiff::Timestamp>,
    pub created: Instant,
}

/// How long a verified onboarding waits for "Finish Setup".
pub const PENDING_TTL: Duration = Duration::from_secs(30 * 60);

impl App {
    pub fn new(deps: Deps, secure: bool) -> anyhow::Result<Arc<App>> {
        Ok(Arc::new(App {
            store: deps.store,
            lake: deps.lake,
            registry: orgtrail_schema::Registry::with_builtins()?,
            collectors: deps.collectors,
            auth: auth::Auth::open(&deps.data_dir, secure)?,
            pending: Mutex::new(Default::default()),
        }))
    }
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Every route of the console and the API, behind the guard.
pub fn router(app: Arc<App>) -> Router {
    use axum::routing::{delete, patch};
    let api = Router::new()
        .route(
            "/api/v1/sources",
            get(api::list_sources).post(api::create_source),
        )
        .route("/api/v1/sources/verify", post(api::verify))
        .route(
            "/api/v1/sources/{id}",
            get(api::get_source)
                .merge(patch(api::update_source))
                .merge(delete(api::delete_source)),
        )
        .route("/api/v1/sources/{id}/pause", post(api::pause))
        .route("/api/v1/sources/{id}/resume", post(api::resume))
        .route("/api/v1/sources/{id}/failures", get(api::failures))
        .route("/api/v1/query", get(api::query_get).post(api::query_post))
        .route("/api/v1/search", get(api::search))
        .route("/api/v1/alarms", get(api::alarms))
        .route("/api/v1/session", get(api::session));
    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/setup", get(pages::setup_form).post(pages::setup))
        .route("/logout", post(pages::logout))
        .route("/sources", get(pages::sources))
        .route("/sources/new", get(pages::new_source))
        .route("/sources/new/atlassian", get(pages::wizard_name))
        .route(
            "/sources/new/atlassian/credentials",
            get(pages::wizard_credentials_form).post(pages::wizard_credentials),
        )
        .route(
            "/sources/new/atlassian/confirm/{pid}",
            get(pages::wizard_confirm),
        )
        .route(
            "/sources/new/atlassian/finish/{pid}",
            post(pages::wizard_finish),
        )
        .route("/sources/{id}", get(pages::source_detail))
        .route("/sources/{id}/rename", post(pages::rename))
        .route("/sources/{id}/key", post(pages::rotate_key))
        .route("/sources/{id}/alarm", post(pages::set_alarm))
        .route("/sources/{id}/expiry", post(pages::set_expiry))
        .route("/sources/{id}/pause", post(pages::pause))
        .route("/sources/{id}/resume", post(pages::resume))
        .route(
            "/sources/{id}/delete",
            get(pages::delete_form).post(pages::delete),
        )
        .route("/explorer", get(pages::explorer))
        .route("/system-errors", get(pages::system_errors))
        .route("/static/app.js", get(static_js))
        .route("/static/app.css", get(static_css));
    Router::new()
        .merge(api)
        .merge(pages)
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(app.clone(), auth::guard))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            security_headers,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20))
        .with_state(app)
}

async fn fallback(
    uri: axum::http::Uri,
    ident: Option<axum::Extension<auth::Identity>>,
) -> Response {
    if uri.path().starts_with("/api/") {
        api::not_found().await
    } else {
        pages::not_found(ident).await
    }
}

async fn static_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        APP_JS,
    )
        .into_response()
}

async fn static_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        APP_CSS,
    )
        .into_response()
}

/// Headers on every answer: a strict Content-Security-Policy (no inline script or style, nothing
/// from another origin), no framing, no sniffing, no referrer to other sites, no caching of pages and API answers.
async fn security_headers(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        // `no-referrer` would make Chromium send `Origin: null` on form posts.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if app.auth.secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

/// The warning printed when the console is reachable from other machines without TLS.
pub fn exposure_warning(addr: SocketAddr, tls: bool) -> Option<String> {
    (!addr.ip().is_loopback() && !tls).then(|| {
        format!(
            "warning: the console listens on {addr}, beyond this machine, without TLS: the password, \
             session cookies and query results cross the network in clear text. Use --tls-cert and \
             --tls-key, or listen on 127.0.0.1 behind a TLS proxy"
        )
    })
}

/// The running console server.
pub struct Server {
    /// The bound address (port 0 resolved).
    #[cfg_attr(not(test), allow(dead_code))]
    // read by the tests; the daemon prints it at start
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Waits until the server has stopped (after the cancellation token fired).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Starts the console unless `--no-console`: binds, prints the address and the first-run
/// instructions on stderr, and serves until `cancel`.
pub async fn start(
    args: &ConsoleArgs,
    deps: Deps,
    cancel: CancellationToken,
) -> anyhow::Result<Option<Server>> {
    if args.no_console {
        return Ok(None);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot serve the console on {}: choose another address with --listen ADDR (or --no-console)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let app = App::new(deps, tls.is_some())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("console: {scheme}://{addr}/");
    if let Some(w) = exposure_warning(addr, tls.is_some()) {
        eprintln!("{w}");
    }
    match app.auth.make_setup_code()? {
        Some(code) => eprintln!(
            "first run: open {scheme}://{addr}/setup and enter the setup code {code} to choose the \
             admin password (or set it with `orgtrail console password`)"
        ),
        None => eprintln!(
            "log in with the admin password (forgotten: `orgtrail console password`); scripts use \
             `orgtrail console token create NAME`"
        ),
    }
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = cancel.clone().cancelled_owned();
    let task = match tls {
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("console server stopped: {e}");
            }
        }),
        Some(acceptor) => {
            use axum::serve::ListenerExt;
            // `tap_io` gives the listener axum's `SocketAddr` connect info.
            let listener = tls::TlsListener::new(listener, acceptor, cancel).tap_io(|_| {});
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    eprintln!("console server stopped: {e}");
                }
            })
        }
    };
    Ok(Some(Server { addr, task }))
}

pub mod tls {
    //! Serving the console over TLS (rustls with ring, TLS 1.2 and 1.3).

    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::server::TlsStream;
    use tokio_util::sync::CancellationToken;

    /// Reads the PEM certificate chain and key.
    pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
        if certs.is_empty() {
            anyhow::bail!("{} holds no certificate", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match or are not supported")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Accepts TCP connections and completes TLS handshakes in their own tasks (a slow client
    /// does not hold up the others), handing finished connections to axum.
    pub struct TlsListener {
        rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        addr: SocketAddr,
    }

    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    impl TlsListener {
        pub fn new(tcp: TcpListener, acceptor: TlsAcceptor, cancel: CancellationToken) -> Self {
            let addr = tcp
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        _ = cancel.cancelled() => return,
                        a = tcp.accept() => a,
                    };
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(_) => {
                            // Out of file descriptors and the like: wait a little, go on.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if let Ok(Ok(tls)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            let _ = tx.send((tls, peer)).await;
                        }
                    });
                }
            });
            TlsListener { rx, addr }
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.rx.recv().await {
                Some(x) => x,
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            Ok(self.addr)
        }
    }
}
