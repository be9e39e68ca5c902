//! The `/events-stream` page envelope and events, parsed leniently (atlassian-org-api.md §5, §10).

use serde::Deserialize;
use serde_json::value::RawValue;

/// One audit event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event `id` (the dedupe key). `None` when the event has no string `id`: the event is
    /// still returned (the normalizer classifies it), but it cannot be deduplicated by id.
    pub id: Option<String>,
    /// `attributes.processedAt` parsed as an instant (RFC 3339, fraction optional). `None`
    /// when missing or unparsable; never compare the raw strings.
    pub processed_at: Option<jiff::Timestamp>,
    /// The event JSON exactly as served.
    pub raw: Box<RawValue>,
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

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    data: Option<Vec<Box<RawValue>>>,
    #[serde(default, borrow)]
    meta: Option<&'a RawValue>,
    #[serde(default, borrow)]
    links: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    next: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default, borrow)]
    attributes: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AttrHead<'a> {
    #[serde(default, rename = "processedAt", borrow)]
    processed_at: Option<&'a RawValue>,
}

/// Parses a complete page body. The whole body must be one JSON object (a truncated body whose
/// prefix would parse is rejected); unknown members are ignored; `data` missing or `null` is an
/// empty page. `base` resolves a relative `links.next`.
pub(crate) fn parse_page(body: &[u8], base: &url::Url) -> Result<Page, String> {
    // serde would also accept a JSON array for a struct: only an object is a page.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a valid events page: the body is not a JSON object".into());
    }
    let env: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| format!("not a valid events page: {e}"))?;
    let events = env
        .data
        .unwrap_or_default()
        .into_iter()
        .map(event_from_raw)
        .collect();
    let meta_next = env.meta.and_then(next_of).and_then(|v| match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    });
    let next_cursor = meta_next.or_else(|| {
        let link = env.links.and_then(next_of)?;
        cursor_from_link(link.as_str()?, base)
    });
    Ok(Page {
        events,
        next_cursor,
        body_bytes: body.len(),
    })
}

fn next_of(raw: &RawValue) -> Option<serde_json::Value> {
    serde_json::from_str::<Next>(raw.get()).ok()?.next
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

fn event_from_raw(raw: Box<RawValue>) -> Event {
    let (id, processed_at) = match serde_json::from_str::<Head<'_>>(raw.get()) {
        Ok(head) => {
            let id = match head.id {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            };
            let processed_at = head
                .attributes
                .and_then(|a| serde_json::from_str::<AttrHead<'_>>(a.get()).ok())
                .and_then(|a| a.processed_at)
                .and_then(|p| serde_json::from_str::<String>(p.get()).ok())
                .and_then(|s| parse_rfc3339(&s));
            (id, processed_at)
        }
        Err(_) => (None, None),
    };
    Event {
        id,
        processed_at,
        raw,
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
                .raw
                .get()
                .starts_with(r#"{"type":"events","id":"831482d6"#)
        );
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
        assert_eq!(p.events[2].raw.get(), "1");
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
}
