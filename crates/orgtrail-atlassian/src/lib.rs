//! `orgtrail-atlassian`: the Atlassian Organizations REST API client of orgtrail.
//!
//! It reads the organization audit log from `GET {base}/admin/v1/orgs/{orgId}/events-stream`
//! (see `docs/atlassian-org-api.md`): cursor paging with both terminal-page behaviours, a
//! proactive rate limiter per (API key, endpoint), retries with the header-driven 429 rules,
//! bounded backoff for transient failures, and one classified error type.
//!
//! ```no_run
//! use orgtrail_atlassian::{ApiKey, Client, ClientConfig, NoHooks, PageRequest};
//! # async fn demo() -> Result<(), orgtrail_atlassian::ApiError> {
//! let client = Client::new(ClientConfig::default())?;          // one per process
//! let key = ApiKey::new(std::env::var("ATLASSIAN_KEY").unwrap_or_default());
//! client.verify("2d2790c2-d6c8-49dc-a9fe-3b0a11a28927", &key).await?;
//! let page = client
//!     .fetch_page("2d2790c2-d6c8-49dc-a9fe-3b0a11a28927", &key, &PageRequest::Start { from_ms: None }, &NoHooks)
//!     .await?;
//! println!("{} events, next cursor {:?}", page.events.len(), page.next_cursor);
//! # Ok(()) }
//! ```
//!
//! The API key never appears in `Debug` output, errors, logs or URLs.

mod client;
mod clock;
mod cycle;
mod error;
mod hooks;
mod key;
mod limiter;
mod page;
pub mod wait;

pub use client::{
    Client, ClientConfig, DEFAULT_BASE_URL, EVENTS_STREAM, MAX_PAGE_LIMIT, PageRequest,
    RetryPolicy, USER_AGENT,
};
pub use clock::{Clock, Sleep, SystemClock};
pub use cycle::{Cycle, CycleEnd};
pub use error::{ApiError, ErrorKind, REPLACE_KEY_HINT};
pub use hooks::{ApiEvent, Hooks, NoHooks, RetryReason};
pub use key::ApiKey;
pub use limiter::RateConfig;
pub use page::{Event, Page, parse_page};
pub use wait::WaitSource;
