//! The `/events-stream` page envelope and events, parsed leniently (atlassian-org-api.md §5, §10).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;

/// One audit event.
#[derive(Clone)]
pub struct Event {
    /// The event `id` (the dedupe key). `None` when the event has no string `id`: the event is
    /// still returned (the normalizer classifies it), but it cannot be deduplicated by id.
    pub id: Option<String>,
    /// `attributes.processedAt` parsed as an instant (RFC 3339, fraction optional). `None`
    /// when missing or unparsable; never compare the raw strings.
    pub processed_at: Option<jiff::Timestamp>,
    /// The page body the event is part of (shared by the page's events, not copied per event).
    body: Arc<String>,
    span: Range<usize>,
    /// Where the text of `attributes.time` (a JSON string's content) is in `body`.
    time: Option<Range<usize>>,
}

impl Event {
    /// An event from its JSON text (for callers that build events themselves, such as tests).
    pub fn new(id: Option<String>, processed_at: Option<jiff::Timestamp>, json: String) -> Self {
        let span = 0..json.len();
        Self {
            id,
            processed_at,
            body: Arc::new(json),
            span,
            time: None,
        }
    }

    /// The event JSON exactly as served.
    pub fn json(&self) -> &str {
        &self.body[self.span.clone()]
    }

    /// The text of `attributes.time` as served (escapes not decoded), unparsed: enough to order
    /// events by time cheaply, such as to group them by hour before normalizing (the normalizer
    /// reads the event time itself). `None` for an event built with [`Event::new`].
    pub fn time_text(&self) -> Option<&str> {
        self.time.clone().and_then(|r| self.body.get(r))
    }

    /// Whether the event is valid JSON: [`parse_page`] only split it from the page. `Err` says
    /// what is wrong; the page is then invalid (fetch it again), like a truncated one.
    pub fn check(&self) -> Result<(), String> {
        serde_json::from_str::<serde::de::IgnoredAny>(self.json())
            .map(|_| ())
            .map_err(|e| format!("the event is not valid JSON: {e}"))
    }

    /// The page body the event is part of (for [`crate::Client::recycle_body`]).
    pub fn body(&self) -> &Arc<String> {
        &self.body
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("processed_at", &self.processed_at)
            .field("json", &self.json())
            .finish()
    }
}

/// One page of `/events-stream`.
#[derive(Debug, Clone)]
pub struct Page {
    /// The events, in the order served (by `processedAt`).
    pub events: Vec<Event>,
    /// The next cursor: `meta.next`, else the `cursor=` parameter of `links.next`. `None` when
    /// both are missing, null or empty.
    pub next_cursor: Option<String>,
    /// Size of the response body.
    pub body_bytes: usize,
}

impl Page {
    /// The page ends a cycle: no events, or no next cursor (atlassian-org-api.md §5, §13.7).
    pub fn ends_cycle(&self) -> bool {
        self.events.is_empty() || self.next_cursor.is_none()
    }

    /// The latest `processedAt` on the page.
    pub fn max_processed_at(&self) -> Option<jiff::Timestamp> {
        self.events.iter().filter_map(|e| e.processed_at).max()
    }
}

/// The members of a page body the collector reads, as spans of the body.
#[derive(Default)]
struct Envelope {
    /// Each element of `data`: balanced JSON text, not validated (see [`parse_page`]).
    data: Vec<Range<usize>>,
    meta: Option<Range<usize>>,
    links: Option<Range<usize>>,
}

