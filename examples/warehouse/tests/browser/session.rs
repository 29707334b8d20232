//! A headless Chromium session over WebDriver, on the loopback interface only.
//!
//! The WebDriver server is the chromedriver `cargo xtask test` started (its URL in
//! `SWITCHYARD_WEBDRIVER_URL`), else one this test binary starts if chromedriver is installed,
//! shared by its tests and stopped when the binary exits. Neither available fails the test with
//! what to do: a browser test never skips.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::chromedriver::{self, Chromedriver};

/// Chromium's flags: headless; no sandbox, which needs a user namespace that root in a
/// container does not get; `/tmp` rather than a small `/dev/shm`; and no traffic beyond
/// loopback: every address but the loopback ones (which Chromium never proxies) goes to a
/// proxy on the discard port, where nothing listens, and the background services that would
/// call home are off.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1100,800",
    "--proxy-server=http://127.0.0.1:9",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
];

/// The WebDriver server's URL: the one `cargo xtask test` gave, else this binary's own
/// chromedriver, started on the first call.
fn webdriver_url() -> String {
    static OWN: OnceLock<Result<Chromedriver, String>> = OnceLock::new();
    if let Ok(url) = std::env::var(chromedriver::URL_VARIABLE)
        && !url.trim().is_empty()
    {
        return url;
    }
    let own = OWN.get_or_init(|| Chromedriver::start().map_err(|error| error.to_string()));
    match own {
        Ok(driver) => driver.url().to_owned(),
        Err(error) => panic!(
            "no WebDriver server for the browser test: {} is unset and {error}. Run `cargo \
             xtask test`, which installs Chromium and chromedriver and starts one, or `apt-get \
             install chromium chromium-driver`",
            chromedriver::URL_VARIABLE
        ),
    }
}

/// Opens a headless Chromium session.
///
/// # Panics
///
/// When no WebDriver server is available or Chromium does not start: the message says which.
pub(crate) async fn open() -> Client {
    let url = webdriver_url();
    let mut capabilities = Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": CHROMIUM_ARGS }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "headless Chromium did not start through chromedriver at {url}: {error}. Is \
                 Debian's `chromium` installed and does `chromium --headless --no-sandbox \
                 --dump-dom about:blank` run?"
            )
        })
}

/// Runs `scenario` with a fresh session, then saves a screenshot of the page it ended on as
/// `name` under the target directory (printing its path) and closes the session, whether the
/// scenario passed or not; a failed scenario fails the test after that.
pub(crate) async fn with_browser<F, Fut>(name: &str, scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = open().await;
    // On a task of its own, so a failed assertion still lets the screenshot and the close run.
    let outcome = tokio::spawn(scenario(client.clone())).await;
    let screenshot = client.screenshot().await;
    let closed = client.close().await;
    match screenshot {
        Ok(png) => {
            let path = screenshot_path(name);
            std::fs::write(&path, png).expect("the screenshot file");
            println!("browser screenshot: {}", path.display());
        }
        Err(error) => eprintln!("no screenshot: {error}"),
    }
    if let Err(failed) = outcome {
        std::panic::resume_unwind(failed.into_panic());
    }
    closed.expect("closing the browser session");
}

/// Where a screenshot goes: cargo's scratch directory for integration tests, under `target/`.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}
