//! Panther's indicator scanners (`p_any_*` fields), with Go's parsing rules.
//!
//! Every value is trimmed first; empty values are never added. Lists are de-duplicated and sorted
//! byte-wise when the row is finished ([`Indicators::finish`]).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// An indicator name usable in a schema's `indicators:` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Indicator {
    Ip,
    Domain,
    Hostname,
    Url,
    NetAddr,
    Email,
    Username,
    TraceId,
    Md5,
    Sha1,
    Sha256,
    AwsArn,
    AwsAccountId,
    AwsInstanceId,
    AwsTag,
}

impl Indicator {
    pub const ALL: [Indicator; 15] = [
        Indicator::Ip,
        Indicator::Domain,
        Indicator::Hostname,
        Indicator::Url,
        Indicator::NetAddr,
        Indicator::Email,
        Indicator::Username,
        Indicator::TraceId,
        Indicator::Md5,
        Indicator::Sha1,
        Indicator::Sha256,
        Indicator::AwsArn,
        Indicator::AwsAccountId,
        Indicator::AwsInstanceId,
        Indicator::AwsTag,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Indicator::Ip => "ip",
            Indicator::Domain => "domain",
            Indicator::Hostname => "hostname",
            Indicator::Url => "url",
            Indicator::NetAddr => "net_addr",
            Indicator::Email => "email",
            Indicator::Username => "username",
            Indicator::TraceId => "trace_id",
            Indicator::Md5 => "md5",
            Indicator::Sha1 => "sha1",
            Indicator::Sha256 => "sha256",
            Indicator::AwsArn => "aws_arn",
            Indicator::AwsAccountId => "aws_account_id",
            Indicator::AwsInstanceId => "aws_instance_id",
            Indicator::AwsTag => "aws_tag",
        }
    }

    pub fn parse(s: &str) -> Option<Indicator> {
        Indicator::ALL.into_iter().find(|i| i.name() == s)
    }

    /// The `p_any_*` columns this scanner can fill.
    pub fn fields(self) -> &'static [IndicatorField] {
        use IndicatorField as F;
        match self {
            Indicator::Ip => &[F::IpAddresses],
            Indicator::Domain => &[F::DomainNames],
            Indicator::Hostname | Indicator::Url | Indicator::NetAddr => {
                &[F::DomainNames, F::IpAddresses]
            }
            Indicator::Email => &[F::Emails],
            Indicator::Username => &[F::Usernames],
            Indicator::TraceId => &[F::TraceIds],
            Indicator::Md5 => &[F::Md5Hashes],
            Indicator::Sha1 => &[F::Sha1Hashes],
            Indicator::Sha256 => &[F::Sha256Hashes],
            Indicator::AwsArn => &[F::AwsAccountIds, F::AwsArns, F::AwsInstanceIds],
            Indicator::AwsAccountId => &[F::AwsAccountIds],
            Indicator::AwsInstanceId => &[F::AwsInstanceIds],
            Indicator::AwsTag => &[F::AwsTags],
        }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `p_any_*` column. The variant order is the alphabetical order of the column names, so sorting
/// by field sorts the output keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndicatorField {
    AwsAccountIds,
    AwsArns,
    AwsInstanceIds,
    AwsTags,
    DomainNames,
    Emails,
    IpAddresses,
    Md5Hashes,
    Sha1Hashes,
    Sha256Hashes,
    TraceIds,
    Usernames,
}

impl IndicatorField {
    pub fn column(self) -> &'static str {
        match self {
            IndicatorField::AwsAccountIds => "p_any_aws_account_ids",
            IndicatorField::AwsArns => "p_any_aws_arns",
            IndicatorField::AwsInstanceIds => "p_any_aws_instance_ids",
            IndicatorField::AwsTags => "p_any_aws_tags",
            IndicatorField::DomainNames => "p_any_domain_names",
            IndicatorField::Emails => "p_any_emails",
            IndicatorField::IpAddresses => "p_any_ip_addresses",
            IndicatorField::Md5Hashes => "p_any_md5_hashes",
            IndicatorField::Sha1Hashes => "p_any_sha1_hashes",
            IndicatorField::Sha256Hashes => "p_any_sha256_hashes",
            IndicatorField::TraceIds => "p_any_trace_ids",
            IndicatorField::Usernames => "p_any_usernames",
        }
    }
}

