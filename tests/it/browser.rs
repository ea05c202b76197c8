//! A real browser for the inbox's tests: Debian's headless Chromium driven over WebDriver (chromedriver), a
//! fresh profile per test, nothing downloaded. Outside CI, where the packages may be absent, a test without them
//! says so loudly and passes; under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get install chromium chromium-driver";

pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    shot: usize,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

impl Browser {
    /// A browser, or `None` (said loudly) where Chromium is not installed outside CI.
    pub async fn start(test: &str) -> Option<Browser> {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        if !Path::new(&chromium).exists() || !Path::new(&driver).exists() {
            assert!(!in_ci(), "the browser tests need {chromium} and {driver}: {INSTALL}");
            eprintln!(
                "\n*** SKIPPED {test}: no Chromium at {chromium} or no chromedriver at {driver} ({INSTALL}) ***\n"
            );
            return None;
        }
        let port = free_port();
        let driver = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            // Not UTC, so that the page's local times can be told from the server's.
            .env("TZ", "Asia/Tokyo")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = within(30, "chromedriver answers", async {
            loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => return client,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await;
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("inbox").join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            client,
            _driver: driver,
            _profile: profile,
            shots,
            shot: 0,
        })
    }

    /// A screenshot of the page, numbered in the order taken, in the test's output folder.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        self.shot += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.shot));
        std::fs::write(&path, self.client.screenshot().await.unwrap()).unwrap();
        path
    }

    /// Waits for an element (the page's own scripts may still be updating it).
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within 20 s: {e}"))
    }

    /// Waits until an element with this text is on the page.
    pub async fn wait_for_text(&self, text: &str) -> fantoccini::elements::Element {
        let xpath = format!(
            "//*[contains(normalize-space(.), {})][not(*[contains(normalize-space(.), {})])]",
            xpath_literal(text),
            xpath_literal(text)
        );
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no {text:?} on the page within 20 s: {e}"))
    }

    /// axe-core's serious and critical violations on the page ("" when none). axe-core comes from the npm
    /// registry (`.ci/run` installs it); outside CI without it, the check is skipped loudly.
    pub async fn accessibility_violations(&self) -> Option<String> {
        let axe = std::env::var("OTA_RELAY_AXE").map(PathBuf::from).unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/node/node_modules/axe-core/axe.min.js")
        });
        let Ok(source) = std::fs::read_to_string(&axe) else {
            assert!(!in_ci(), "the accessibility check needs axe-core at {}", axe.display());
            eprintln!(
                "\n*** SKIPPED the accessibility check: no axe-core at {} (npm install --prefix .ci/node axe-core@4) ***\n",
                axe.display()
            );
            return None;
        };
        self.client.execute(&source, vec![]).await.expect("axe-core loads");
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(
                     r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                       .map(v => v.id + ': ' + v.help + ' (' + v.nodes.length + ')')));",
                vec![],
            )
            .await
            .expect("axe-core runs");
        let found: Vec<String> = serde_json::from_value(result).unwrap_or_default();
        Some(found.join("; "))
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else {
        format!("\"{text}\"")
    }
}
