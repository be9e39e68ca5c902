//! [`ApiError`], its classifier and the lenient error-body parser.

use std::time::Duration;

use serde::Deserialize;

/// The command that replaces a source's API key (in every auth error message).
pub const REPLACE_KEY_HINT: &str = "create a new key in admin.atlassian.com > Settings > API keys, then replace it with \
`orgtrail source edit NAME --api-key-env VAR` or `orgtrail source edit NAME --api-key-file FILE`";

/// Coarse error class, for metrics labels and for the engine's decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401: key invalid, revoked or expired. Fatal for the source.
    Auth,
    /// 403: not allowed (not an org admin, or no audit log on the plan). Fatal for the source.
    Forbidden,
    /// 404: wrong Organization ID or base URL. Fatal for the source.
    NotFound,
    /// 400 `ADMIN-400-1`: the cursor is invalid or expired; restart from `processedAt`.
    InvalidCursor,
    /// Another 4xx (or an unexpected status): a bug or a configuration problem.
    BadRequest,
    /// 429 after every allowed retry.
    RateLimited,
    /// 5xx (or 408) after every allowed retry.
    Server,
    /// Timeout, connection refused/reset, TLS, DNS, after every allowed retry.
    Transport,
    /// A 2xx body that is truncated, not JSON or not a page, after every allowed retry.
    Body,
    /// The API returned the cursor it was given with a non-empty page.
    LoopGuard,
    /// The client configuration or an argument is invalid (no request was sent).
    Config,
}