/// The indicator values of one row, collected while normalizing.
#[derive(Clone, Default)]
pub struct Indicators {
    /// Each value: its column and where its text is in `text`.
    values: Vec<(IndicatorField, usize, usize)>,
    /// The values' text, one after the other (one allocation per row, not one per value).
    text: String,
    finished: bool,
}

impl PartialEq for Indicators {
    fn eq(&self, other: &Self) -> bool {
        self.finished == other.finished && self.iter().eq(other.iter())
    }
}

impl Eq for Indicators {}

impl std::fmt::Debug for Indicators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Indicators {
    fn push(&mut self, field: IndicatorField, value: &str) {
        // Derived values (a URL's host, an ARN's account) are trimmed like the value itself.
        let value = value.trim();
        if !value.is_empty() {
            if self.text.capacity() == 0 {
                self.text.reserve(256);
                self.values.reserve(8);
            }
            self.append(field, value);
        }
    }

    /// Appends a value as it is.
    fn append(&mut self, field: IndicatorField, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.values.push((field, start, self.text.len()));
        self.finished = false;
    }

    /// Every value with its column, in the current order.
    fn iter(&self) -> impl Iterator<Item = (IndicatorField, &str)> {
        self.values
            .iter()
            .map(|&(f, start, end)| (f, &self.text[start..end]))
    }

    /// Runs one scanner over a value.
    pub fn scan(&mut self, indicator: Indicator, value: &str) {
        use IndicatorField as F;
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        match indicator {
            Indicator::Ip => {
                if is_ip(value) {
                    self.push(F::IpAddresses, value);
                }
            }
            Indicator::Domain => self.push_domain(value),
            Indicator::Hostname => self.push_hostname(value),
            Indicator::Url => {
                if let Some(host) = url_hostname(value) {
                    self.push_hostname(&host);
                }
            }
            Indicator::NetAddr => match split_host_port(value) {
                Some((host, _)) => self.push_hostname(host),
                None => self.push_hostname(value),
            },
            Indicator::Email => {
                if value.contains('@') {
                    self.push(F::Emails, value);
                }
            }
            Indicator::Username => self.push(F::Usernames, value),
            Indicator::TraceId => self.push(F::TraceIds, value),
            Indicator::AwsTag => self.push(F::AwsTags, value),
            Indicator::Md5 => self.push_hash(F::Md5Hashes, 32, value),
            Indicator::Sha1 => self.push_hash(F::Sha1Hashes, 40, value),
            Indicator::Sha256 => self.push_hash(F::Sha256Hashes, 64, value),
            Indicator::AwsAccountId => {
                if value.len() == 12 && value.bytes().all(|c| c.is_ascii_digit()) {
                    self.push(F::AwsAccountIds, value);
                }
            }
            Indicator::AwsInstanceId => {
                if value.starts_with("i-") {
                    self.push(F::AwsInstanceIds, value);
                }
            }
            Indicator::AwsArn => {
                // arn:partition:service:region:account-id:resource (Go's arn.Parse).
                let parts: Vec<&str> = value.splitn(6, ':').collect();
                if parts.len() == 6 && parts[0] == "arn" {
                    self.push(F::AwsArns, value);
                    self.push(F::AwsAccountIds, parts[4]);
                    if let Some(id) = parts[5].strip_prefix("instance/") {
                        self.push(F::AwsInstanceIds, id);
                    }
                }
            }
        }
    }

