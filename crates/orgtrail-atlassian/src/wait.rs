//! How long to wait after a 429 or a transient failure (atlassian-org-api.md §7).
//!
//! After a 429 the wait comes from the first header that parses, in this order:
//! `Retry-After` (delta-seconds or HTTP-date), `X-Retry-After` (seconds), `X-RateLimit-Reset`
//! (ISO 8601, minute precision accepted; wait = reset − now), else exponential backoff.
//! Then [`finalize`] applies the floor, 0–`jitter` proportional jitter and the cap.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// Which rule decided a rate-limit wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitSource {
    /// `Retry-After` with delta-seconds.
    RetryAfter,
    /// `Retry-After` with an HTTP-date.
    RetryAfterDate,
    /// The non-standard `X-Retry-After` (seconds).
    XRetryAfter,
    /// `X-RateLimit-Reset` (ISO 8601): reset − now.
    RateLimitReset,
    /// No usable header: exponential backoff.
    Backoff,
}

impl WaitSource {
    /// A stable label (for logs and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitSource::RetryAfter => "retry-after",
            WaitSource::RetryAfterDate => "retry-after-date",
            WaitSource::XRetryAfter => "x-retry-after",
            WaitSource::RateLimitReset => "x-ratelimit-reset",
            WaitSource::Backoff => "backoff",
        }
    }
}

/// The raw wait a 429's headers ask for (before floor, jitter and cap), or `None` when no
/// header parses. Header names are matched case-insensitively (as `HeaderMap` does).
pub fn wait_from_headers(
    headers: &HeaderMap,
    now: jiff::Timestamp,
) -> Option<(Duration, WaitSource)> {
    for v in headers.get_all("retry-after") {
        let Ok(s) = v.to_str() else { continue };
        if let Some(d) = parse_seconds(s) {
            return Some((d, WaitSource::RetryAfter));
        }
        if let Some(d) = parse_http_date_wait(s, now) {
            return Some((d, WaitSource::RetryAfterDate));
        }
    }
    for v in headers.get_all("x-retry-after") {
        if let Some(d) = v.to_str().ok().and_then(parse_seconds) {
            return Some((d, WaitSource::XRetryAfter));
        }
    }
    for v in headers.get_all("x-ratelimit-reset") {
        if let Some(d) = v.to_str().ok().and_then(|s| parse_reset_wait(s, now)) {
            return Some((d, WaitSource::RateLimitReset));
        }
    }
    None
}

/// Delta-seconds: `"30"`, leniently also `"1.5"`. Negative, NaN or absurd values do not parse.
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok().map(Duration::from_secs);
    }
    let f: f64 = s.parse().ok()?;
    if f.is_finite() && (0.0..1e12).contains(&f) {
        Some(Duration::from_secs_f64(f))
    } else {
        None
    }
}

/// `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT` (and the obsolete HTTP-date forms): date − now,
/// zero when the date is past.
pub fn parse_http_date_wait(s: &str, now: jiff::Timestamp) -> Option<Duration> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    let t = jiff::Timestamp::try_from(t).ok()?;
    Some(until(t, now))
}

/// `X-RateLimit-Reset`: reset − now (zero when past). See [`parse_reset`].
pub fn parse_reset_wait(s: &str, now: jiff::Timestamp) -> Option<Duration> {
    let s = s.trim();
    // Lenient: plain digits are an epoch (seconds or milliseconds) or, when small, seconds.
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        let t = if n >= 100_000_000_000 {
            jiff::Timestamp::from_millisecond(n).ok()?
        } else if n >= 1_000_000_000 {
            jiff::Timestamp::from_second(n).ok()?
        } else {
            return Some(Duration::from_secs(n.unsigned_abs()));
        };
        return Some(until(t, now));
    }
    parse_reset(s).map(|t| until(t, now))
}

/// Parses an ISO 8601 / RFC 3339 reset time: `2025-06-02T08:16Z` (minute precision),
/// `…T08:16:00Z`, fractions, `Z`/`z`, `±hh:mm`, `±hhmm`, `±hh`, a space instead of `T`, and no
/// offset at all (taken as UTC, as documented: "Date and time in UTC").
pub fn parse_reset(s: &str) -> Option<jiff::Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    normalize_iso(s)?.parse::<jiff::Timestamp>().ok()
}

