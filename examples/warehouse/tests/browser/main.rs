//! The warehouse in a real browser: headless Chromium, driven over WebDriver, adds products,
//! receives and ships stock through the page's forms, reads the quantities off the page, and
//! sees the refusal when shipping more than there is. Each test saves a screenshot of the page
//! it ended on under `target/tmp/` and prints its path.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver`: `cargo xtask test`
//! installs them and starts chromedriver (see `session`). Without them the tests fail, saying
//! so; they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod app;
// The launcher `cargo xtask test` starts chromedriver with: one copy, std only.
#[path = "../../../../xtask/src/browser/chromedriver.rs"]
mod chromedriver;
mod page;
mod session;

use page::WarehousePage;
use warehouse::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adds_receives_and_ships_products_in_persisted_sync_mode_on_sqlite() {
    let app = app::start(Mode::PersistedSync).await;
    let url = app.url();
    session::with_browser("warehouse-browser.png", |client| async move {
        let page = WarehousePage::open(client, &url).await.unwrap();

        page.add_product("BOLT-8", "Hex bolt M8").await.unwrap();
        assert_eq!(page.quantity("BOLT-8").await.unwrap(), 0);
        page.receive("BOLT-8", 10).await.unwrap();
        assert_eq!(page.quantity("BOLT-8").await.unwrap(), 10);
        page.receive("BOLT-8", 5).await.unwrap();
        assert_eq!(page.quantity("BOLT-8").await.unwrap(), 15);
        page.ship("BOLT-8", 4).await.unwrap();
        assert_eq!(page.quantity("BOLT-8").await.unwrap(), 11);

        page.add_product("NUT-8", "Hex nut M8").await.unwrap();
        page.receive("NUT-8", 3).await.unwrap();
        assert_eq!(page.quantity("NUT-8").await.unwrap(), 3);
        assert_eq!(page.quantity("BOLT-8").await.unwrap(), 11);
        assert_eq!(page.errors().await.unwrap(), Vec::<String>::new());

        page.ship("BOLT-8", 12).await.unwrap();
        let errors = page.errors().await.unwrap();
        assert!(
            errors.iter().any(|e| e.contains("insufficient quantity")),
            "shipping 12 of 11 shows no refusal; errors on the page: {errors:?}"
        );
        assert_eq!(page.quantity("BOLT-8").await.unwrap(), 11);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_the_list_catch_up_in_persisted_async_mode_on_sqlite() {
    let app = app::start(Mode::PersistedAsync).await;
    let url = app.url();
    session::with_browser("warehouse-browser-async.png", |client| async move {
        let page = WarehousePage::open(client, &url).await.unwrap();
        assert_eq!(page.lag().await.unwrap(), (0, 0));

        // The list may lag behind each command's response: the page is reloaded until it shows
        // what the commands did.
        page.add_product("BOLT-8", "Hex bolt M8").await.unwrap();
        assert_eq!(page.quantity_once_caught_up("BOLT-8", 0).await.unwrap(), 0);
        page.receive("BOLT-8", 10).await.unwrap();
        assert_eq!(
            page.quantity_once_caught_up("BOLT-8", 10).await.unwrap(),
            10
        );
        page.ship("BOLT-8", 4).await.unwrap();
        assert_eq!(page.quantity_once_caught_up("BOLT-8", 6).await.unwrap(), 6);

        // The refusal comes from the product itself, never from the lagging list.
        page.ship("BOLT-8", 7).await.unwrap();
        let errors = page.errors().await.unwrap();
        assert!(
            errors.iter().any(|e| e.contains("insufficient quantity")),
            "shipping 7 of 6 shows no refusal; errors on the page: {errors:?}"
        );
        assert_eq!(page.quantity_once_caught_up("BOLT-8", 6).await.unwrap(), 6);
        // Three events were written; the list has seen them all.
        let (position, head) = page.lag().await.unwrap();
        assert_eq!(position, head, "the list caught up with the store");
        assert!(head >= 3, "three events, yet the store's head is {head}");
    })
    .await;
}
