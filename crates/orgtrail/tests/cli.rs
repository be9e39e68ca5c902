//! End-to-end tests of the `orgtrail` commands that need no simulator, run as a user would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn orgtrail(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .args(args)
        .env_remove("ORGTRAIL_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orgtrail runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("orgtrail-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    p
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn schema_show_prints_the_builtin_yaml_which_checks_clean() {
    let out = orgtrail(&["schema", "show", "Atlassian.Audit"], "");
    assert!(out.status.success());
    let yaml = text(&out.stdout);
    assert!(yaml.contains("schema: Atlassian.Audit"));
    let file = tmp("shown.yml", &yaml);
    let check = orgtrail(&["schema", "check", file.to_str().unwrap()], "");
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("ok: Atlassian.Audit"));

    let out = orgtrail(&["schema", "show", "Nope.Type"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown log type `Nope.Type`; available: Atlassian.Audit"));
}

#[test]
fn schema_check_lists_every_problem_with_path_and_line() {
    let bad = tmp(
        "bad.yml",
        "schema: Custom.Bad\nfields:\n  - name: a\n    type: object\n  - name: b\n    type: array\n    element:\n      type: strin\n",
    );
    let out = orgtrail(&["schema", "check", bad.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("the schema has 2 problem(s)"), "{err}");
    assert!(
        err.contains("line 3: field `a`: an `object` needs a non-empty `fields` list"),
        "{err}"
    );
    assert!(
        err.contains("line 8: field `b[]`: unknown type `strin`"),
        "{err}"
    );

    let broken = tmp("broken.yml", "schema: Custom.X\nfields: [\n");
    let out = orgtrail(&["schema", "check", broken.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("broken.yml"),
        "{}",
        text(&out.stderr)
    );

    let out = orgtrail(&["schema", "check", "/nonexistent/schema.yml"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/schema.yml"));
}

#[test]
fn parse_streams_rows_and_reports_failures_with_exit_1() {
    let input = std::fs::read_to_string(examples().join("atlassian-audit.jsonl")).unwrap();
    let out = orgtrail(&["parse", "--log-type", "Atlassian.Audit"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), input.lines().count());
    assert!(rows.iter().all(|r| r["p_log_type"] == "Atlassian.Audit"));

    let mixed = format!(
        "{}\n\n{{\"id\":\"x\"}}\nnot json\n",
        input.lines().next().unwrap()
    );
    let failures = tmp("failures.jsonl", "");
    let out = orgtrail(
        &[
            "parse",
            "--source-id",
            "S1",
            "--source-label",
            "My Atlassian",
            "--failures",
            failures.to_str().unwrap(),
        ],
        &mixed,
    );
    assert_eq!(out.status.code(), Some(1));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["p_source_id"], "S1");
    assert_eq!(rows[0]["p_source_label"], "My Atlassian");
    let fails: Vec<serde_json::Value> = std::fs::read_to_string(&failures)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(fails.len(), 2);
    assert_eq!(fails[0]["line"], 3);
    assert_eq!(fails[0]["payload"], "{\"id\":\"x\"}");
    assert_eq!(fails[0]["errors"].as_array().unwrap().len(), 3);
    assert_eq!(fails[1]["line"], 4);
    assert!(text(&out.stderr).contains("1 row(s), 2 failure(s), 1 blank line(s) skipped"));
}

#[test]
fn parse_with_a_custom_schema_and_rfc3339_times() {
    let schema = tmp(
        "foo.yml",
        "schema: Custom.Foo\nfields:\n  - name: ts\n    type: timestamp\n    timeFormat: unix\n    isEventTime: true\n  - name: host\n    type: string\n    indicators: [hostname]\n",
    );
    let input = tmp(
        "in.jsonl",
        "{\"ts\":1748853727.25,\"host\":\"10.1.1.1\"}\n{\"ts\":\"x\"}\n",
    );
    let out = orgtrail(
        &[
            "parse",
            "--schema",
            schema.to_str().unwrap(),
            "--log-type",
            "Custom.Foo",
            "--time-format",
            "rfc3339",
            input.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let row: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(row["ts"], "2025-06-02T08:42:07.25Z");
    assert_eq!(row["p_event_time"], "2025-06-02T08:42:07.25Z");
    assert_eq!(row["p_any_ip_addresses"], serde_json::json!(["10.1.1.1"]));
    let fail: serde_json::Value =
        serde_json::from_str(text(&out.stderr).lines().next().unwrap()).unwrap();
    assert_eq!(fail["line"], 2);
    assert!(fail["file"].as_str().unwrap().ends_with("in.jsonl"));
    assert_eq!(fail["errors"][0]["path"], "$.ts");

    let out = orgtrail(&["parse", "--log-type", "Custom.Missing"], "{}\n");
    assert_eq!(out.status.code(), Some(2));
    let out = orgtrail(&["parse", "/nonexistent.jsonl"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot open input /nonexistent.jsonl"));
}

#[test]
fn schema_test_runs_panther_test_files() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../orgtrail-schema/schemas/Atlassian.Audit_tests.yml");
    let out = orgtrail(&["schema", "test", tests.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).trim_end().ends_with(" passed, 0 failed"));

    let schema = tmp("t/foo.yml", "");
    std::fs::write(
        &schema,
        "schema: Custom.T\nfields:\n  - name: n\n    type: int\n",
    )
    .unwrap();
    std::fs::write(
        schema.with_file_name("foo_tests.yml"),
        "name: good\nlogType: Custom.T\ninput: '{\"n\":\"5\"}'\nresult: '{\"n\":5,\"p_log_type\":\"Custom.T\",\"p_row_id\":\"x\",\"p_parse_time\":\"x\"}'\n---\nname: wrong\nlogType: Custom.T\ninput: '{\"n\":6}'\nresult: '{\"n\":5,\"p_log_type\":\"Custom.T\"}'\n",
    )
    .unwrap();
    let out = orgtrail(
        &["schema", "test", "--schema", schema.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("PASS") && stdout.contains("FAIL"),
        "{stdout}"
    );
    assert!(stdout.contains("$.n: expected 5, got 6"), "{stdout}");
    assert!(stdout.trim_end().ends_with("1 passed, 1 failed"));
}

#[test]
fn paths_follow_the_global_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .args(["paths"])
        .env("ORGTRAIL_DATA_DIR", "/srv/orgtrail")
        .env_remove("ORGTRAIL_LAKE")
        .env_remove("ORGTRAIL_CONFIG")
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(s.contains("data dir: /srv/orgtrail"), "{s}");
    assert!(s.contains("lake:     /srv/orgtrail/lake"), "{s}");
    assert!(s.contains("config:   /srv/orgtrail/orgtrail.toml"), "{s}");
    let out = Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .args(["--lake", "s3://bucket/prefix", "paths"])
        .env("XDG_DATA_HOME", "/x")
        .env_remove("ORGTRAIL_DATA_DIR")
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(
        s.contains("data dir: /x/orgtrail") && s.contains("lake:     s3://bucket/prefix"),
        "{s}"
    );
}

#[test]
fn a_second_collector_on_the_same_data_directory_is_refused() {
    let dir = std::env::temp_dir().join(format!("orgtrail-cli-lock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data_dir = dir.to_str().unwrap();
    // Another `orgtrail run` holds the data directory (the lock is an advisory file lock).
    let run_once = [
        "--data-dir",
        data_dir,
        "run",
        "--once",
        "--metrics-listen",
        "none",
    ];
    let held = std::fs::File::create(dir.join("run.lock")).unwrap();
    held.lock().unwrap();
    let out = orgtrail(&run_once, "");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("another `orgtrail run` is already collecting") && err.contains(data_dir),
        "{err}"
    );
    // Once released, the next run gets past the lock (and stops on the next problem: no source).
    drop(held);
    let out = orgtrail(&run_once, "");
    let err = text(&out.stderr);
    assert!(!err.contains("already collecting"), "{err}");
    assert!(err.contains("no sources"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
