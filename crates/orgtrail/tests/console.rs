//! The web console end to end, in a real headless Chromium driven over WebDriver (fantoccini):
//! first-run password, login, onboarding a source against the simulator through the screens of the
//! seed (with a failed verification first), events in the Data Explorer, a quick search, a drop-off
//! alarm, and the API key in no page. Screenshots of every step at 1280 and 390 px wide go to
//! `<target>/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs them).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{BIN, Killed, free_port};
use fantoccini::{Client, ClientBuilder, Locator};

const ORG: &str = "0b5f6a52-4a8e-4c1e-9a43-3c2d1e0f9a77";
/// Long and unusual, so finding it anywhere is a leak.
const KEY: &str = "ATCTT3xFfGN0-console-e2e-secret-key-7Q9zK2mW4pL6";
const WRONG_KEY: &str = "ATCTT3xFfGN0-wrong-key-never-shown-R8vB1nC3";
const PASSWORD: &str = "correct horse battery staple";
const SOURCE: &str = "My Atlassian Event logs";
/// Generous bound for anything to happen; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Browser {
    c: Client,
    base: String,
    shots: PathBuf,
    /// Every page source seen, to search for the key at the end.
    sources: Vec<(String, String)>,
}

impl Browser {
    async fn goto(&mut self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self.c.current_url().await.map(|u| u.to_string());
                let page = self.c.source().await.unwrap_or_default();
                panic!("no element {css} ({e}) at {url:?}:\n{page}")
            }
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Waits until the page shows `text` (after a form post navigates).
    async fn wait_text(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let page = self.c.source().await.unwrap_or_default();
            if page.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {text:?}:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn click_link(&self, text: &str) {
        self.c
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("no link {text:?}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn source(&mut self, step: &str) -> String {
        let s = self.c.source().await.unwrap();
        self.sources.push((step.to_owned(), s.clone()));
        s
    }

    /// Records the page and saves its screenshots at 1280 and 390 px wide.
    async fn step(&mut self, name: &str) -> String {
        let source = self.source(name).await;
        for (w, h) in [(1280u32, 1000u32), (390, 844)] {
            // The whole page: grow the window to the page's height (at most 6000 px).
            self.c.set_window_size(w, h).await.unwrap();
            let full = self
                .c
                .execute("return document.documentElement.scrollHeight", vec![])
                .await
                .unwrap()
                .as_u64()
                .map_or(h, |v| u32::try_from(v).unwrap_or(h).clamp(h, 6000));
            self.c.set_window_size(w, full).await.unwrap();
            let png = self.c.screenshot().await.unwrap();
            std::fs::write(self.shots.join(format!("{name}-{w}.png")), png).unwrap();
        }
        self.c.set_window_size(1280, 1000).await.unwrap();
        source
    }
}

/// Reads the daemon's stderr until `pred` matches a line.
fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
            Err(_) => panic!(
                "orgtrail run did not print the expected line; it printed:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[test]
fn console_onboards_a_source_in_chromium() {
    let Some(driver) = find_program(&["chromedriver"]) else {
        panic!(
            "chromedriver is missing: install Debian's chromium and chromium-driver (scripts/test does)"
        );
    };
    let chromium = find_program(&["chromium", "chromium-browser"])
        .expect("chromium is missing: install Debian's chromium (scripts/test does)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The simulator, in process, with live events.
        let mut cfg = orgtrail_sim::SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            orgs: vec![orgtrail_sim::OrgConfig::new(ORG, KEY)],
            events: 400,
            live_rate: Some(orgtrail_sim::LiveRate { per_second: 2.0 }),
            ..orgtrail_sim::SimConfig::default()
        };
        cfg.rate_limits.enabled = false;
        let sim = orgtrail_sim::start(cfg).await.unwrap();

        // The daemon with its console, on a free port.
        let data = tempfile::tempdir().unwrap();
        let mut run = Command::new(BIN)
            .arg("--data-dir")
            .arg(data.path())
            .args(["run", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = run.stderr.take().unwrap();
        let run = Killed(run);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let console = wait_line(&rx, &mut seen, |l| l.starts_with("console: "));
        let base = console["console: ".len()..].trim().trim_end_matches('/').to_owned();
        let first_run = wait_line(&rx, &mut seen, |l| l.starts_with("first run: "));
        let code = first_run
            .split("setup code ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("the setup code")
            .to_owned();

        // chromedriver and a headless Chromium.
        let port = free_port();
        let _driver = Killed(
            Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--hide-scrollbars", "--force-device-scale-factor=1"],
            }),
        );
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start Chromium through chromedriver: {e}"),
            }
        };
        let mut b = Browser {
            c: client,
            base,
            shots: screenshots_dir(),
            sources: Vec::new(),
        };

        // 1. First run: the setup code from the terminal, then the admin password.
        b.goto("/sources").await;
        b.find("#code").await;
        b.step("01-first-run-setup").await;
        b.fill("#code", &code).await;
        b.fill("#password", PASSWORD).await;
        b.fill("#confirm", PASSWORD).await;
        b.click("main button[type=submit]").await;
        b.find("a.button.primary[href='/sources/new']").await;
        let page = b.step("02-log-sources-empty").await;
        assert!(page.contains("No log sources yet"));

        // 2. Sign out, then log in with a wrong and the right password.
        b.click("form.logout button").await;
        b.find("#password").await;
        b.fill("#password", "not the password").await;
        b.click("main button[type=submit]").await;
        b.find(".alert.error").await;
        let page = b.step("03-login-wrong-password").await;
        assert!(page.contains("Wrong password"));
        b.fill("#password", PASSWORD).await;
        b.click("main button[type=submit]").await;
        b.find("a.button.primary[href='/sources/new']").await;

        // 3. Create New → Atlassian → Start Source Setup → name → Continue Setup.
        b.click_link("Create New").await;
        b.find(".tile").await;
        b.step("04-create-new").await;
        b.click_link("Start Source Setup").await;
        b.fill("#name", SOURCE).await;
        b.step("05-name").await;
        b.click("main button[type=submit]").await;
        b.find("#org_id").await;
        b.step("06-credentials").await;

        // 4. Credentials with a wrong key: the failure is explained, and what was typed is kept
        //    except the key.
        b.fill("#org_id", ORG).await;
        b.fill("#api_key", WRONG_KEY).await;
        b.click("details summary").await;
        b.fill("#base_url", sim.base_url()).await;
        b.c.execute(
            "document.getElementById('key_expires_at').value = '2027-12-31'",
            vec![],
        )
        .await
        .unwrap();
        b.click("#credentials button[type=submit]").await;
        b.find(".alert.error").await;
        let page = b.step("07-verification-failed").await;
        assert!(page.contains("rejected the API key"), "{page}");
        assert_eq!(b.value("#org_id").await, ORG);
        assert_eq!(b.value("#base_url").await, sim.base_url());
        assert_eq!(b.value("#key_expires_at").await, "2027-12-31");
        assert_eq!(b.value("#api_key").await, "", "the key is never sent back");

        // 5. The right key → confirmation (no alarm yet) → Finish Setup.
        b.fill("#api_key", KEY).await;
        b.click("#credentials button[type=submit]").await;
        b.find("#finish").await;
        let page = b.step("08-confirm").await;
        assert!(page.contains("The credentials were verified"));
        assert!(page.contains(&KEY[KEY.len() - 4..]), "the last four characters are shown");
        b.click("#finish button[type=submit]").await;
        b.find("#events-in-lake").await;
        let page = b.step("09-source-detail").await;
        assert!(page.contains("collection has started"));
        let mut detail_url = b.c.current_url().await.unwrap();
        detail_url.set_query(None);

        // 6. Events reach the Data Explorer.
        let deadline = Instant::now() + PATIENCE;
        loop {
            b.goto("/explorer?sql=SELECT%20count(*)%20AS%20n%20FROM%20atlassian_audit").await;
            let n: u64 = b
                .find("#results tbody td")
                .await
                .text()
                .await
                .unwrap()
                .trim()
                .parse()
                .unwrap_or(0);
            if n > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no events reached the lake");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        b.click_link("Events by action").await;
        b.find("#results").await;
        let page = b.step("10-data-explorer").await;
        assert!(page.contains("Download CSV"));
        let rows: usize = b
            .find("#row-count")
            .await
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert!(rows > 0);

        // 7. Quick search for an IP address seen in the data.
        b.goto("/explorer?sql=SELECT%20p_any_ip_addresses%5B1%5D%20AS%20ip%20FROM%20atlassian_audit%20WHERE%20p_any_ip_addresses%20IS%20NOT%20NULL%20LIMIT%201").await;
        let ip = b.find("#results tbody td").await.text().await.unwrap();
        b.goto("/explorer").await;
        b.fill("#q", ip.trim()).await;
        b.click("form.search button").await;
        b.find("#results").await;
        let page = b.step("11-quick-search").await;
        assert!(page.contains(ip.trim()));
        let hits: usize = b.find("#row-count").await.text().await.unwrap().parse().unwrap();
        assert!(hits > 0, "the quick search finds the event with {ip}");

        // 8. A drop-off alarm on the source.
        b.c.goto(detail_url.as_str()).await.unwrap();
        b.find("#alarm").await;
        b.click("#alarm_enabled").await;
        b.fill("#alarm_value", "2").await;
        b.find("#alarm_unit")
            .await
            .select_by_value("hours")
            .await
            .unwrap();
        b.click("#alarm button[type=submit]").await;
        b.wait_text("The drop-off alarm was saved").await;
        let page = b.step("12-drop-off-alarm").await;
        assert!(page.contains("The drop-off alarm was saved"));
        // Until the monitor has seen events arrive after the alarm was set, Panther's state is
        // INSUFFICIENT_DATA; then OK (events keep arriving well within 2 hours).
        assert!(
            page.contains("Drop-off: INSUFFICIENT_DATA") || page.contains("Drop-off: OK"),
            "the new alarm is shown with its state"
        );

        // 9. The list and System Errors.
        b.goto("/sources").await;
        b.find("#sources").await;
        let page = b.step("13-log-sources").await;
        // The key works; the simulator's deliberately malformed events (about 1 % lack `links`)
        // raise the classification-failures alarm, which is a real transition to show.
        assert!(
            page.contains(SOURCE) && page.contains("SOURCE_PERMISSIONS_CHECKS: OK"),
            "{page}"
        );
        b.goto("/system-errors").await;
        b.find("h1").await;
        let page = b.step("14-system-errors").await;
        assert!(page.contains("SOURCE_CLASSIFICATION_FAILURES"), "{page}");

        // The API key, and the wrong one, are in no page the browser saw.
        for (step, source) in &b.sources {
            assert!(!source.contains(KEY), "the API key is in the page of step {step}");
            assert!(!source.contains(WRONG_KEY), "the typed key is in the page of step {step}");
        }
        b.c.close().await.unwrap();
        drop(run);
        let _ = sim.shutdown().await;
    });
}
