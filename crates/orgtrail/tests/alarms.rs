//! Health, alarms, notifications and metrics as a user sees them: `orgtrail sim` and
//! `orgtrail run --notify-webhook ... --metrics-listen ...` in their own processes, a webhook
//! receiver in the test. Alarm time runs 600 times faster (the hidden `--test-time-scale`), so the
//! 15-minute drop-off threshold passes in 1.5 s.
//!
//! Live events stop → a SOURCE_NO_DATA notification; the key is revoked → a permissions
//! notification with the remedy; `orgtrail alarms`, `orgtrail source health`, `/metrics`,
//! `/healthz`, `/readyz` and `system_errors` show them; the API key is in none of these outputs.

mod common;

use common::{BIN, Killed, free_port, orgtrail, text};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ORG: &str = "11111111-2222-3333-4444-555555555555";
const KEY: &str = "cli-alarm-key-3e9b1f7c60";
fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A webhook receiver: every POST body, as JSON.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let b = bodies.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                b.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

fn wait_for_notification(bodies: &Arc<Mutex<Vec<String>>>, alarm: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap())
            .find(|v| v["alarm"] == alarm && v["state"] == "ALARM");
        if let Some(v) = found {
            return v;
        }
        assert!(Instant::now() < deadline, "no {alarm} notification");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dropoff_and_permissions_alarms_reach_the_webhook_and_every_view_without_the_key() {
    let data = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let metrics_port = free_port();
    let (hook_port, bodies) = receiver();
    let _sim = Killed(
        Command::new(BIN)
            .args([
                "sim",
                "--listen",
                &format!("127.0.0.1:{sim_port}"),
                "--org",
                ORG,
            ])
            .args(["--events", "500", "--seed", "9", "--live-rate", "20/s"])
            .args(["--live-max-events", "100", "--no-rate-limit"])
            .env("ORGTRAIL_SIM_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(sim_port, "GET", "/_sim/health").is_none() {
        assert!(Instant::now() < deadline, "the simulator did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = format!("http://127.0.0.1:{sim_port}");
    let mut outputs = Vec::new();
    let add = |alarm: &str| {
        orgtrail(
            data.path(),
            &[
                "source",
                "add",
                "--name",
                "CLI test",
                "--org-id",
                ORG,
                "--api-key-stdin",
                "--base-url",
                &base,
                "--no-input",
                "--poll-interval",
                "1s",
                "--dropoff-alarm",
                alarm,
            ],
            &format!("{KEY}\n"),
        )
    };
    // Out of range: refused, with the input and what to do.
    let bad = add("10m");
    assert!(!bad.status.success());
    let msg = text(&bad);
    assert!(
        msg.contains("\"10m\"") && msg.contains("between 15 minutes and 30 days"),
        "{msg}"
    );
    let ok = add("15m");
    assert!(ok.status.success(), "{}", text(&ok));
    outputs.push(text(&ok));

    let out = std::fs::File::create(data.path().join("run.out")).unwrap();
    let err = std::fs::File::create(data.path().join("run.err")).unwrap();
    let mut run = Killed(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "run",
                "--metrics-listen",
                &format!("127.0.0.1:{metrics_port}"),
                "--notify-webhook",
                &format!("http://127.0.0.1:{hook_port}/hook"),
                "--test-time-scale",
                "600",
            ])
            .env_remove("ORGTRAIL_LAKE")
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap(),
    );

    // Live events end after 5 s; 15 alarm minutes later (1.5 s) the drop-off alarm fires.
    let nodata = wait_for_notification(&bodies, "SOURCE_NO_DATA");
    assert_eq!(nodata["source"]["name"], "CLI test");
    assert_eq!(nodata["severity"], "CRITICAL");
    let (status, ready) = http(metrics_port, "GET", "/readyz").unwrap();
    assert_eq!((status, ready.as_str()), (200, "{\"ready\":true}"));

    // Revoke the key: a permissions alarm with the remedy.
    assert!(http(sim_port, "POST", &format!("/_sim/orgs/{ORG}/revoke-keys")).is_some());
    let perm = wait_for_notification(&bodies, "SOURCE_PERMISSIONS_CHECKS");
    assert!(
        perm["message"].as_str().unwrap().contains("HTTP 401"),
        "{perm}"
    );
    assert!(
        perm["remedy"]
            .as_str()
            .unwrap()
            .contains("orgtrail source edit \"CLI test\" --api-key-env VAR"),
        "{perm}"
    );

    let (status, metrics) = http(metrics_port, "GET", "/metrics").unwrap();
    assert_eq!(status, 200);
    for want in [
        "orgtrail_alarm_state{source=\"CLI test\",alarm=\"SOURCE_NO_DATA\",state=\"ALARM\"} 1",
        "orgtrail_alarm_state{source=\"CLI test\",alarm=\"SOURCE_PERMISSIONS_CHECKS\",state=\"ALARM\"} 1",
        "orgtrail_events_stored_total{source=\"CLI test\"}",
        "orgtrail_api_requests_total{endpoint=\"events-stream\",status=\"401\"}",
        "orgtrail_notifications_total{destination=\"webhook\",result=\"sent\"}",
        "# HELP orgtrail_lag_seconds",
    ] {
        assert!(metrics.contains(want), "{want} missing from:\n{metrics}");
    }
    let (status, healthz) = http(metrics_port, "GET", "/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(healthz.contains("\"status\":\"unhealthy\""), "{healthz}");
    let (status, sources) = http(metrics_port, "GET", "/health/sources/CLI%20test").unwrap();
    assert_eq!(status, 200, "{sources}");
    let (status, _) = http(metrics_port, "GET", "/health/sources/nope").unwrap();
    assert_eq!(status, 404);
    let (_, alarms_http) = http(metrics_port, "GET", "/alarms").unwrap();
    outputs.extend([metrics, healthz, sources, alarms_http]);

    // The CLI views, from another process while the daemon runs.
    let alarms = orgtrail(data.path(), &["alarms", "--json"], "");
    assert_eq!(
        alarms.status.code(),
        Some(1),
        "an alarm fires: {}",
        text(&alarms)
    );
    let v: serde_json::Value = serde_json::from_slice(&alarms.stdout).unwrap();
    let firing: Vec<&str> = v["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "ALARM")
        .map(|a| a["alarm"].as_str().unwrap())
        .collect();
    assert!(
        firing.contains(&"SOURCE_NO_DATA") && firing.contains(&"SOURCE_PERMISSIONS_CHECKS"),
        "{v}"
    );
    assert!(!v["history"].as_array().unwrap().is_empty());
    outputs.push(text(&alarms));
    let table = orgtrail(data.path(), &["alarms"], "");
    assert!(text(&table).contains("remedy:"), "{}", text(&table));
    outputs.push(text(&table));
    let health = orgtrail(data.path(), &["source", "health", "CLI test", "--json"], "");
    assert_eq!(health.status.code(), Some(1), "{}", text(&health));
    let h: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(h["status"], "unhealthy");
    assert!(
        h["last_event_received_at"].is_string() && h["lag_seconds"].is_number(),
        "{h}"
    );
    outputs.push(text(&health));
    let health = orgtrail(data.path(), &["source", "health", "CLI test"], "");
    assert!(
        text(&health).contains("status:               unhealthy"),
        "{}",
        text(&health)
    );
    outputs.push(text(&health));
    // The drop-off alarm can be turned off on edit.
    let edit = orgtrail(
        data.path(),
        &["source", "edit", "CLI test", "--dropoff-alarm", "off"],
        "",
    );
    assert!(edit.status.success(), "{}", text(&edit));

    // SIGTERM stops the daemon cleanly; every transition is in system_errors.
    let pid = run.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "orgtrail run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let q = orgtrail(
        data.path(),
        &[
            "query",
            "--format",
            "csv",
            "SELECT alarm, state FROM system_errors ORDER BY sequence",
        ],
        "",
    );
    assert!(q.status.success(), "{}", text(&q));
    let rows = String::from_utf8_lossy(&q.stdout).into_owned();
    assert!(rows.contains("SOURCE_NO_DATA,ALARM"), "{rows}");
    assert!(rows.contains("SOURCE_PERMISSIONS_CHECKS,ALARM"), "{rows}");
    outputs.push(rows);
    outputs.push(std::fs::read_to_string(data.path().join("run.out")).unwrap());
    let run_err = std::fs::read_to_string(data.path().join("run.err")).unwrap();
    assert!(
        run_err.contains("SOURCE_NO_DATA"),
        "transitions are logged: {run_err}"
    );
    outputs.push(run_err);
    outputs.extend(bodies.lock().unwrap().iter().cloned());
    for o in &outputs {
        assert!(!o.contains(KEY), "the API key leaked: {o}");
    }
}
