//! The README's first command, `cargo run --release -- demo` at the workspace root, only works while
//! the workspace has one binary: with two, cargo cannot tell which one to run.

#[test]
fn the_workspace_has_one_binary_for_cargo_run() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bins: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    bins.sort();
    assert_eq!(
        bins,
        ["orgtrail"],
        "`cargo run --release -- demo` needs exactly one binary in the workspace"
    );
}
