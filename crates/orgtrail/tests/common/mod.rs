//! Helpers shared by the end-to-end tests that run the `orgtrail` binary.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `orgtrail --data-dir DATA ARGS` with `stdin`, to completion.
pub fn orgtrail(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("ORGTRAIL_LAKE")
        .env_remove("ORGTRAIL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Standard output then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every event id in the lake (rows and classification failures) with how often it appears, and
/// the queries' output (for the key-leak checks).
pub fn lake_ids(data: &Path) -> (BTreeMap<String, usize>, Vec<String>) {
    let (mut ids, mut outputs) = (BTreeMap::new(), Vec::new());
    for sql in [
        "SELECT id FROM atlassian_audit",
        "SELECT regexp_replace(payload, '^.*?\"id\":\"([^\"]+)\".*$', '\\1') AS id FROM classification_failures",
    ] {
        let out = orgtrail(data, &["query", "--format", "csv", sql], "");
        assert!(out.status.success(), "{sql}: {}", text(&out));
        for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
            *ids.entry(line.trim().to_owned()).or_default() += 1;
        }
        outputs.push(text(&out));
    }
    (ids, outputs)
}

/// The lake holds every ground-truth id exactly once, and nothing else.
pub fn assert_exactly_once(lake: &BTreeMap<String, usize>, truth: &[String]) {
    let truth: BTreeMap<&str, ()> = truth.iter().map(|id| (id.as_str(), ())).collect();
    let doubled: Vec<_> = lake.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "duplicates in the lake: {doubled:?}");
    let missing: Vec<_> = truth
        .keys()
        .filter(|id| !lake.contains_key(**id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing from the lake: {missing:?}");
    let extra: Vec<_> = lake
        .keys()
        .filter(|id| !truth.contains_key(id.as_str()))
        .take(5)
        .collect();
    assert!(extra.is_empty(), "not in the ground truth: {extra:?}");
    assert_eq!(lake.values().sum::<usize>(), truth.len());
}
