//! One poll cycle: follow cursors until the stream is caught up (atlassian-org-api.md §5–§6).

use crate::client::{Client, PageRequest};
use crate::error::ApiError;
use crate::hooks::Hooks;
use crate::key::ApiKey;
use crate::page::Page;

/// Why a cycle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleEnd {
    /// A page without events (terminal mode A, or a quiet stream): poll again later with
    /// [`Cycle::resume_request`].
    CaughtUp,
    /// A page without a next cursor (terminal mode B). Poll again later with the last cursor if
    /// there is one, or restart from the checkpoint's `processedAt` and dedupe by id.
    NoNextCursor,
    /// `max_pages_per_cycle` pages were fetched; more are probably waiting. Start the next
    /// cycle right away (after committing).
    PageCap,
}

/// Walks `/events-stream` for one org from a start request until an empty page, a missing
/// next cursor or the page cap. Failed requests leave the position unchanged: calling
/// [`Cycle::next_page`] again repeats the same request.
///
/// ```no_run
/// # async fn demo(client: orgtrail_atlassian::Client, key: orgtrail_atlassian::ApiKey) -> Result<(), orgtrail_atlassian::ApiError> {
/// use orgtrail_atlassian::{NoHooks, PageRequest};
/// let mut cycle = client.cycle("org-id", &key, PageRequest::Start { from_ms: Some(1_748_800_000_000) });
/// while let Some(page) = cycle.next_page(&NoHooks).await? {
///     // write page.events durably, then checkpoint page.next_cursor / max processedAt
/// }
/// let next_poll = cycle.resume_request(); // Some(Cursor(last non-null cursor)) or None
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Cycle {
    client: Client,
    org_id: String,
    key: ApiKey,
    next: PageRequest,
    last_cursor: Option<String>,
    pages: u32,
    end: Option<CycleEnd>,
}

impl Client {
    /// Starts a [`Cycle`] (no request is sent until [`Cycle::next_page`]).
    pub fn cycle(&self, org_id: &str, key: &ApiKey, start: PageRequest) -> Cycle {
        let last_cursor = match &start {
            PageRequest::Cursor(c) => Some(c.clone()),
            PageRequest::Start { .. } => None,
        };
        Cycle {
            client: self.clone(),
            org_id: org_id.to_string(),
            key: key.clone(),
            next: start,
            last_cursor,
            pages: 0,
            end: None,
        }
    }
}

impl Cycle {
    /// The next page, or `None` once the cycle has ended (see [`Cycle::end`]). The page that
    /// ends the cycle (possibly empty) is returned before `None`.
    pub async fn next_page(&mut self, hooks: &dyn Hooks) -> Result<Option<Page>, ApiError> {
        if self.end.is_some() {
            return Ok(None);
        }
        if self.pages >= self.client.config().max_pages_per_cycle {
            self.end = Some(CycleEnd::PageCap);
            return Ok(None);
        }
        let page = self
            .client
            .fetch_page(&self.org_id, &self.key, &self.next, hooks)
            .await?;
        self.pages += 1;
        if let Some(c) = &page.next_cursor {
            self.last_cursor = Some(c.clone());
        }
        if page.events.is_empty() {
            self.end = Some(CycleEnd::CaughtUp);
        } else if let Some(c) = &page.next_cursor {
            self.next = PageRequest::Cursor(c.clone());
        } else {
            self.end = Some(CycleEnd::NoNextCursor);
        }
        Ok(Some(page))
    }

    /// Why the cycle ended, `None` while it runs.
    pub fn end(&self) -> Option<CycleEnd> {
        self.end
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The last non-null cursor seen (or the start cursor): keep it for the next poll.
    pub fn last_cursor(&self) -> Option<&str> {
        self.last_cursor.as_deref()
    }

    /// What the next cycle should start with: the last non-null cursor, or `None` when no
    /// cursor was ever seen (restart from the checkpoint's `processedAt`).
    pub fn resume_request(&self) -> Option<PageRequest> {
        self.last_cursor.clone().map(PageRequest::Cursor)
    }
}