/// Rewrites the accepted ISO 8601 variants to `YYYY-MM-DDTHH:MM:SS[.f](Z|±hh:mm)`.
fn normalize_iso(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 16 || !s.is_ascii() {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let off_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, offset) = rest.split_at(off_at);
    let mut out = String::with_capacity(32);
    out.push_str(date);
    out.push('T');
    out.push_str(time);
    if time.len() == 5 {
        out.push_str(":00");
    }
    match offset {
        "" | "Z" | "z" => out.push('Z'),
        o => {
            let (sign, digits) = o.split_at(1);
            let digits = digits.replace(':', "");
            if !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (hh, mm) = match digits.len() {
                2 => (&digits[..2], "00"),
                4 => (&digits[..2], &digits[2..]),
                _ => return None,
            };
            out.push_str(sign);
            out.push_str(hh);
            out.push(':');
            out.push_str(mm);
        }
    }
    Some(out)
}

fn until(t: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    let ms = t.as_millisecond().saturating_sub(now.as_millisecond());
    Duration::from_millis(ms.max(0).unsigned_abs())
}

/// Exponential backoff for the `retry`-th retry (0-based): `base · 2^retry`, at most `cap`.
pub fn backoff(base: Duration, cap: Duration, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// Final wait: `raw` raised to `floor`, capped at `cap`, stretched by `jitter · u` (u in
/// [0, 1], jitter in [0, 1], e.g. 0.2 = up to +20 %), and capped again. The result is always in
/// `[min(floor, cap), cap]`.
pub fn finalize(raw: Duration, floor: Duration, cap: Duration, jitter: f64, u: f64) -> Duration {
    let floor = floor.min(cap);
    let base = raw.clamp(floor, cap);
    let frac = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let extra = base.mul_f64(frac * u);
    base.saturating_add(extra).clamp(floor, cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn now() -> jiff::Timestamp {
        "2025-06-02T08:15:30Z".parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn reset_formats() {
        let want: jiff::Timestamp = "2025-06-02T08:16:00Z".parse().unwrap();
        for s in [
            "2025-06-02T08:16Z",
            "2025-06-02T08:16:00Z",
            "2025-06-02T08:16:00.000Z",
            "2025-06-02T08:16:00+00:00",
            "2025-06-02T08:16+0000",
            "2025-06-02T08:16:00+0000",
            "2025-06-02T10:16+02:00",
            "2025-06-02T10:16+0200",
            "2025-06-02T10:16+02",
            "2025-06-02T03:16-05:00",
            "2025-06-02T03:16:00-0500",
            "2025-06-02t08:16z",
            "2025-06-02 08:16:00Z",
            "2025-06-02T08:16:00",
            "2025-06-02T08:16",
            " 2025-06-02T08:16Z ",
        ] {
            assert_eq!(parse_reset(s), Some(want), "{s}");
        }
        let frac: jiff::Timestamp = "2025-06-02T08:16:00.250Z".parse().unwrap();
        assert_eq!(parse_reset("2025-06-02T08:16:00.25Z"), Some(frac));
        assert_eq!(parse_reset("2025-06-02T08:16:00.250+00:00"), Some(frac));
        for bad in [
            "",
            "soon",
            "2025-06-02",
            "2025-06-02T08:16+00:00:00x",
            "2025-13-02T08:16Z",
        ] {
            assert_eq!(parse_reset(bad), None, "{bad}");
        }
    }

    #[test]
    fn reset_wait_is_reset_minus_now_and_zero_when_past() {
        assert_eq!(
            parse_reset_wait("2025-06-02T08:16Z", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_reset_wait("2025-06-02T08:15Z", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_reset_wait("2025-06-02T08:16:00.500Z", now()),
            Some(Duration::from_millis(30_500))
        );
        // Lenient numeric forms.
        let epoch = now().as_second() + 12;
        assert_eq!(
            parse_reset_wait(&epoch.to_string(), now()),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            parse_reset_wait(&(epoch * 1000).to_string(), now()),
            Some(Duration::from_secs(12))
        );
        assert_eq!(parse_reset_wait("7", now()), Some(Duration::from_secs(7)));
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_seconds(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_seconds("1.5"), Some(Duration::from_millis(1500)));
        for bad in ["", "-1", "abc", "NaN", "inf", "1e300"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        let n = now();
        assert_eq!(
            parse_http_date_wait("Mon, 02 Jun 2025 08:16:00 GMT", n),
            Some(Duration::from_secs(30))
        );
        // RFC 850 and asctime forms.
        assert_eq!(
            parse_http_date_wait("Monday, 02-Jun-25 08:16:00 GMT", n),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_http_date_wait("Mon Jun  2 08:16:00 2025", n),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_http_date_wait("Mon, 02 Jun 2025 08:00:00 GMT", n),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_http_date_wait("tomorrow", n), None);
    }

    #[test]
    fn header_order_and_case() {
        let n = now();
        let all = headers(&[
            ("X-RateLimit-Reset", "2025-06-02T08:17Z"),
            ("X-Retry-After", "20"),
            ("Retry-After", "10"),
        ]);
        assert_eq!(
            wait_from_headers(&all, n),
            Some((Duration::from_secs(10), WaitSource::RetryAfter))
        );
        let date = headers(&[
            ("RETRY-AFTER", "Mon, 02 Jun 2025 08:15:35 GMT"),
            ("x-retry-after", "20"),
        ]);
        assert_eq!(
            wait_from_headers(&date, n),
            Some((Duration::from_secs(5), WaitSource::RetryAfterDate))
        );
        // An unparsable Retry-After falls through to the next header.
        let bad = headers(&[("retry-after", "later"), ("x-retry-after", "20")]);
        assert_eq!(
            wait_from_headers(&bad, n),
            Some((Duration::from_secs(20), WaitSource::XRetryAfter))
        );
        let reset = headers(&[
            ("x-ratelimit-reset", "2025-06-02T08:16Z"),
            ("x-ratelimit-remaining", "0"),
        ]);
        assert_eq!(
            wait_from_headers(&reset, n),
            Some((Duration::from_secs(30), WaitSource::RateLimitReset))
        );
        let bad_reset = headers(&[("x-ratelimit-reset", "whenever")]);
        assert_eq!(wait_from_headers(&bad_reset, n), None);
        assert_eq!(wait_from_headers(&HeaderMap::new(), n), None);
        // Two Retry-After values: the first that parses wins.
        let two = headers(&[("retry-after", "nope"), ("retry-after", "3")]);
        assert_eq!(
            wait_from_headers(&two, n),
            Some((Duration::from_secs(3), WaitSource::RetryAfter))
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs;
        let got: Vec<_> = (0..9).map(|r| backoff(s(1), s(60), r)).collect();
        assert_eq!(
            got,
            [s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60), s(60)]
        );
        assert_eq!(backoff(s(1), s(60), 200), s(60));
        assert_eq!(backoff(Duration::MAX, s(60), 3), s(60));
    }

    #[test]
    fn finalize_floor_jitter_cap() {
        let s = Duration::from_secs;
        // A past reset (raw 0) is raised to the floor: never a hot loop.
        assert_eq!(finalize(Duration::ZERO, s(1), s(120), 0.2, 0.0), s(1));
        assert_eq!(
            finalize(Duration::ZERO, s(1), s(120), 0.2, 1.0),
            Duration::from_millis(1200)
        );
        // Jitter is 0..=20 %.
        assert_eq!(finalize(s(10), s(1), s(120), 0.2, 0.5), s(11));
        assert_eq!(finalize(s(10), s(1), s(120), 0.2, 1.0), s(12));
        // The cap bounds a single wait, jitter included.
        assert_eq!(finalize(s(3600), s(1), s(120), 0.2, 1.0), s(120));
        assert_eq!(finalize(s(110), s(1), s(120), 0.2, 1.0), s(120));
        // A floor above the cap is lowered to the cap.
        assert_eq!(finalize(Duration::ZERO, s(500), s(120), 0.2, 0.3), s(120));
        // Bad jitter inputs are ignored.
        assert_eq!(
            finalize(s(10), s(1), s(120), f64::NAN, f64::INFINITY),
            s(10)
        );
    }

    proptest! {
        #[test]
        fn finalize_is_within_floor_and_cap(
            raw_ms in 0u64..10_000_000,
            floor_ms in 0u64..200_000,
            cap_ms in 0u64..200_000,
            jitter in 0.0f64..1.0,
            u in 0.0f64..=1.0,
        ) {
            let floor = Duration::from_millis(floor_ms);
            let cap = Duration::from_millis(cap_ms);
            let w = finalize(Duration::from_millis(raw_ms), floor, cap, jitter, u);
            prop_assert!(w <= cap);
            prop_assert!(w >= floor.min(cap));
            // Jitter only lengthens: never below the clamped raw wait.
            prop_assert!(w >= Duration::from_millis(raw_ms).clamp(floor.min(cap), cap));
        }

        #[test]
        fn backoff_never_exceeds_cap(base_ms in 0u64..100_000, cap_ms in 0u64..100_000, retry in 0u32..100) {
            let cap = Duration::from_millis(cap_ms);
            prop_assert!(backoff(Duration::from_millis(base_ms), cap, retry) <= cap);
        }

        #[test]
        fn reset_wait_matches_offset(secs in 0i64..100_000) {
            let n = now();
            let t = n.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap();
            let s = t.strftime("%Y-%m-%dT%H:%M:%S%z").to_string();
            prop_assert_eq!(parse_reset_wait(&s, n), Some(Duration::from_secs(secs as u64)));
        }
    }
}