impl Envelope {
    /// Splits a page body: the top-level object and its members are checked here (`meta`,
    /// `links` and unknown members are small and parsed in full), `data` only into its elements.
    fn split(text: &str) -> Result<Envelope, String> {
        let mut scan = Scan::new(text);
        let mut env = Envelope::default();
        let mut seen_data = false;
        scan.ws();
        if scan.peek() != Some(b'{') {
            return Err("the body is not a JSON object".into());
        }
        scan.i += 1;
        scan.ws();
        if scan.peek() == Some(b'}') {
            scan.i += 1;
        } else {
            loop {
                scan.ws();
                let start = scan.i;
                if scan.peek() != Some(b'"') || !scan.string() {
                    return Err(format!("expected a member name at byte {start}"));
                }
                let key = json_string(&text[start..scan.i])
                    .ok_or_else(|| format!("invalid member name at byte {start}"))?;
                scan.ws();
                if scan.peek() != Some(b':') {
                    return Err(format!("expected `:` at byte {}", scan.i));
                }
                scan.i += 1;
                scan.ws();
                let duplicate = || format!("duplicate member `{key}`");
                if key == "data" && std::mem::replace(&mut seen_data, true) {
                    return Err(duplicate());
                }
                if key == "data" && scan.peek() == Some(b'[') {
                    env.data = scan.elements()?;
                } else {
                    let span = scan.value().filter(|r| !r.is_empty()).ok_or_else(|| {
                        format!("a truncated or missing value at byte {}", scan.i)
                    })?;
                    let value = &text[span.clone()];
                    serde_json::from_str::<serde::de::IgnoredAny>(value)
                        .map_err(|e| format!("member `{key}`: {e}"))?;
                    let slot = match &*key {
                        "data" if value == "null" => None,
                        "data" => return Err("`data` is not an array".into()),
                        "meta" => Some(&mut env.meta),
                        "links" => Some(&mut env.links),
                        _ => None,
                    };
                    if let Some(slot) = slot
                        && slot.replace(span).is_some()
                    {
                        return Err(duplicate());
                    }
                }
                scan.ws();
                match scan.peek() {
                    Some(b',') => scan.i += 1,
                    Some(b'}') => {
                        scan.i += 1;
                        break;
                    }
                    _ => return Err(format!("expected `,` or `}}` at byte {}", scan.i)),
                }
            }
        }
        scan.ws();
        if scan.i != text.len() {
            return Err(format!("trailing characters at byte {}", scan.i));
        }
        Ok(env)
    }
}

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    next: Option<serde_json::Value>,
}

/// What the collector reads of an event: the first `id` member and, when the first `attributes`
/// member is an object, its first `processedAt` and `time`, as JSON texts (`time` as its range in
/// `text`). `text` is an event [`Envelope::split`] found (balanced, not validated), so this only
/// finds members and skips values, and stops once it has all three (the events served put them
/// first; the normalizer reads the whole event later).
fn head(text: &str) -> Head<'_> {
    let mut scan = Scan::new(text);
    let (mut id, mut attributes, mut processed_at, mut time) = (None, false, None, None);
    scan.members(|key, scan| {
        if key == "id" && id.is_none() {
            id = scan.value();
        } else if key == "attributes" && !attributes {
            attributes = true;
            let done = scan.members(|key, scan| {
                if key == "processedAt" && processed_at.is_none() {
                    processed_at = scan.value();
                } else if key == "time" && time.is_none() {
                    time = scan.value();
                } else {
                    scan.value();
                }
                processed_at.is_none() || time.is_none() || id.is_none()
            });
            // Stop when all were found, or when `attributes` (read whole) was the last one missing.
            return done && id.is_none();
        } else {
            scan.value();
        }
        id.is_none() || !attributes
    });
    let text_of = |r: Option<std::ops::Range<usize>>| r.and_then(|r| text.get(r));
    Head {
        id: text_of(id),
        processed_at: text_of(processed_at),
        time,
    }
}

