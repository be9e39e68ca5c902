//! `cargo bench -p orgtrail-schema`: normalize a generated corpus of realistic Atlassian events and,
//! in the same run, the baseline of parsing the same lines into `serde_json::Value` and writing them
//! back. Prints events/s, MB/s and the ratio (normalizer / baseline; >= 1.0 means at least as fast).
//!
//! Environment: `BENCH_EVENTS` (default 100000), `BENCH_ROUNDS` (default 5; the median is reported).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orgtrail_schema::{Normalizer, Outcome, Registry, TimeLayout};

fn main() {
    let events: usize = env("BENCH_EVENTS", 100_000);
    let rounds: usize = env("BENCH_ROUNDS", 5);
    let corpus = corpus(events, 7);
    let bytes: usize = corpus.iter().map(|l| l.len() + 1).sum();
    let reg = Registry::with_builtins().expect("built-in schemas compile");
    let normalizer = Normalizer::new(reg.get("Atlassian.Audit").expect("built-in")).with_source(
        Some("61ffc2df-cac2-420e-8c21-88eb656888e6".into()),
        Some("bench".into()),
    );
    let normalizer = Arc::new(normalizer);

    // Warm up both and check the corpus is what we think it is.
    let (rows, failures) = normalize_all(&normalizer, &corpus);
    baseline_all(&corpus);
    println!(
        "corpus: {events} events, {:.1} MB, {:.0} bytes/event on average ({} rows, {} classification failures)",
        bytes as f64 / 1e6,
        bytes as f64 / events as f64,
        rows,
        failures
    );

    let mut ours = Vec::new();
    let mut base = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(normalize_all(&normalizer, &corpus));
        ours.push(t.elapsed());
        let t = Instant::now();
        black_box(baseline_all(&corpus));
        base.push(t.elapsed());
    }
    let (ours, base) = (median(ours), median(base));
    report("normalizer (orgtrail-schema)", ours, events, bytes);
    report(
        "baseline (serde_json::Value parse + write)",
        base,
        events,
        bytes,
    );
    println!(
        "ratio normalizer/baseline throughput: {:.2} (goal >= 1.0)",
        base.as_secs_f64() / ours.as_secs_f64()
    );
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(name: &str, d: Duration, events: usize, bytes: usize) {
    let s = d.as_secs_f64();
    println!(
        "{name:<44} {:>8.1} ms  {:>10.0} events/s  {:>7.1} MB/s",
        s * 1e3,
        events as f64 / s,
        bytes as f64 / s / 1e6
    );
}

/// Normalizes every line and renders each row as lake JSON (what `orgtrail parse` does).
fn normalize_all(n: &Normalizer, corpus: &[String]) -> (usize, usize) {
    let mut out = Vec::with_capacity(16 * 1024);
    let (mut rows, mut failures) = (0, 0);
    for line in corpus {
        match n.normalize(line.as_bytes()) {
            Outcome::Row(row) => {
                out.clear();
                n.write_json(&row, TimeLayout::Lake, &mut out);
                black_box(&out);
                rows += 1;
            }
            Outcome::Failure(f) => {
                black_box(f);
                failures += 1;
            }
            Outcome::Skip => {}
        }
    }
    (rows, failures)
}

/// The baseline: parse into `serde_json::Value`, write it back.
fn baseline_all(corpus: &[String]) -> usize {
    let mut out = Vec::with_capacity(16 * 1024);
    let mut n = 0;
    for line in corpus {
        let v: serde_json::Value = serde_json::from_str(line).expect("corpus lines are JSON");
        out.clear();
        serde_json::to_writer(&mut out, &v).expect("write to Vec");
        black_box(&out);
        n += 1;
    }
    n
}

/// SplitMix64: a tiny deterministic generator, so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

const ACTIONS: &[&str] = &[
    "user_login",
    "user_logout",
    "user_login_failed",
    "user_logged_in_as_user",
    "user_created",
    "group_created",
    "group_deleted",
    "twosv_disabled_for_user",
    "user_granted_role",
    "user_revoked_role",
    "added_org_admin",
    "group_granted_admin_access",
    "api_token_created",
    "api_token_revoked",
    "org_settings_update",
    "authentication_policy_update",
    "organization_users_viewed",
    "user_profile_viewed",
    "marketplace_app_installed",
    "marketplace_app_uninstalled",
    "jira_issue_viewed",
    "confluence_added_space_permission",
    "confluence_audit_record_removed_content_restriction",
    "user_invitation_sent",
    "user_deactivated",
    "user_removed_from_org",
    "group_member_added",
    "group_member_removed",
    "data_security_policy_update",
    "rovo_agent_created",
];
const NAMES: &[&str] = &[
    "Riley Admin",
    "Sam Member",
    "Alex Kim",
    "Jordan Lee",
    "Casey Nguyen",
    "Morgan O'Brien",
];
const CITIES: &[&str] = &["Sampleton", "Exampleville", "Testburg", "Demoport"];