    fn push_hash(&mut self, field: IndicatorField, len: usize, value: &str) {
        if value.len() == len && value.bytes().all(|c| c.is_ascii_hexdigit()) {
            self.push(field, &value.to_ascii_lowercase());
        }
    }

    fn push_hostname(&mut self, value: &str) {
        if is_ip(value) {
            self.push(IndicatorField::IpAddresses, value);
        } else {
            self.push_domain(value);
        }
    }

    fn push_domain(&mut self, value: &str) {
        if value.starts_with("xn--") {
            self.push(IndicatorField::DomainNames, &punycode_to_unicode(value));
        } else {
            self.push(IndicatorField::DomainNames, value);
        }
    }

    /// Indicators read back from stored `p_any_*` columns.
    pub fn from_columns(columns: impl IntoIterator<Item = (IndicatorField, Vec<String>)>) -> Self {
        let mut i = Indicators::default();
        for (field, vs) in columns {
            for v in vs {
                // Stored values are kept as they are (not trimmed again).
                i.append(field, &v);
            }
        }
        i.finish();
        i
    }

    /// Sorts and de-duplicates every list. Idempotent.
    pub fn finish(&mut self) {
        if !self.finished {
            let text = &self.text;
            let key = |&(f, start, end): &(IndicatorField, usize, usize)| (f, &text[start..end]);
            self.values.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
            self.values.dedup_by(|a, b| key(a) == key(b));
            self.finished = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// No values, keeping the buffers' capacity.
    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.text.clear();
        self.finished = false;
    }

    /// The non-empty columns in alphabetical order, each with its sorted, unique values.
    /// Call [`Indicators::finish`] first.
    pub fn columns(&self) -> impl Iterator<Item = (IndicatorField, Vec<&str>)> + '_ {
        debug_assert!(self.finished || self.values.is_empty());
        let mut rest = &self.values[..];
        std::iter::from_fn(move || {
            let (field, _, _) = rest.first()?;
            let n = rest.iter().take_while(|(f, _, _)| f == field).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            Some((
                *field,
                group
                    .iter()
                    .map(|&(_, start, end)| &self.text[start..end])
                    .collect(),
            ))
        })
    }

    /// The values of one column (sorted and unique after [`Indicators::finish`]).
    pub fn get(&self, field: IndicatorField) -> Vec<&str> {
        self.values(field).collect()
    }

    /// The values of one indicator column, without collecting them.
    pub fn values(&self, field: IndicatorField) -> impl Iterator<Item = &str> {
        self.iter()
            .filter(move |(f, _)| *f == field)
            .map(|(_, v)| v)
    }
}

/// Go's `net.ParseIP`: dotted IPv4 (no leading zeros) or IPv6 (no zone).
fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Decodes each `xn--` label; the value is kept as given when a label does not decode.
fn punycode_to_unicode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, label) in value.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        match label
            .strip_prefix("xn--")
            .and_then(idna::punycode::decode_to_string)
        {
            Some(decoded) => out.push_str(&decoded),
            None if label.starts_with("xn--") => return value.to_owned(),
            None => out.push_str(label),
        }
    }
    out
}

/// Go's `net.SplitHostPort`.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = rest[end + 1..].strip_prefix(':')?;
        if port.contains(':') || host.contains('[') {
            return None;
        }
        return Some((host, port));
    }
    let colon = s.rfind(':')?;
    let (host, port) = (&s[..colon], &s[colon + 1..]);
    if host.contains(':') || host.contains('[') || host.contains(']') || port.contains(']') {
        return None;
    }
    Some((host, port))
}