/// See [`head`].
struct Head<'a> {
    id: Option<&'a str>,
    processed_at: Option<&'a str>,
    /// Where the value of `attributes.time` is in the text.
    time: Option<Range<usize>>,
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// The bytes of `w` (little-endian) that are `"` or `\`, each marked by its high bit. A byte after
/// a marked one may be marked wrongly (a borrow), so only the lowest mark is to be trusted.
fn quote_or_backslash(w: u64) -> u64 {
    let q = w ^ (ONES * u64::from(b'"'));
    let b = w ^ (ONES * u64::from(b'\\'));
    (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & (ONES << 7)
}

/// A cursor over JSON text that matches strings and brackets only (see [`head`] and
/// [`Envelope::split`]). Malformed text ends the scan or is reported: every index is checked, so
/// nothing panics.
struct Scan<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Scan { text, i: 0 }
    }

    fn b(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.b().get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// From an opening quote to just after the closing one; false when the text ends first.
    fn string(&mut self) -> bool {
        let b = self.b();
        let mut i = self.i + 1;
        loop {
            // Eight bytes at a time up to the next quote or backslash: most strings are a few
            // bytes long, and a call to memchr for each cost more than the scan.
            while let Some(w) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
                let found = quote_or_backslash(u64::from_le_bytes(w));
                if found != 0 {
                    i += found.trailing_zeros() as usize / 8;
                    break;
                }
                i += 8;
            }
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return true;
                }
                // An escape: the escaped character does not end the string.
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
                None => {
                    self.i = b.len();
                    return false;
                }
            }
        }
    }

    /// Skips the value at the cursor and returns its span: `None` when the text ends inside it,
    /// empty when there is no value. Brackets and strings are matched, nothing else is checked.
    fn value(&mut self) -> Option<Range<usize>> {
        self.ws();
        let start = self.i;
        let complete = match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                let mut closed = false;
                while let Some(c) = self.peek() {
                    match c {
                        b'"' => {
                            if !self.string() {
                                break;
                            }
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                self.i += 1;
                                closed = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                closed
            }
            _ => {
                while self.peek().is_some_and(|c| {
                    !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.i += 1;
                }
                true
            }
        };
        complete.then_some(start..self.i)
    }

    /// The spans of the elements of the array at the cursor (each balanced, not validated).
    fn elements(&mut self) -> Result<Vec<Range<usize>>, String> {
        self.i += 1;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            let span = self
                .value()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| format!("a truncated or missing event at byte {}", self.i))?;
            out.push(span);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err(format!("expected `,` or `]` in `data` at byte {}", self.i)),
            }
        }
    }

    /// Calls `f` with each member's key (unescaped) of the object at the cursor, where `f` reads
    /// or skips the value; a value that is not an object is skipped. Returns false when `f` did
    /// (stop here: the rest of the object is not read).
    fn members(&mut self, mut f: impl FnMut(&str, &mut Self) -> bool) -> bool {
        self.ws();
        if self.peek() != Some(b'{') {
            self.value();
            return true;
        }
        self.i += 1;
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                break; // `}` (or malformed: stop)
            }
            let start = self.i;
            self.string();
            let key = self
                .text
                .get(start..self.i)
                .and_then(json_string)
                .unwrap_or_default();
            self.ws();
            if self.peek() != Some(b':') {
                break;
            }
            self.i += 1;
            if !f(&key, self) {
                return false;
            }
            self.ws();
            if self.peek() != Some(b',') {
                break;
            }
            self.i += 1;
        }
        self.i += 1;
        true
    }
}

/// A JSON string's value (`None` for any other JSON value), borrowed unless it has escapes.
fn json_string(text: &str) -> Option<Cow<'_, str>> {
    if !text.starts_with('"') {
        return None;
    }
    match text.get(1..text.len() - 1) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

/// Parses a complete page body. The whole body must be one JSON object (a truncated body whose
/// prefix would parse is rejected); unknown members are ignored; `data` missing or `null` is an
/// empty page. `base` resolves a relative `links.next`. The error says what is wrong with the body.
///
/// The events are split, not validated: each is balanced JSON text (brackets and strings matched)
/// that the normalizer parses in full anyway, so the body is read once, not twice. A caller that
/// keeps an event checks it with [`Event::check`] (the normalizer's parse does), and treats an
/// invalid one as an invalid page.
pub fn parse_page(body: impl Into<Vec<u8>>, base: &url::Url) -> Result<Page, String> {
    let body = body.into();
    let body_bytes = body.len();
    let text = String::from_utf8(body).map_err(|e| {
        format!(
            "not a valid events page: the body is not UTF-8 ({})",
            e.utf8_error()
        )
    })?;
    let env = Envelope::split(&text).map_err(|e| format!("not a valid events page: {e}"))?;
    // The events point into the body, shared (not copied).
    let shared = Arc::new(text);
    let meta_next = env
        .meta
        .and_then(|r| next_of(&shared[r]))
        .and_then(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        });
    let next_cursor = meta_next.or_else(|| {
        let link = env.links.and_then(|r| next_of(&shared[r]))?;
        cursor_from_link(link.as_str()?, base)
    });
    let events = env
        .data
        .into_iter()
        .map(|span| event_from_span(span, &shared))
        .collect();
    Ok(Page {
        events,
        next_cursor,
        body_bytes,
    })
}

fn next_of(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<Next>(text).ok()?.next
}

