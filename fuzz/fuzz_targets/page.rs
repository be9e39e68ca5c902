//! Any bytes as an `/events-stream` response body: the page parser returns a page or an error,
//! never panics; every event it returns is a slice of the body, ids are never empty, an event's
//! time text is a string of the event, and a page whose events all pass their check is valid JSON
//! (the parser splits events, the normalizer's parse checks them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgtrail_atlassian::parse_page;

fuzz_target!(|body: &[u8]| {
    let base = url::Url::parse("https://api.atlassian.com/admin/v1/orgs/o/events-stream").unwrap();
    let Ok(page) = parse_page(body, &base) else {
        return;
    };
    assert_eq!(page.body_bytes, body.len());
    let text = std::str::from_utf8(body).expect("a parsed page is UTF-8");
    let mut all_valid = true;
    for event in &page.events {
        let json = event.json();
        assert!(text.contains(json), "an event is a slice of the body");
        let valid = serde_json::from_str::<&serde_json::value::RawValue>(json).is_ok();
        assert_eq!(event.check().is_ok(), valid, "the check is a full parse");
        all_valid &= valid;
        assert!(event.id.as_deref() != Some(""));
        if let Some(time) = event.time_text() {
            // The content of a JSON string of the event.
            assert!(json.contains(&format!("\"{time}\"")), "the time is a string of the event");
        }
    }
    if all_valid {
        serde_json::from_str::<&serde_json::value::RawValue>(text).expect("a page of valid events is JSON");
    }
    if let Some(cursor) = &page.next_cursor {
        assert!(!cursor.is_empty());
    }
});
