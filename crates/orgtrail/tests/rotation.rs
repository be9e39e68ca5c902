//! A key revoked while `orgtrail run` is collecting: the daemon reports the auth failure with the
//! remedy and stops calling the API for that source; `orgtrail source edit --api-key-file` with a
//! valid key, while the same `run` keeps going, resumes collection; in the end the lake holds every
//! event of the simulator's ground truth exactly once, and no output ever shows a key.
//!
//! The simulator revokes keys per org (`/_sim/orgs/{org}/revoke-keys` revokes every key of the org,
//! `restore-keys` restores them all): it cannot revoke the old key while a new one stays valid. So the
//! test restores the org's keys before the edit (and checks that this alone does not make the
//! daemon call the API again: it waits for the edit), then switches the source to the second key
//! (`--org-key`) and deletes the old key's file, so collection can only resume through the edit.
//!
//! Also a base URL edited while `run` collects: the daemon moves to the new host at once.

mod common;

use common::{BIN, Killed, assert_exactly_once, free_port, lake_ids, text};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ORG: &str = "11111111-2222-3333-4444-555555555555";
const OLD_KEY: &str = "rotation-old-key-4b1d8e93c7f2";
const NEW_KEY: &str = "rotation-new-key-9a2f6c01e5d8";
const NAME: &str = "Rotation test";
const HISTORY: usize = 3000;
const LIVE: usize = 1000;
fn http(port: u16, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn admin_post(port: u16, path: &str) {
    let body = http(port, "POST", path).unwrap_or_else(|| panic!("POST {path} failed"));
    assert!(!body.contains("error"), "POST {path}: {body}");
}

fn orgtrail(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("ORGTRAIL_LAKE")
        .env_remove("ORGTRAIL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn truth_ids(port: u16) -> Vec<String> {
    let body = http(
        port,
        "GET",
        &format!("/_sim/orgs/{ORG}/events?idsOnly=true"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

/// `events-stream` requests the simulator answered, by status.
fn stream_requests(port: u16) -> BTreeMap<u64, u64> {
    let body = http(port, "GET", "/_sim/stats").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut by_status = BTreeMap::new();
    for r in v["requests"].as_array().unwrap() {
        if r["endpoint"] == "events-stream" {
            *by_status.entry(r["status"].as_u64().unwrap()).or_default() +=
                r["count"].as_u64().unwrap();
        }
    }
    by_status
}

/// SIGTERM to `orgtrail run`: it must exit successfully.
fn stop_cleanly(run: &mut Killed, stderr: impl Fn() -> String) {
    let term = Command::new("kill")
        .args(["-TERM", &run.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = run.0.wait().unwrap();
    assert!(status.success(), "run exited with {status}: {}", stderr());
}

fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_key_revoked_mid_run_stops_the_source_until_edited_then_collection_resumes_without_loss() {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let old_key_file = keys.path().join("old.key");
    let new_key_file = keys.path().join("new.key");
    for (file, key) in [(&old_key_file, OLD_KEY), (&new_key_file, NEW_KEY)] {
        std::fs::write(file, format!("{key}\n")).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // The simulator: the org's first key (the old one) and a second, new one; live events keep
    // arriving (40/s for 25 s) through the revocation and the edit.
    let port = free_port();
    let sim_out = keys.path().join("sim.out");
    let sim = Killed(
        Command::new(BIN)
            .args([
                "sim",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--org",
                ORG,
            ])
            .args(["--org-key", &format!("{ORG}={NEW_KEY}")])
            .args(["--events", &HISTORY.to_string(), "--seed", "9"])
            .args(["--live-rate", "40/s"])
            .args(["--live-max-events", &LIVE.to_string(), "--no-rate-limit"])
            .env("ORGTRAIL_SIM_KEY", OLD_KEY)
            .stdout(File::create(&sim_out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the simulator starts", 60, || {
        http(port, "GET", "/_sim/health").is_some()
    });
    let mut outputs = Vec::new();

    let add = orgtrail(
        data.path(),
        &[
            "source",
            "add",
            "--name",
            NAME,
            "--org-id",
            ORG,
            "--api-key-file",
            old_key_file.to_str().unwrap(),
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--poll-interval",
            "1s",
            "--no-input",
        ],
    );
    assert!(add.status.success(), "{}", text(&add));
    outputs.push(text(&add));

    // `orgtrail run` collects live; its output goes to files the test reads while it runs.
    let run_out = keys.path().join("run.out");
    let run_err = keys.path().join("run.err");
    let mut run = Killed(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data.path())
            .arg("run")
            .env_remove("ORGTRAIL_LAKE")
            .env_remove("ORGTRAIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(File::create(&run_out).unwrap())
            .stderr(File::create(&run_err).unwrap())
            .spawn()
            .unwrap(),
    );
    let run_stderr = || std::fs::read_to_string(&run_err).unwrap_or_default();

    // Live collection is under way: the history is in the lake.
    wait_until("the history reaches the lake", 120, || {
        lake_ids(data.path()).0.len() >= HISTORY
    });

    // Revoke the key mid-run: the daemon says why and how to fix it...
    admin_post(port, &format!("/_sim/orgs/{ORG}/revoke-keys"));
    wait_until("run reports the auth failure", 60, || {
        run_stderr().contains("invalid, revoked or expired")
    });
    // The cycle's summary line names the source, the cause and the remedy.
    let summary = format!("source={NAME:?}: error: ");
    wait_until("the failed cycle's summary line", 30, || {
        run_stderr().contains(&summary)
    });
    let err = run_stderr();
    let line = err.lines().find(|l| l.contains(&summary)).unwrap();
    assert!(line.contains("invalid, revoked or expired"), "{line}");
    assert!(line.contains("HTTP 401"), "{line}");
    assert!(
        line.contains("orgtrail source edit") && line.contains("--api-key-file"),
        "the remedy is missing: {line}"
    );
    // ...and stops calling the API for that source: one 401 (never retried), then nothing. A
    // hammering daemon would send a request at least every poll interval (1 s) or error backoff;
    // it is given several of those to show itself.
    let after_401 = stream_requests(port);
    assert_eq!(after_401.get(&401), Some(&1), "{after_401:?}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        stream_requests(port),
        after_401,
        "the stopped source called the API again"
    );

    // A new key is checked before it is saved: while the org's keys are revoked, the edit fails
    // and changes nothing.
    let rotate = [
        "source",
        "edit",
        NAME,
        "--api-key-file",
        new_key_file.to_str().unwrap(),
    ];
    let refused = orgtrail(data.path(), &rotate);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("nothing was changed"),
        "{}",
        text(&refused)
    );
    outputs.push(text(&refused));
    let show = orgtrail(data.path(), &["source", "show", NAME]);
    assert!(
        text(&show).contains(&format!("file:{}", old_key_file.display())),
        "{}",
        text(&show)
    );
    outputs.push(text(&show));

    // The keys work again at the API (see the module comment), but the source waits for the edit.
    admin_post(port, &format!("/_sim/orgs/{ORG}/restore-keys"));
    let before_edit = stream_requests(port);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        stream_requests(port),
        before_edit,
        "the source resumed without an edit"
    );

    // Rotate to the new key while `run` keeps running; the old key's file goes away, so only the
    // edited source can collect.
    let edit = orgtrail(data.path(), &rotate);
    assert!(edit.status.success(), "{}", text(&edit));
    outputs.push(text(&edit));
    std::fs::remove_file(&old_key_file).unwrap();
    let err_len = run_stderr().len();

    // Collection resumes: every live event arrives, and the lake catches up with the ground truth.
    wait_until("every live event exists", 120, || {
        truth_ids(port).len() >= HISTORY + LIVE
    });
    wait_until("the lake catches up", 120, || {
        lake_ids(data.path()).0.values().sum::<usize>() >= HISTORY + LIVE
    });
    let resumed = run_stderr()[err_len..].to_owned();
    assert!(
        resumed.contains(&format!("source={NAME:?}: ")) && !resumed.contains("error"),
        "run after the edit: {resumed}"
    );
    assert!(
        stream_requests(port).get(&200) > before_edit.get(&200),
        "no request after the edit"
    );

    // SIGTERM: the daemon stops cleanly.
    stop_cleanly(&mut run, run_stderr);

    // Every event exactly once: same ids, same count, nothing doubled.
    let truth = truth_ids(port);
    assert_eq!(truth.len(), HISTORY + LIVE);
    let (lake, queries) = lake_ids(data.path());
    outputs.extend(queries);
    assert_exactly_once(&lake, &truth);

    // No key in any output: the daemon's, the simulator's, every command's.
    drop(sim);
    outputs.push(std::fs::read_to_string(&run_out).unwrap());
    outputs.push(run_stderr());
    outputs.push(std::fs::read_to_string(&sim_out).unwrap());
    for o in &outputs {
        for key in [OLD_KEY, NEW_KEY] {
            assert!(!o.contains(key), "a key leaked: {o}");
        }
    }
}

/// `orgtrail source edit --base-url` while `orgtrail run` is collecting (a move to another regional
/// host): the running daemon switches to the new URL at once, stops calling the old one, and the
/// lake ends with the events of both hosts exactly once. The new host does not know the old host's
/// cursor (`ADMIN-400-1`), so collection goes on from the last `processedAt` minus the overlap.
#[test]
fn a_base_url_edited_while_run_is_collecting_is_used_at_once() {
    const MOVED: &str = "Moved test";
    const LIVE_B: usize = 200;
    let data = tempfile::tempdir().unwrap();
    // A seed per host: the same seed would give host B's live events host A's first ids.
    let sim = |port: u16, history: usize, live: usize, seed: &str| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "sim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--org",
            ORG,
        ])
        .args(["--events", &history.to_string(), "--seed", seed])
        .args(["--no-rate-limit"])
        .env("ORGTRAIL_SIM_KEY", OLD_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if live > 0 {
            cmd.args([
                "--live-rate",
                "40/s",
                "--live-max-events",
                &live.to_string(),
            ]);
        }
        let child = Killed(cmd.spawn().unwrap());
        wait_until("a simulator starts", 60, || {
            http(port, "GET", "/_sim/health").is_some()
        });
        child
    };
    let (port_a, port_b) = (free_port(), free_port());
    let _sim_a = sim(port_a, HISTORY, 0, "11");

    let key_file = data.path().join("key");
    std::fs::write(&key_file, OLD_KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url_a = format!("http://127.0.0.1:{port_a}");
    let add = orgtrail(
        data.path(),
        &[
            "source",
            "add",
            "--name",
            MOVED,
            "--org-id",
            ORG,
            "--api-key-file",
            key_file.to_str().unwrap(),
            "--base-url",
            &url_a,
            "--poll-interval",
            "1s",
            "--no-input",
        ],
    );
    assert!(add.status.success(), "{}", text(&add));

    let run_err = data.path().join("run.err");
    let mut run = Killed(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data.path())
            .arg("run")
            // Not the default ports: the other test of this file runs a daemon at the same time.
            .args(["--metrics-listen", "none", "--no-console"])
            .env_remove("ORGTRAIL_LAKE")
            .env_remove("ORGTRAIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&run_err).unwrap())
            .spawn()
            .unwrap(),
    );
    let run_stderr = || std::fs::read_to_string(&run_err).unwrap_or_default();
    wait_until("host A's history reaches the lake", 120, || {
        lake_ids(data.path()).0.len() >= HISTORY
    });

    // Host B: no history, live events only (all after A's last processedAt).
    let _sim_b = sim(port_b, 0, LIVE_B, "12");
    let url_b = format!("http://127.0.0.1:{port_b}");
    let edit = orgtrail(
        data.path(),
        &["source", "edit", MOVED, "--base-url", &url_b],
    );
    assert!(edit.status.success(), "{}", text(&edit));

    wait_until("run switches to host B", 60, || {
        run_stderr().contains("base URL changed")
    });
    let a_after_switch = stream_requests(port_a);
    wait_until("every live event of host B exists", 60, || {
        truth_ids(port_b).len() >= LIVE_B
    });
    wait_until("the lake catches up with host B", 60, || {
        lake_ids(data.path()).0.len() >= HISTORY + LIVE_B
    });
    assert_eq!(
        stream_requests(port_a),
        a_after_switch,
        "the old host was called after the switch"
    );

    stop_cleanly(&mut run, run_stderr);
    let mut truth = truth_ids(port_a);
    truth.extend(truth_ids(port_b));
    assert_eq!(truth.len(), HISTORY + LIVE_B);
    assert_exactly_once(&lake_ids(data.path()).0, &truth);
}