/// The `cursor` query parameter of a `links.next` URL (absolute, or relative to `base`),
/// percent-decoded.
pub(crate) fn cursor_from_link(link: &str, base: &url::Url) -> Option<String> {
    let link = link.trim();
    if link.is_empty() {
        return None;
    }
    let url = url::Url::parse(link).or_else(|_| base.join(link)).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The event at `span` of `body`.
fn event_from_span(span: Range<usize>, body: &Arc<String>) -> Event {
    let text = &body[span.clone()];
    let Head {
        id,
        processed_at,
        time,
    } = head(text);
    let id = id
        .and_then(json_string)
        .filter(|s| !s.is_empty())
        .map(Cow::into_owned);
    let processed_at = processed_at
        .and_then(json_string)
        .and_then(|s| parse_rfc3339(&s));
    // A string's content, without its quotes.
    let bytes = text.as_bytes();
    let time = time.filter(|r| {
        r.len() >= 2 && bytes.get(r.start) == Some(&b'"') && bytes.get(r.end - 1) == Some(&b'"')
    });
    let start = span.start;
    Event {
        id,
        processed_at,
        body: body.clone(),
        span,
        time: time.map(|r| start + r.start + 1..start + r.end - 1),
    }
}

/// RFC 3339 with an optional fraction (`…T19:13:13Z` and `…T19:13:03.343Z`), any offset.
pub(crate) fn parse_rfc3339(s: &str) -> Option<jiff::Timestamp> {
    s.trim().parse::<jiff::Timestamp>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> url::Url {
        url::Url::parse("https://api.atlassian.com").unwrap()
    }

    const MID: &str = r#"{"data":[
 {"type":"events","id":"831482d6-cd7f-4cab-8363-11e5ef7431cb",
  "attributes":{"time":"2025-06-02T08:15:42.517Z","processedAt":"2025-06-02T08:15:43.090Z","action":"user_granted_role"}},
 {"type":"events","id":"a3a5de4d-4ec4-4499-8034-accfb9aaaccd",
  "attributes":{"time":"2025-06-02T08:14:59Z","processedAt":"2025-06-02T08:15:43Z","action":"group_created"}}],
 "meta":{"next":"c2ltLXBhZ2UtMg","prev":null,"page_size":2,"attributes":null,"start_index":null,"end_index":null,"total":null},
 "links":{"next":"https://api.atlassian.com/admin/v1/orgs/2d27/events-stream?cursor=c2ltLXBhZ2UtMg"}}"#;

    #[test]
    fn mid_page() {
        let p = parse_page(MID.as_bytes(), &base()).unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(
            p.events[0].id.as_deref(),
            Some("831482d6-cd7f-4cab-8363-11e5ef7431cb")
        );
        assert!(
            p.events[0]
                .json()
                .starts_with(r#"{"type":"events","id":"831482d6"#)
        );
        assert_eq!(p.events[0].time_text(), Some("2025-06-02T08:15:42.517Z"));
        assert_eq!(p.events[1].time_text(), Some("2025-06-02T08:14:59Z"));
        // Instants, not strings: "…43Z" is earlier than "…43.090Z".
        let a = p.events[0].processed_at.unwrap();
        let b = p.events[1].processed_at.unwrap();
        assert!(b < a);
        assert_eq!(p.max_processed_at(), Some(a));
        assert_eq!(p.next_cursor.as_deref(), Some("c2ltLXBhZ2UtMg"));
        assert!(!p.ends_cycle());
        assert_eq!(p.body_bytes, MID.len());
    }

    #[test]
    fn terminal_pages() {
        let a = parse_page(
            br#"{"data":[],"meta":{"next":"c2ltLXBhZ2UtMw","page_size":200},"links":{}}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(a.next_cursor.as_deref(), Some("c2ltLXBhZ2UtMw"));
        assert!(a.ends_cycle());
        let b = parse_page(
            br#"{"data":[],"links":{},"meta":{"attributes":null,"next":null,"prev":null,"current":null,"page_size":200,"start_index":null,"end_index":null,"total":0}}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(b.next_cursor, None);
        assert!(b.ends_cycle());
        let bare = parse_page(b"{}", &base()).unwrap();
        assert!(bare.events.is_empty() && bare.next_cursor.is_none());
        let nulls = parse_page(br#"{"data":null,"meta":null,"links":null}"#, &base()).unwrap();
        assert!(nulls.events.is_empty() && nulls.next_cursor.is_none());
    }

    #[test]
    fn cursor_falls_back_to_links_next_and_is_decoded() {
        let p = parse_page(
            br#"{"data":[{"id":"x"}],"meta":{"next":null},"links":{"next":"https://h/admin/v1/orgs/o/events-stream?limit=5&cursor=a%2Bb%2Fc%3D%3D"}}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("a+b/c=="));
        let rel = parse_page(
            br#"{"data":[{"id":"x"}],"meta":{"next":""},"links":{"next":"/admin/v1/orgs/o/events-stream?cursor=abc"}}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(rel.next_cursor.as_deref(), Some("abc"));
        let none = parse_page(
            br#"{"data":[{"id":"x"}],"links":{"next":"https://h/x?limit=5"}}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(none.next_cursor, None);
        assert!(none.ends_cycle());
        let odd = parse_page(
            br#"{"data":[{"id":"x"}],"meta":{"next":5},"links":"nope"}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(odd.next_cursor, None);
        assert_eq!(cursor_from_link("", &base()), None);
        assert_eq!(cursor_from_link("?cursor=", &base()), None);
    }

    #[test]
    fn escaped_ids_keys_and_times_are_read() {
        let p = parse_page(
            br#"{"data":[{"id":"a\u0062c","attributes":{"x":{"processedAt":"no"},"processed\u0041t":"2025-06-02T08:15:43\u005a"}}],"meta":{"next":"n"}}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(p.events[0].id.as_deref(), Some("abc"));
        assert_eq!(
            p.events[0].processed_at,
            Some("2025-06-02T08:15:43Z".parse().unwrap())
        );
    }

    #[test]
    fn lenient_events() {
        let p = parse_page(
            br#"{"data":[{"attributes":{"processedAt":"2025-06-02T08:15:43.090+02:00"}},{"id":7},1,{"id":"e","attributes":"x"},{"id":"f","attributes":{"processedAt":"yesterday"}}],"meta":{"next":"n"}}"#,
            &base(),
        )
        .unwrap();
        assert_eq!(p.events.len(), 5);
        assert_eq!(p.events[0].id, None);
        assert_eq!(
            p.events[0].processed_at,
            Some("2025-06-02T06:15:43.090Z".parse().unwrap())
        );
        assert_eq!(p.events[1].id, None);
        assert_eq!(p.events[2].id, None);
        assert_eq!(p.events[2].json(), "1");
        assert_eq!(p.events[3].id.as_deref(), Some("e"));
        assert_eq!(p.events[3].processed_at, None);
        assert_eq!(p.events[4].processed_at, None);
    }

    #[test]
    fn truncated_or_invalid_bodies_fail() {
        for cut in [10, MID.len() / 2, MID.len() - 1] {
            assert!(
                parse_page(&MID.as_bytes()[..cut], &base()).is_err(),
                "cut at {cut}"
            );
        }
        for bad in [
            &b""[..],
            b"[]",
            b"null",
            b"<html>",
            br#"{"data":{}}"#,
            br#"{"data":[]} {"#,
        ] {
            assert!(
                parse_page(bad, &base()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Trailing whitespace is fine.
        assert!(parse_page(b"{\"data\":[]}\n", &base()).is_ok());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            // Quotes, backslashes, brackets and non-ASCII inside strings.
            "[a-z\\\\\"{}\\[\\],:é\u{1F600} ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-zA-Z\"\\\\]{1,12}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The head scan finds what a full parse finds (keys are unique here, so "first" and
        /// "last" agree), whatever surrounds the members and however the text is spaced.
        #[test]
        fn head_scan_agrees_with_a_full_parse(
            event in json_value(),
            id in proptest::option::of(json_value()),
            processed_at in proptest::option::of(json_value()),
            attributes in proptest::option::of(json_value()),
            pretty in proptest::bool::ANY,
        ) {
            let mut event = event;
            if let serde_json::Value::Object(m) = &mut event {
                if let Some(id) = id {
                    m.insert("id".into(), id);
                }
                if let Some(mut attributes) = attributes {
                    if let (serde_json::Value::Object(a), Some(p)) = (&mut attributes, processed_at) {
                        a.insert("processedAt".into(), p);
                    }
                    m.insert("attributes".into(), attributes);
                }
            }
            let text = if pretty {
                serde_json::to_string_pretty(&event).unwrap()
            } else {
                serde_json::to_string(&event).unwrap()
            };
            let as_text = |v: Option<&serde_json::Value>| v.map(|v| serde_json::to_string(v).unwrap());
            let h = head(&text);
            let (got_id, got_processed_at) = (h.id, h.processed_at);
            let got_time = h.time.map(|r| &text[r]);
            let reparse = |t: Option<&str>| t.map(|t| serde_json::to_string(&serde_json::from_str::<serde_json::Value>(t).unwrap()).unwrap());
            proptest::prop_assert_eq!(reparse(got_id), as_text(event.get("id")));
            proptest::prop_assert_eq!(
                reparse(got_processed_at),
                as_text(event.get("attributes").and_then(|a| a.get("processedAt")))
            );
            proptest::prop_assert_eq!(
                reparse(got_time),
                as_text(event.get("attributes").and_then(|a| a.get("time")))
            );
        }
    }

    /// A page of `events`, spaced or not.
    fn page_text(events: &[serde_json::Value], pretty: bool) -> String {
        let page = serde_json::json!({"data": events, "meta": {"next": "c"}, "links": {}});
        if pretty {
            serde_json::to_string_pretty(&page).unwrap()
        } else {
            serde_json::to_string(&page).unwrap()
        }
    }

    proptest::proptest! {
        /// The split finds the events a full parse finds, whatever they hold.
        #[test]
        fn split_agrees_with_a_full_parse(
            events in proptest::collection::vec(json_value(), 0..6),
            pretty in proptest::bool::ANY,
        ) {
            let text = page_text(&events, pretty);
            let page = parse_page(text.as_bytes(), &base()).unwrap();
            let got: Vec<serde_json::Value> = page
                .events
                .iter()
                .map(|e| serde_json::from_str(e.json()).unwrap())
                .collect();
            proptest::prop_assert_eq!(got, events);
            proptest::prop_assert_eq!(page.next_cursor.as_deref(), Some("c"));
        }

        /// A damaged body (a byte removed, replaced or inserted) is never taken for a valid page:
        /// either the split rejects it, or one of its events fails its check.
        #[test]
        fn a_damaged_body_is_rejected_or_has_an_invalid_event(
            events in proptest::collection::vec(json_value(), 1..4),
            pretty in proptest::bool::ANY,
            at in proptest::num::usize::ANY,
            op in 0..3u8,
            byte in proptest::sample::select(b"\"\\{}[],: a1-".to_vec()),
        ) {
            let mut body = page_text(&events, pretty).into_bytes();
            let at = at % body.len();
            match op {
                0 => { body.remove(at); }
                1 => body[at] = byte,
                _ => body.insert(at, byte),
            }
            let valid = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
            if let Ok(page) = parse_page(body.clone(), &base()) {
                let events_ok = page.events.iter().all(|e| e.check().is_ok());
                proptest::prop_assert!(
                    valid || !events_ok,
                    "accepted an invalid body: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }

    #[test]
    fn an_invalid_event_fails_its_check_not_the_split() {
        let body =
            br#"{"data":[{"id":"a","attributes":{}},{"id":"b","x":tru},{"id":"c","y":[1,]}]}"#;
        let page = parse_page(&body[..], &base()).unwrap();
        let checks: Vec<bool> = page.events.iter().map(|e| e.check().is_ok()).collect();
        assert_eq!(checks, [true, false, false]);
        let err = page.events[1].check().unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        // Members other than `data` are parsed in full.
        assert!(parse_page(&br#"{"data":[],"meta":{"next":tru}}"#[..], &base()).is_err());
        assert!(parse_page(&br#"{"data":[],"data":[]}"#[..], &base()).is_err());
        assert!(parse_page(&br#"{"data":[1,,2]}"#[..], &base()).is_err());
    }

    #[test]
    fn head_takes_the_first_of_repeated_members() {
        let text = r#"{"id":"a","attributes":{"processedAt":"1","processedAt":"2"},"id":"b","attributes":{"processedAt":"3"}}"#;
        let h = head(text);
        assert_eq!((h.id, h.processed_at), (Some("\"a\""), Some("\"1\"")));
        // `attributes` before `id`, and not an object.
        let h = head(r#"{"attributes":7,"x":[{"id":1}],"id":"c"}"#);
        assert_eq!((h.id, h.processed_at, h.time), (Some("\"c\""), None, None));
        // Malformed text ends the scan without a panic.
        for bad in [
            r#"{"id""#,
            r#"{"attributes":{"processedAt"#,
            "{",
            "",
            r#"{"a":[}"#,
        ] {
            let _ = head(bad);
        }
    }
}
