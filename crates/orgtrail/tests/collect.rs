//! The collector as a user runs it: `orgtrail sim` in one process, `orgtrail source add` and
//! `orgtrail run` in others, killed with SIGKILL at random moments while live events arrive. After the
//! last restart the lake holds every event the API served exactly once, and the API key appears in
//! no output and no file but the state database.

mod common;

use common::{BIN, Killed, assert_exactly_once, free_port, lake_ids, orgtrail, text};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORG: &str = "11111111-2222-3333-4444-555555555555";
const KEY: &str = "crash-test-key-7f3a9c2e5b";
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn truth_ids(port: u16) -> Vec<String> {
    let body = http_get(port, &format!("/_sim/orgs/{ORG}/events?idsOnly=true")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn killed_collectors_lose_nothing_and_duplicate_nothing_and_never_leak_the_key() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Killed(
        Command::new(BIN)
            .args([
                "sim",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--org",
                ORG,
                "--events",
                "4000",
                "--seed",
                "5",
            ])
            .args([
                "--live-rate",
                "100/s",
                "--live-max-events",
                "1500",
                "--no-rate-limit",
            ])
            .env("ORGTRAIL_SIM_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/_sim/health").is_none() {
        assert!(Instant::now() < deadline, "the simulator did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = format!("http://127.0.0.1:{port}");
    let mut outputs = Vec::new();
    let add = orgtrail(
        data.path(),
        &[
            "source",
            "add",
            "--name",
            "Crash test",
            "--org-id",
            ORG,
            "--api-key-stdin",
            "--base-url",
            &base,
            "--no-input",
            "--dropoff-alarm",
            "24h",
        ],
        &format!("{KEY}\n"),
    );
    assert!(add.status.success(), "{}", text(&add));
    outputs.push(text(&add));

    // Kill the collector 20 times at pseudo-random moments while live events arrive.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut run = Command::new(BIN)
            .arg("--data-dir")
            .arg(data.path())
            // The console is tested on its own (tests/console.rs); here only collection counts.
            .args(["run", "--no-console"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + seed % 600));
        run.kill().unwrap(); // SIGKILL
        run.wait().unwrap();
    }
    // Wait until every live event exists, then catch up once.
    let deadline = Instant::now() + Duration::from_secs(120);
    while truth_ids(port).len() < 5500 {
        assert!(Instant::now() < deadline, "live events did not all arrive");
        std::thread::sleep(Duration::from_millis(200));
    }
    let once = orgtrail(data.path(), &["run", "--once"], "");
    assert!(once.status.success(), "{}", text(&once));
    outputs.push(text(&once));

    let (lake, _) = lake_ids(data.path());
    assert_exactly_once(&lake, &truth_ids(port));

    // The key never appears in any output, nor in any file but the state database.
    for args in [
        vec!["source", "list"],
        vec!["source", "show", "Crash test"],
        vec!["source", "verify", "Crash test"],
    ] {
        let out = orgtrail(data.path(), &args, "");
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        outputs.push(text(&out));
    }
    for o in &outputs {
        assert!(!o.contains(KEY), "the key leaked: {o}");
    }
    let mut stack = vec![data.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.db")
            {
                let bytes = std::fs::read(&p).unwrap();
                assert!(
                    !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                    "the key is in {}",
                    p.display()
                );
            }
        }
    }
    drop(sim);
}

#[test]
fn source_add_refuses_bad_input_clearly() {
    let data = tempfile::tempdir().unwrap();
    let out = orgtrail(
        data.path(),
        &[
            "source",
            "add",
            "--name",
            "X",
            "--org-id",
            ORG,
            "--no-input",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("missing API key"), "{}", text(&out));
    let out = orgtrail(
        data.path(),
        &[
            "source",
            "add",
            "--name",
            "X",
            "--org-id",
            ORG,
            "--api-key-stdin",
            "--no-input",
            "--no-verify",
            "--dropoff-alarm",
            "5m",
        ],
        "k\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("between 15 minutes and 30 days"),
        "{}",
        text(&out)
    );
    // A key the API rejects: nothing is saved, and the message says why.
    let port = free_port();
    let _sim = Killed(
        Command::new(BIN)
            .args([
                "sim",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--org",
                ORG,
                "--events",
                "10",
            ])
            .env("ORGTRAIL_SIM_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    while http_get(port, "/_sim/health").is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = orgtrail(
        data.path(),
        &[
            "source",
            "add",
            "--name",
            "X",
            "--org-id",
            ORG,
            "--api-key-stdin",
            "--no-input",
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
        ],
        "wrong-key\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("invalid, revoked or expired") && t.contains("nothing was saved"),
        "{t}"
    );
    let list = orgtrail(data.path(), &["source", "list"], "");
    assert!(text(&list).contains("no sources yet"), "{}", text(&list));
}