/// `url.Parse(s)` then `.Hostname()` as Go does it: the host as written (not lower-cased, not
/// IDNA-encoded), `None` when there is no scheme, no authority, or the URL does not parse.
pub fn url_hostname(s: &str) -> Option<Cow<'_, str>> {
    // Go refuses control characters anywhere in a URL. Tested 16 bytes at a time, without a
    // branch per byte.
    let control = |chunk: &[u8]| {
        chunk
            .iter()
            .fold(false, |f, &c| f | (c < 0x20) | (c == 0x7f))
    };
    if s.as_bytes().chunks(16).any(control) {
        return None;
    }
    // Scheme: [A-Za-z][A-Za-z0-9+.-]*: (a `#` or `?` before the first colon fails this test, as
    // cutting the fragment and the query first would leave no colon).
    let colon = s.find(':')?;
    if !is_scheme(&s[..colon]) {
        return None;
    }
    // The authority: after `//`, up to the path, the query or the fragment, whichever comes first
    // (only that part is read: the rest of a long URL is not scanned).
    let authority = s[colon + 1..].strip_prefix("//")?;
    let authority = authority
        .find(['/', '?', '#'])
        .map_or(authority, |end| &authority[..end]);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = parse_host(host_port)?;
    // Hostname(): strip the port, then the brackets of an IPv6 literal.
    let name = |h: &str| -> std::ops::Range<usize> {
        match h.strip_prefix('[') {
            Some(inner) => 1..1 + inner.split_once(']').map_or(inner, |(h, _)| h).len(),
            None => match h.rfind(':') {
                Some(i) if valid_optional_port(&h[i..]) => 0..i,
                _ => 0..h.len(),
            },
        }
    };
    let host = match host {
        Cow::Borrowed(h) => Cow::Borrowed(&h[name(h)]),
        Cow::Owned(h) => Cow::Owned(h[name(&h)].to_owned()),
    };
    if host.is_empty() { None } else { Some(host) }
}

/// `[A-Za-z][A-Za-z0-9+.-]*`
fn is_scheme(s: &str) -> bool {
    let mut chars = s.bytes();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

fn valid_optional_port(p: &str) -> bool {
    match p.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|c| c.is_ascii_digit()),
        None => p.is_empty(),
    }
}