fn corpus(n: usize, seed: u64) -> Vec<String> {
    let mut r = Rng(seed);
    let org = "2d2790c2-d6c8-49dc-a9fe-3b0a11a28927";
    let base_ms: u64 = 1_748_853_727_000;
    (0..n)
        .map(|i| {
            let id = r.uuid();
            let t_ms = base_ms + i as u64 * 250 + r.below(5_000);
            let time = if r.below(5) == 0 { rfc3339(t_ms / 1000 * 1000, false) } else { rfc3339(t_ms, true) };
            let processed = rfc3339(t_ms + 200 + r.below(120_000), true);
            let action = r.pick(ACTIONS);
            let name = r.pick(NAMES);
            let email = format!("{}@example.com", name.to_lowercase().replace([' ', '\''], "."));
            let actor = match r.below(10) {
                0 => r#"{"id":"confluence","name":"Confluence","email":"Atlassian app","picture":null,"links":{}}"#.to_owned(),
                1 => format!(
                    r#"{{"id":"712020:{}","name":"{name}","email":"{email}","auth":{{"authType":"api-token","tokenId":"{}","tokenLabel":"ci-bot"}},"onBehalfOf":{{"id":"557058:{}","email":"sam.member@example.com"}}}}"#,
                    r.uuid(), r.uuid(), r.uuid()
                ),
                _ => format!(
                    r#"{{"id":"712020:{}","name":"{name}","email":"{email}","links":{{"self":"https://api.atlassian.com/users/712020:x/manage/profile"}}}}"#,
                    r.uuid()
                ),
            };
            let mut context = String::from("[");
            for c in 0..r.below(4) {
                if c > 0 {
                    context.push(',');
                }
                // Payload sizes vary like real events: extra attributes make 0.5-4 KB lines.
                let pad = "x".repeat(r.below(700) as usize);
                let id = if r.below(10) == 0 { String::new() } else { format!(r#""id":"557058:{}","#, r.uuid()) };
                context.push_str(&format!(
                    r#"{{{id}"type":"users","attributes":{{"email":"sam.member@example.com","name":"Sam Member","accountType":"atlassian","note":"{pad}"}},"links":{{"self":"https://api.atlassian.com/users/557058:x/manage/profile","alt":"https://admin.atlassian.com/o/{org}/users"}}}}"#
                ));
            }
            context.push(']');
            let location = match r.below(6) {
                0 => String::new(),
                1 => format!(r#","location":{{"ip":"2001:db8:{:x}::1a","countryName":"Exampleland","city":"{}"}}"#, r.below(65535), r.pick(CITIES)),
                2 => r#","location":{"geo":"EU","ip":""}"#.to_owned(),
                _ => format!(
                    r#","location":{{"ip":"203.0.{}.{}","countryName":"Exampleland","regionName":"North","city":"{}"}}"#,
                    r.below(256), r.below(256), r.pick(CITIES)
                ),
            };
            // About 1% lack the top-level `links` the schema requires (classification failures).
            let links = if r.below(100) == 0 {
                String::new()
            } else {
                format!(r#","links":{{"self":"https://api.atlassian.com/admin/v1/orgs/{org}/events/{id}"}}"#)
            };
            format!(
                r#"{{"type":"events","id":"{id}","attributes":{{"time":"{time}","processedAt":"{processed}","action":"{action}","actor":{actor},"context":{context},"container":[{{"id":"69f57e5e-b7f1-402f-8df2-eaf0eda7c46d","type":"sites","attributes":{{"siteName":"example","siteHostName":"https://example.atlassian.net"}},"links":{{"alt":"https://example.atlassian.net"}}}}]{location}}}{links},"relations":null,"message":{{"content":"{action} by {name}","format":"simple"}}}}"#
            )
        })
        .collect()
}

fn rfc3339(ms: u64, with_ms: bool) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms as i64).expect("in range");
    if with_ms {
        format!("{}", ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    } else {
        format!("{}", ts.strftime("%Y-%m-%dT%H:%M:%SZ"))
    }
}