impl ErrorKind {
    /// A stable lowercase label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidCursor => "invalid_cursor",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "server",
            ErrorKind::Transport => "transport",
            ErrorKind::Body => "body",
            ErrorKind::LoopGuard => "loop_guard",
            ErrorKind::Config => "config",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a call to the Organizations API can fail with. Messages name the organization
/// and the base URL and say what the user can do; they never contain the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// HTTP 401.
    #[error(
        "Atlassian rejected the API key for organization {org_id} at {base_url} (HTTP 401{}): the key is invalid, revoked or expired \
         (organization API keys expire, by default one week after creation); {REPLACE_KEY_HINT}. Not retried",
        opt_code(.code)
    )]
    Auth {
        /// Organization ID.
        org_id: String,
        /// Base URL (without credentials).
        base_url: String,
        /// Atlassian error code, if any.
        code: Option<String>,
    },
    /// HTTP 403.
    #[error(
        "Atlassian refused access to the audit log of organization {org_id} at {base_url} (HTTP 403{}{}): the key's creator is not an \
         organization admin, or the organization's plan lacks the audit log (it needs Atlassian Guard Standard or Enterprise); \
         use a key created by an org admin of an organization with Atlassian Guard. Not retried",
        opt_code(.code), opt_detail(.detail)
    )]
    Forbidden {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// Atlassian error code (e.g. `ADMIN-403-3`).
        code: Option<String>,
        /// Server's title/detail.
        detail: Option<String>,
    },
    /// HTTP 404.
    #[error(
        "organization {org_id} was not found at {base_url} (HTTP 404{}{}): check the Organization ID (the UUID in \
         admin.atlassian.com/o/<orgId>/...) and the base URL. Not retried",
        opt_code(.code), opt_detail(.detail)
    )]
    NotFound {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// Atlassian error code (`ADMIN-404-2` org not found, `ADMIN-404-1` unknown resource).
        code: Option<String>,
        /// Server's title/detail.
        detail: Option<String>,
    },
    /// HTTP 400 `ADMIN-400-1`.
    #[error(
        "{base_url} rejected the page cursor for organization {org_id} (HTTP 400 ADMIN-400-1, invalid or expired cursor{}): \
         drop the cursor and restart from the last checkpoint's processedAt minus an overlap; duplicates are removed by event id",
        opt_detail(.detail)
    )]
    InvalidCursor {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// Server's title/detail.
        detail: Option<String>,
    },
    /// Another 4xx, or an unexpected status (e.g. a redirect).
    #[error("{}", bad_request_message(.org_id, .base_url, *.status, .code, .detail))]
    BadRequest {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// HTTP status.
        status: u16,
        /// Atlassian error code.
        code: Option<String>,
        /// Server's title/detail.
        detail: Option<String>,
    },
    /// HTTP 429 after every allowed retry.
    #[error(
        "{base_url} kept rate limiting requests for organization {org_id} (HTTP 429 after {attempts} attempts, last wait {last_wait:?}): \
         another client may share the key's budget (about 50 requests/min per path); lower the request rate or wait. Will be retried"
    )]
    RateLimited {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// Requests made.
        attempts: u32,
        /// The last wait.
        last_wait: Duration,
    },
    /// 5xx (or 408) after every allowed retry.
    #[error(
        "{base_url} answered HTTP {status}{} for organization {org_id} after {attempts} attempts: an Atlassian-side (transient) error; \
         will be retried later. If it persists, check status.atlassian.com",
        opt_code(.code)
    )]
    Server {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// HTTP status.
        status: u16,
        /// Atlassian error code.
        code: Option<String>,
        /// Requests made.
        attempts: u32,
    },
    /// Timeout, connect or connection error after every allowed retry.
    #[error(
        "could not complete a request to {base_url} for organization {org_id} after {attempts} attempts ({}{message}): \
         check the network, proxy and base URL. Will be retried",
        if *.timed_out { "timed out: " } else { "" }
    )]
    Transport {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// Requests made.
        attempts: u32,
        /// The request timed out.
        timed_out: bool,
        /// The cause (without URL).
        message: String,
    },
    /// Truncated or invalid response body after every allowed retry.
    #[error(
        "{base_url} sent an invalid response body for organization {org_id} (HTTP {status}, {bytes} bytes, after {attempts} attempts): \
         {message}; the response was truncated or is not an events page. Will be retried"
    )]
    Body {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// HTTP status.
        status: u16,
        /// Bytes received.
        bytes: usize,
        /// Requests made.
        attempts: u32,
        /// Parser message.
        message: String,
    },
    /// The same cursor came back with a non-empty page.
    #[error(
        "{base_url} returned the same cursor it was given together with {events} events for organization {org_id}: stopped to \
         avoid re-reading the same page forever; restart from the last checkpoint's processedAt"
    )]
    LoopGuard {
        /// Organization ID.
        org_id: String,
        /// Base URL.
        base_url: String,
        /// Events on the page.
        events: usize,
    },
    /// Invalid configuration or argument; nothing was sent.
    #[error("invalid Atlassian client configuration: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn opt_code(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
}

fn opt_detail(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!(", \"{d}\""))
        .unwrap_or_default()
}

fn bad_request_message(
    org_id: &str,
    base_url: &str,
    status: u16,
    code: &Option<String>,
    detail: &Option<String>,
) -> String {
    let what = match (status, code.as_deref()) {
        (400, Some("ADMIN-400-3")) => {
            "the time range was rejected: this is an orgtrail bug (`from` must be epoch-millisecond digits); please report it"
        }
        (400, Some("ADMIN-400-4")) => {
            "a parameter or resource was rejected (invalid limit or resource); check the source configuration"
        }
        (405, _) => "the method is not supported: this is an orgtrail bug; please report it",
        (300..=399, _) => {
            "the server answered with a redirect, which is not followed (it would resend the API key); check the base URL \
             (https://api.atlassian.com or your regional host)"
        }
        _ => "unexpected answer; check the base URL and the source configuration",
    };
    format!(
        "{base_url} answered HTTP {status}{}{} for organization {org_id}: {what}. Not retried",
        opt_code(code),
        opt_detail(detail)
    )
}

