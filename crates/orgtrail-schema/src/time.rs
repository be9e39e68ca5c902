//! Time formats of the schema language and the two text layouts of timestamps in output.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::Offset;

/// A `timeFormat` of the schema language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// Go's `time.RFC3339`: `T`, a zone (`Z` or `±hh:mm`), an optional fraction of 1–9 digits.
    Rfc3339,
    /// Float seconds since the epoch, truncated to microseconds.
    Unix,
    UnixMs,
    UnixUs,
    UnixNs,
    /// A strftime pattern; zone-less patterns are read as UTC.
    Strftime(String),
    /// The data-lake layout orgtrail writes (`2025-06-02 08:42:07.000000000`, UTC). Used to read
    /// rows back; not a name of the schema language.
    Lake,
}

impl TimeFormat {
    /// Parses a `timeFormat` value; `None` for an unknown name that is not a strftime pattern.
    pub fn parse(s: &str) -> Option<TimeFormat> {
        Some(match s {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_us" => TimeFormat::UnixUs,
            "unix_ns" => TimeFormat::UnixNs,
            s if s.contains('%') => TimeFormat::Strftime(s.to_owned()),
            _ => return None,
        })
    }

    pub fn name(&self) -> &str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Unix => "unix",
            TimeFormat::UnixMs => "unix_ms",
            TimeFormat::UnixUs => "unix_us",
            TimeFormat::UnixNs => "unix_ns",
            TimeFormat::Strftime(s) => s,
            TimeFormat::Lake => "lake",
        }
    }

    /// Parses a JSON string's content with this format.
    pub fn parse_str(&self, s: &str) -> Option<Timestamp> {
        match self {
            TimeFormat::Rfc3339 => parse_rfc3339(s),
            TimeFormat::Unix => parse_unix_float(s),
            TimeFormat::UnixMs => parse_unix_int(s, 1_000_000),
            TimeFormat::UnixUs => parse_unix_int(s, 1_000),
            TimeFormat::UnixNs => parse_unix_int(s, 1),
            TimeFormat::Strftime(fmt) => parse_strftime(fmt, s),
            TimeFormat::Lake => parse_lake(s),
        }
    }

    /// Parses a JSON number's literal text; only the unix formats accept numbers.
    pub fn parse_number(&self, literal: &str) -> Option<Timestamp> {
        match self {
            TimeFormat::Rfc3339 | TimeFormat::Strftime(_) | TimeFormat::Lake => None,
            _ => self.parse_str(literal),
        }
    }
}

fn digits<const N: usize>(b: &[u8]) -> Option<i32> {
    if b.len() != N {
        return None;
    }
    let mut v = 0i32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i32::from(c - b'0');
    }
    Some(v)
}

/// Strict RFC 3339 as Go's `time.Parse(time.RFC3339, s)` accepts it:
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    parse_iso(s, false)
}

/// The data-lake layout `YYYY-MM-DD HH:MM:SS[.f{1,9}]`, in UTC (what [`TimeLayout::Lake`] writes).
pub fn parse_lake(s: &str) -> Option<Timestamp> {
    parse_iso(s, true)
}