/// Go's `parseHost`: bracketed IPv6 with an optional port, or a host with an optional numeric
/// port; percent-escapes decoded; characters Go refuses in a host make the URL invalid.
fn parse_host(host: &str) -> Option<Cow<'_, str>> {
    if host.starts_with('[') {
        let end = host.rfind(']')?;
        if !valid_optional_port(&host[end + 1..]) {
            return None;
        }
    } else if let Some(i) = host.rfind(':')
        && !valid_optional_port(&host[i..])
    {
        return None;
    }
    let allowed =
        |c: u8| c >= 0x80 || c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"".contains(&c);
    if !host.contains('%') {
        // Nothing to decode: the host as written.
        return host.bytes().all(allowed).then_some(Cow::Borrowed(host));
    }
    let bytes = host.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
            continue;
        }
        if !allowed(c) {
            return None;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(ind: Indicator, v: &str) -> Vec<(IndicatorField, Vec<String>)> {
        let mut i = Indicators::default();
        i.scan(ind, v);
        i.finish();
        i.columns()
            .map(|(f, vs)| (f, vs.into_iter().map(String::from).collect()))
            .collect()
    }

    fn one(f: IndicatorField, v: &str) -> Vec<(IndicatorField, Vec<String>)> {
        vec![(f, vec![v.to_owned()])]
    }

    use IndicatorField as F;

    #[test]
    fn ip_is_kept_as_given() {
        assert_eq!(
            scan(Indicator::Ip, " 203.0.113.7 "),
            one(F::IpAddresses, "203.0.113.7")
        );
        assert_eq!(
            scan(Indicator::Ip, "2001:DB8::1"),
            one(F::IpAddresses, "2001:DB8::1")
        );
        assert_eq!(
            scan(Indicator::Ip, "::ffff:1.2.3.4"),
            one(F::IpAddresses, "::ffff:1.2.3.4")
        );
        for bad in [
            "",
            "1.2.3",
            "256.1.1.1",
            "01.2.3.4",
            "fe80::1%eth0",
            "example.com",
            "1.2.3.4:80",
        ] {
            assert!(scan(Indicator::Ip, bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn url_gives_host_only_with_scheme() {
        assert_eq!(
            scan(Indicator::Url, "http://23.23.23.23/foo"),
            one(F::IpAddresses, "23.23.23.23")
        );
        assert_eq!(
            scan(Indicator::Url, "http://foo"),
            one(F::DomainNames, "foo")
        );
        assert!(scan(Indicator::Url, "23.23.23.23").is_empty());
        assert!(scan(Indicator::Url, "example.com/x").is_empty());
        assert!(scan(Indicator::Url, "mailto:a@example.com").is_empty());
        assert_eq!(
            scan(Indicator::Url, "https://user:pw@Example.COM:8443/a?b=c#d"),
            one(F::DomainNames, "Example.COM")
        );
        assert_eq!(
            scan(Indicator::Url, "https://[2001:db8::1]:443/x"),
            one(F::IpAddresses, "2001:db8::1")
        );
        assert_eq!(
            scan(Indicator::Url, "https://ex%61mple.com/"),
            one(F::DomainNames, "example.com")
        );
        assert!(scan(Indicator::Url, "https://exa mple.com/").is_empty());
        assert!(scan(Indicator::Url, "https://example.com:port/").is_empty());
        assert!(scan(Indicator::Url, "https:///path").is_empty());
        assert_eq!(
            scan(Indicator::Url, "https://xn--fa-hia.com/"),
            one(F::DomainNames, "faß.com")
        );
    }

    #[test]
    fn domains_hostnames_net_addrs() {
        assert_eq!(
            scan(Indicator::Domain, "xn--fa-hia.com"),
            one(F::DomainNames, "faß.com")
        );
        assert_eq!(
            scan(Indicator::Domain, "Example.COM"),
            one(F::DomainNames, "Example.COM")
        );
        assert_eq!(
            scan(Indicator::Domain, "xn--zz"),
            one(F::DomainNames, "xn--zz")
        );
        assert_eq!(
            scan(Indicator::Hostname, "10.0.0.1"),
            one(F::IpAddresses, "10.0.0.1")
        );
        assert_eq!(
            scan(Indicator::Hostname, "db.internal"),
            one(F::DomainNames, "db.internal")
        );
        assert_eq!(
            scan(Indicator::NetAddr, "10.0.0.1:5432"),
            one(F::IpAddresses, "10.0.0.1")
        );
        assert_eq!(
            scan(Indicator::NetAddr, "[::1]:80"),
            one(F::IpAddresses, "::1")
        );
        assert_eq!(
            scan(Indicator::NetAddr, "db.internal"),
            one(F::DomainNames, "db.internal")
        );
    }

    #[test]
    fn emails_usernames_hashes_aws() {
        assert_eq!(
            scan(Indicator::Email, "Riley@Example.com"),
            one(F::Emails, "Riley@Example.com")
        );
        assert!(scan(Indicator::Email, "Atlassian app").is_empty());
        assert_eq!(
            scan(Indicator::Username, " Riley Admin "),
            one(F::Usernames, "Riley Admin")
        );
        assert!(scan(Indicator::Username, "   ").is_empty());
        let md5 = "D41D8CD98F00B204E9800998ECF8427E";
        assert_eq!(
            scan(Indicator::Md5, md5),
            one(F::Md5Hashes, &md5.to_lowercase())
        );
        assert!(scan(Indicator::Md5, &md5[1..]).is_empty());
        assert!(scan(Indicator::Sha1, md5).is_empty());
        assert_eq!(
            scan(
                Indicator::AwsArn,
                "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"
            ),
            vec![
                (F::AwsAccountIds, vec!["123456789012".to_owned()]),
                (
                    F::AwsArns,
                    vec!["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc".to_owned()]
                ),
                (F::AwsInstanceIds, vec!["i-0abc".to_owned()]),
            ]
        );
        assert!(scan(Indicator::AwsArn, "arn:aws:s3").is_empty());
        assert!(scan(Indicator::AwsAccountId, "12345678901").is_empty());
        assert_eq!(
            scan(Indicator::AwsInstanceId, "i-1"),
            one(F::AwsInstanceIds, "i-1")
        );
    }

    #[test]
    fn columns_are_grouped_sorted_unique() {
        let mut i = Indicators::default();
        for v in ["b@x", "a@x", "b@x"] {
            i.scan(Indicator::Email, v);
        }
        i.scan(Indicator::Ip, "10.0.0.2");
        i.scan(Indicator::Ip, "10.0.0.10");
        i.finish();
        let cols: Vec<_> = i.columns().collect();
        assert_eq!(
            cols,
            vec![
                (F::Emails, vec!["a@x", "b@x"]),
                (F::IpAddresses, vec!["10.0.0.10", "10.0.0.2"])
            ]
        );
    }

    /// The authority as `url_hostname` first found it, each step of Go's `url.Parse` in turn (cut
    /// the fragment, the scheme, cut the query, the authority), then its host as `url_hostname`
    /// reads it: the property below tests the new way to the authority, not the host parsing.
    fn url_hostname_stepwise(s: &str) -> Option<Cow<'_, str>> {
        if s.bytes().any(|c| c < 0x20 || c == 0x7f) {
            return None;
        }
        let s = s.split_once('#').map_or(s, |(a, _)| a);
        let colon = s.find(':')?;
        if !is_scheme(&s[..colon]) {
            return None;
        }
        let rest = &s[colon + 1..];
        let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
        let authority = rest.strip_prefix("//")?;
        let authority = authority.split_once('/').map_or(authority, |(a, _)| a);
        let full = format!("x://{authority}");
        url_hostname(&full).map(|h| Cow::Owned(h.into_owned()))
    }

    proptest! {
        #[test]
        fn url_hostname_reads_the_authority_as_the_stepwise_parse_does(
            head in proptest::sample::select(vec!["https://", "h+.-://", "a:", "://", "#a://", "a?://", "a//", ""]),
            tail in "[a-zA-Z0-9:/?#@%.\\[\\]\t\x7f-]{0,40}"
        ) {
            let s = format!("{head}{tail}");
            prop_assert_eq!(url_hostname(&s), url_hostname_stepwise(&s));
        }
    }

    proptest! {
        #[test]
        fn indicator_lists_are_sorted_unique_trimmed_and_idempotent(
            values in proptest::collection::vec((0usize..15, "[ \\ta-zA-Z0-9@:./\\[\\]%-]{0,24}"), 0..24)
        ) {
            let mut i = Indicators::default();
            for (k, v) in &values {
                i.scan(Indicator::ALL[*k], v);
            }
            i.finish();
            let first: Vec<_> = i.columns().map(|(f, v)| (f, v.into_iter().map(String::from).collect::<Vec<_>>())).collect();
            let mut prev_field = None;
            for (field, vs) in &first {
                prop_assert!(prev_field < Some(*field), "columns sorted and distinct");
                prev_field = Some(*field);
                prop_assert!(!vs.is_empty());
                for w in vs.windows(2) {
                    prop_assert!(w[0] < w[1], "values sorted and unique: {:?}", vs);
                }
                for v in vs {
                    prop_assert!(!v.is_empty());
                    prop_assert_eq!(v.trim(), v.as_str());
                }
            }
            // Idempotent: finishing again, or re-scanning the same values, changes nothing.
            i.finish();
            for (k, v) in &values {
                i.scan(Indicator::ALL[*k], v);
            }
            i.finish();
            let second: Vec<_> = i.columns().map(|(f, v)| (f, v.into_iter().map(String::from).collect::<Vec<_>>())).collect();
            prop_assert_eq!(first, second);
        }
    }
}