impl ApiError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Auth { .. } => ErrorKind::Auth,
            ApiError::Forbidden { .. } => ErrorKind::Forbidden,
            ApiError::NotFound { .. } => ErrorKind::NotFound,
            ApiError::InvalidCursor { .. } => ErrorKind::InvalidCursor,
            ApiError::BadRequest { .. } => ErrorKind::BadRequest,
            ApiError::RateLimited { .. } => ErrorKind::RateLimited,
            ApiError::Server { .. } => ErrorKind::Server,
            ApiError::Transport { .. } => ErrorKind::Transport,
            ApiError::Body { .. } => ErrorKind::Body,
            ApiError::LoopGuard { .. } => ErrorKind::LoopGuard,
            ApiError::Config { .. } => ErrorKind::Config,
        }
    }

    /// Transient: trying again later (same request, same cursor) may succeed. True for
    /// rate limits, 5xx, transport and body errors (returned only once the client's own
    /// retries are used up).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::RateLimited | ErrorKind::Server | ErrorKind::Transport | ErrorKind::Body
        )
    }

    /// The source cannot work until the user fixes its configuration (401, 403, 404): stop
    /// polling it and raise an alarm; never retry automatically.
    pub fn is_fatal_for_source(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Auth | ErrorKind::Forbidden | ErrorKind::NotFound
        )
    }

    /// The HTTP status behind the error, if there was a response.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ApiError::Auth { .. } => Some(401),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::NotFound { .. } => Some(404),
            ApiError::InvalidCursor { .. } => Some(400),
            ApiError::RateLimited { .. } => Some(429),
            ApiError::BadRequest { status, .. }
            | ApiError::Server { status, .. }
            | ApiError::Body { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Atlassian error code (`ADMIN-400-1`, ...), if the body carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Auth { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::BadRequest { code, .. }
            | ApiError::Server { code, .. } => code.as_deref(),
            ApiError::InvalidCursor { .. } => Some("ADMIN-400-1"),
            _ => None,
        }
    }

    /// Sets the attempt count of a retryable error.
    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            ApiError::RateLimited { attempts, .. }
            | ApiError::Server { attempts, .. }
            | ApiError::Transport { attempts, .. }
            | ApiError::Body { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }
}

/// The first entry of an error body `{"errors":[{"status","code","title","detail"}]}`, parsed
/// leniently: any member may be missing, `status` may be a string or a number, and a body that
/// is not JSON gives an empty result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub code: Option<String>,
    pub title: Option<String>,
    pub detail: Option<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            errors: Option<Vec<serde_json::Value>>,
        }
        let Ok(w) = serde_json::from_slice::<Wire>(body) else {
            return Self::default();
        };
        let Some(first) = w.errors.and_then(|e| e.into_iter().next()) else {
            return Self::default();
        };
        let field = |name: &str| {
            first
                .get(name)
                .and_then(|v| v.as_str())
                .map(|s| clip(s.trim()))
                .filter(|s| !s.is_empty())
        };
        Self {
            code: field("code"),
            title: field("title"),
            detail: field("detail"),
        }
    }

    /// `title: detail`, or whichever exists.
    pub(crate) fn summary(&self) -> Option<String> {
        match (&self.title, &self.detail) {
            (Some(t), Some(d)) if t != d => Some(format!("{t}: {d}")),
            (Some(t), _) => Some(t.clone()),
            (None, Some(d)) => Some(d.clone()),
            (None, None) => None,
        }
    }
}