fn parse_iso(s: &str, lake: bool) -> Option<Timestamp> {
    let b = s.as_bytes();
    let sep = if lake { b' ' } else { b'T' };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != sep
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits::<4>(&b[0..4])?;
    let month = digits::<2>(&b[5..7])?;
    let day = digits::<2>(&b[8..10])?;
    let hour = digits::<2>(&b[11..13])?;
    let minute = digits::<2>(&b[14..16])?;
    let second = digits::<2>(&b[17..19])?;
    let mut rest = &b[19..];
    let mut nanos = 0i32;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        for &c in &tail[..n] {
            nanos = nanos * 10 + i32::from(c - b'0');
        }
        for _ in n..9 {
            nanos *= 10;
        }
        rest = &tail[n..];
    }
    let offset_seconds = match rest {
        [] if lake => 0,
        [b'Z'] if !lake => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if !lake => {
            let h = digits::<2>(&[*h1, *h2])?;
            let m = digits::<2>(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    // Go rejects hour 24 and leap seconds; jiff's constructors reject out-of-range values too.
    let date = Date::new(year as i16, month as i8, day as i8).ok()?;
    let time = Time::new(hour as i8, minute as i8, second as i8, nanos).ok()?;
    let offset = Offset::from_seconds(offset_seconds).ok()?;
    offset.to_timestamp(DateTime::from_parts(date, time)).ok()
}

fn parse_unix_int(s: &str, nanos_per_unit: i64) -> Option<Timestamp> {
    let v: i64 = s.trim().parse().ok()?;
    let nanos = i128::from(v) * i128::from(nanos_per_unit);
    Timestamp::from_nanosecond(nanos).ok()
}

/// `unix`: float seconds, truncated to microseconds (as Panther does).
fn parse_unix_float(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    // Exact decimal handling for the common `seconds[.fraction]` form; floats for exponents.
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    let micros: i128 = if !int_part.is_empty()
        && int_part.bytes().all(|c| c.is_ascii_digit())
        && frac_part.bytes().all(|c| c.is_ascii_digit())
        && int_part.len() <= 18
    {
        let secs: i128 = int_part.parse().ok()?;
        let mut frac = 0i128;
        for (i, c) in frac_part.bytes().take(6).enumerate() {
            frac += i128::from(c - b'0') * 10i128.pow(5 - i as u32);
        }
        secs * 1_000_000 + frac
    } else {
        let f: f64 = body.parse().ok()?;
        if !f.is_finite() {
            return None;
        }
        (f * 1e6).trunc() as i128
    };
    let micros = if neg { -micros } else { micros };
    // A float far out of range saturates to i128::MAX: out of range, not an overflow.
    Timestamp::from_nanosecond(micros.checked_mul(1000)?).ok()
}

fn parse_strftime(fmt: &str, s: &str) -> Option<Timestamp> {
    let tm = jiff::fmt::strtime::parse(fmt, s).ok()?;
    if tm.offset().is_some() {
        return tm.to_timestamp().ok();
    }
    let dt = tm.to_datetime().ok()?;
    Offset::UTC.to_timestamp(dt).ok()
}

/// How timestamps are rendered as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeLayout {
    /// Panther's data-lake layout: `YYYY-MM-DD HH:MM:SS.fffffffff` in UTC, always 9 fraction digits.
    #[default]
    Lake,
    /// RFC 3339 in UTC with trailing fraction zeros trimmed (`2025-06-02T08:42:07Z`), as pantherlog
    /// and schema tests use.
    Rfc3339,
}

impl TimeLayout {
    pub fn write(self, ts: Timestamp, out: &mut String) {
        let dt = Offset::UTC.to_datetime(ts);
        // Hand-rolled: this runs several times per row, and `write!` is slow for it.
        let mut buf = [0u8; 30];
        let year = i32::from(dt.year()).clamp(0, 9999) as u32;
        let mut put = |at: usize, v: u32, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year, 4);
        put(5, dt.month() as u32, 2);
        put(8, dt.day() as u32, 2);
        put(11, dt.hour() as u32, 2);
        put(14, dt.minute() as u32, 2);
        put(17, dt.second() as u32, 2);
        let nanos = dt.subsec_nanosecond() as u32;
        put(20, nanos, 9);
        buf[4] = b'-';
        buf[7] = b'-';
        buf[13] = b':';
        buf[16] = b':';
        buf[19] = b'.';
        let len = match self {
            TimeLayout::Lake => {
                buf[10] = b' ';
                29
            }
            TimeLayout::Rfc3339 => {
                buf[10] = b'T';
                let mut end = 29;
                while buf[end - 1] == b'0' && end > 20 {
                    end -= 1;
                }
                if end == 20 {
                    end = 19; // no fraction
                }
                buf[end] = b'Z';
                end + 1
            }
        };
        // Only ASCII digits and separators were written.
        out.push_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
    }

    pub fn format(self, ts: Timestamp) -> String {
        let mut s = String::with_capacity(30);
        self.write(ts, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn rfc3339_accepts_go_grammar() {
        assert_eq!(
            parse_rfc3339("2025-06-02T08:42:07Z"),
            Some(ts("2025-06-02T08:42:07Z"))
        );
        assert_eq!(
            parse_rfc3339("2025-06-02T08:42:07.5Z"),
            Some(ts("2025-06-02T08:42:07.5Z"))
        );
        assert_eq!(
            parse_rfc3339("2025-06-02T08:42:07.123456789Z"),
            Some(ts("2025-06-02T08:42:07.123456789Z"))
        );
        assert_eq!(
            parse_rfc3339("2025-06-02T10:42:07.343+02:00"),
            Some(ts("2025-06-02T08:42:07.343Z"))
        );
        assert_eq!(
            parse_rfc3339("2025-06-02T00:12:07-01:30"),
            Some(ts("2025-06-02T01:42:07Z"))
        );
    }

    #[test]
    fn rfc3339_rejects_what_go_rejects() {
        for bad in [
            "",
            "2025-06-02",
            "2025-06-02 08:42:07Z",
            "2025-06-02t08:42:07Z",
            "2025-06-02T08:42:07",
            "2025-06-02T08:42:07+0200",
            "2025-06-02T08:42:07.Z",
            "2025-06-02T08:42:07.1234567891Z",
            "2025-06-02T08:42:07,5Z",
            "2025-06-02T24:00:00Z",
            "2025-06-02T08:42:60Z",
            "2025-02-30T08:42:07Z",
            "2025-06-02T08:42:07+24:00",
            "2025-06-02T08:42:07Zjunk",
            "２０２５-06-02T08:42:07Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?} must be rejected");
        }
    }

    #[test]
    fn lake_layout_round_trips() {
        for t in [
            "2025-06-02T08:42:07Z",
            "2022-04-04T16:12:41.059224Z",
            "2025-06-02T08:42:07.123456789Z",
        ] {
            let t = ts(t);
            assert_eq!(parse_lake(&TimeLayout::Lake.format(t)), Some(t));
            assert_eq!(parse_rfc3339(&TimeLayout::Rfc3339.format(t)), Some(t));
        }
        assert_eq!(
            parse_lake("2025-06-02 08:42:07"),
            Some(ts("2025-06-02T08:42:07Z"))
        );
        assert_eq!(parse_lake("2025-06-02T08:42:07Z"), None);
        assert_eq!(parse_lake("2025-06-02 08:42:07Z"), None);
        assert_eq!(parse_rfc3339("2025-06-02 08:42:07"), None);
    }

    #[test]
    fn unix_formats() {
        let f = TimeFormat::Unix;
        assert_eq!(
            f.parse_number("1748853727"),
            Some(ts("2025-06-02T08:42:07Z"))
        );
        assert_eq!(
            f.parse_number("1748853727.1234567"),
            Some(ts("2025-06-02T08:42:07.123456Z"))
        );
        assert_eq!(
            f.parse_str("1748853727.5"),
            Some(ts("2025-06-02T08:42:07.5Z"))
        );
        assert_eq!(
            f.parse_number("1.748853727e9"),
            Some(ts("2025-06-02T08:42:07Z"))
        );
        assert_eq!(f.parse_str("abc"), None);
        // Far out of range (found by the fuzzer: it overflowed instead of failing).
        assert_eq!(f.parse_number("0.92e62"), None);
        assert_eq!(f.parse_number("-0.92e62"), None);
        assert_eq!(
            TimeFormat::UnixMs.parse_number("1748853727343"),
            Some(ts("2025-06-02T08:42:07.343Z"))
        );
        assert_eq!(
            TimeFormat::UnixUs.parse_str("1748853727343001"),
            Some(ts("2025-06-02T08:42:07.343001Z"))
        );
        assert_eq!(
            TimeFormat::UnixNs.parse_number("1748853727343001002"),
            Some(ts("2025-06-02T08:42:07.343001002Z"))
        );
        assert_eq!(TimeFormat::UnixMs.parse_number("1.5"), None);
        assert_eq!(TimeFormat::Rfc3339.parse_number("1748853727"), None);
    }

    #[test]
    fn strftime_formats() {
        let f = TimeFormat::parse("%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            f.parse_str("2025-06-02 08:42:07"),
            Some(ts("2025-06-02T08:42:07Z"))
        );
        let z = TimeFormat::parse("%d/%b/%Y:%H:%M:%S %z").unwrap();
        assert_eq!(
            z.parse_str("02/Jun/2025:10:42:07 +0200"),
            Some(ts("2025-06-02T08:42:07Z"))
        );
        assert_eq!(f.parse_str("not a time"), None);
        assert_eq!(TimeFormat::parse("rfc1123"), None);
    }

    #[test]
    fn layouts() {
        let t = ts("2025-06-02T08:42:07Z");
        assert_eq!(TimeLayout::Lake.format(t), "2025-06-02 08:42:07.000000000");
        assert_eq!(TimeLayout::Rfc3339.format(t), "2025-06-02T08:42:07Z");
        let t = ts("2022-04-04T16:12:41.059224Z");
        assert_eq!(TimeLayout::Lake.format(t), "2022-04-04 16:12:41.059224000");
        assert_eq!(TimeLayout::Rfc3339.format(t), "2022-04-04T16:12:41.059224Z");
    }
}
