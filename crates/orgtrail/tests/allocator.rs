//! The binary allocates with jemalloc, configured by the `malloc_conf` symbol in `main.rs` (one
//! arena, thread caches up to 1 KiB). jemalloc ignores a symbol of another name without a word, so
//! a renamed symbol or a prefixed build would silently bring back its defaults (about 1.5x the
//! collector's peak RSS).

#[cfg(not(target_env = "msvc"))]
#[test]
fn the_binary_runs_on_jemalloc_with_its_own_options() {
    // `stats_print` (added by the environment, which jemalloc reads after `malloc_conf`) prints
    // the options in effect as JSON on stderr when the process exits.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orgtrail"))
        .arg("paths")
        .env("MALLOC_CONF", "stats_print:true,stats_print_opts:J")
        .output()
        .expect("orgtrail runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let start = stderr
        .find("{\"jemalloc\"")
        .unwrap_or_else(|| panic!("no jemalloc statistics on stderr: {stderr}"));
    let mut stats = serde_json::Deserializer::from_str(&stderr[start..]).into_iter();
    let stats: serde_json::Value = stats.next().unwrap().unwrap();
    let opt = &stats["jemalloc"]["opt"];
    assert_eq!(opt["narenas"], 1, "{opt}");
    assert_eq!(opt["tcache_max"], 1024, "{opt}");
}