/// Keeps server-provided text short and on one line.
fn clip(s: &str) -> String {
    const MAX: usize = 200;
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let mut t: String = one_line.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> (String, String) {
        ("org-1".to_string(), "https://api.atlassian.com".to_string())
    }

    #[test]
    fn error_body_is_parsed_leniently() {
        let b = ErrorBody::parse(
            br#"{"errors":[{"status":"400","code":"ADMIN-400-1","title":"Invalid page cursor"}]}"#,
        );
        assert_eq!(b.code.as_deref(), Some("ADMIN-400-1"));
        assert_eq!(b.summary().as_deref(), Some("Invalid page cursor"));
        let b = ErrorBody::parse(br#"{"errors":[{"status":403,"detail":"nope\nreally"}],"x":1}"#);
        assert_eq!(b.code, None);
        assert_eq!(b.summary().as_deref(), Some("nope really"));
        assert_eq!(
            ErrorBody::parse(b"<html>bad gateway</html>"),
            ErrorBody::default()
        );
        assert_eq!(ErrorBody::parse(b""), ErrorBody::default());
        assert_eq!(ErrorBody::parse(br#"{"errors":[]}"#), ErrorBody::default());
        assert_eq!(
            ErrorBody::parse(br#"{"errors":null}"#),
            ErrorBody::default()
        );
        assert_eq!(
            ErrorBody::parse(br#"{"errors":[{"code":7}]}"#),
            ErrorBody::default()
        );
        let long = format!(r#"{{"errors":[{{"title":"{}"}}]}}"#, "x".repeat(1000));
        assert!(
            ErrorBody::parse(long.as_bytes())
                .title
                .unwrap()
                .chars()
                .count()
                <= 201
        );
    }

    #[test]
    fn classification() {
        let (org_id, base_url) = base();
        let all = vec![
            ApiError::Auth {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                code: None,
            },
            ApiError::Forbidden {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                code: Some("ADMIN-403-3".into()),
                detail: None,
            },
            ApiError::NotFound {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                code: Some("ADMIN-404-2".into()),
                detail: None,
            },
            ApiError::InvalidCursor {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                detail: None,
            },
            ApiError::BadRequest {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                status: 400,
                code: Some("ADMIN-400-3".into()),
                detail: None,
            },
            ApiError::RateLimited {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                attempts: 3,
                last_wait: Duration::from_secs(1),
            },
            ApiError::Server {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                status: 503,
                code: None,
                attempts: 2,
            },
            ApiError::Transport {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                attempts: 2,
                timed_out: true,
                message: "x".into(),
            },
            ApiError::Body {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                status: 200,
                bytes: 10,
                attempts: 1,
                message: "EOF".into(),
            },
            ApiError::LoopGuard {
                org_id: org_id.clone(),
                base_url: base_url.clone(),
                events: 3,
            },
            ApiError::Config {
                message: "bad".into(),
            },
        ];
        let kinds: Vec<_> = all.iter().map(|e| e.kind()).collect();
        use ErrorKind::*;
        assert_eq!(
            kinds,
            [
                Auth,
                Forbidden,
                NotFound,
                InvalidCursor,
                BadRequest,
                RateLimited,
                Server,
                Transport,
                Body,
                LoopGuard,
                Config
            ]
        );
        let retryable: Vec<_> = all
            .iter()
            .filter(|e| e.is_retryable())
            .map(|e| e.kind())
            .collect();
        assert_eq!(retryable, [RateLimited, Server, Transport, Body]);
        let fatal: Vec<_> = all
            .iter()
            .filter(|e| e.is_fatal_for_source())
            .map(|e| e.kind())
            .collect();
        assert_eq!(fatal, [Auth, Forbidden, NotFound]);
        for e in &all {
            let msg = e.to_string();
            assert!(!e.is_retryable() || !e.is_fatal_for_source());
            if !matches!(e, ApiError::Config { .. }) {
                assert!(
                    msg.contains("org-1") && msg.contains("https://api.atlassian.com"),
                    "{msg}"
                );
            }
        }
        assert!(
            all[0].to_string().contains("--api-key-env")
                && all[0].to_string().contains("--api-key-file")
        );
        assert!(all[0].to_string().contains("revoked or expired"));
        assert!(
            all[1].to_string().contains("not an organization admin")
                && all[1].to_string().contains("Guard")
        );
        assert!(
            all[2].to_string().contains("Organization ID")
                && all[2].to_string().contains("ADMIN-404-2")
        );
        assert!(all[4].to_string().contains("orgtrail bug"));
        assert_eq!(all[3].code(), Some("ADMIN-400-1"));
        assert_eq!(all[6].http_status(), Some(503));
        assert_eq!(all[7].http_status(), None);
        let e = ApiError::Server {
            org_id,
            base_url,
            status: 500,
            code: None,
            attempts: 0,
        }
        .with_attempts(4);
        assert!(e.to_string().contains("after 4 attempts"));
    }
}
