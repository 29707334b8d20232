//! The warehouse page as a person sees it: its forms to fill in and submit, the quantities and
//! error messages to read, found by the ids and classes the page promises (`create-product`,
//! `product-{sku}`, `quantity`, `increase`, `decrease`, `error`; `lag` with `position` and
//! `head`).

use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};

/// How long a page in persisted-async mode may take to show a command's effect. The read
/// model catches up in milliseconds; this allows for a loaded machine.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);

/// How long the page that follows a submitted form may take to replace it. A page loads in
/// milliseconds; this allows for a loaded machine.
const PAGE_LOAD_BOUND: Duration = Duration::from_secs(30);

/// The warehouse page at `url`, in a browser session.
pub(crate) struct WarehousePage {
    client: Client,
    url: String,
}

impl WarehousePage {
    /// Opens the page.
    pub(crate) async fn open(client: Client, url: &str) -> Result<Self, CmdError> {
        client.goto(url).await?;
        Ok(Self {
            client,
            url: url.to_owned(),
        })
    }

    /// Loads the page again, as a person pressing reload.
    pub(crate) async fn reload(&self) -> Result<(), CmdError> {
        self.client.goto(&self.url).await
    }

    /// Adds a product with the add-product form.
    pub(crate) async fn add_product(&self, sku: &str, name: &str) -> Result<(), CmdError> {
        let form = self.client.find(Locator::Id("create-product")).await?;
        fill(&form, "sku", sku).await?;
        fill(&form, "name", name).await?;
        self.submit(&form).await
    }

    /// Receives `quantity` units of `sku` with its row's increase form.
    pub(crate) async fn receive(&self, sku: &str, quantity: u64) -> Result<(), CmdError> {
        self.change(sku, "increase", quantity).await
    }

    /// Ships `quantity` units of `sku` with its row's decrease form.
    pub(crate) async fn ship(&self, sku: &str, quantity: u64) -> Result<(), CmdError> {
        self.change(sku, "decrease", quantity).await
    }

    async fn change(&self, sku: &str, form: &str, quantity: u64) -> Result<(), CmdError> {
        let form = self
            .row(sku)
            .await?
            .find(Locator::Css(&format!("form.{form}")))
            .await?;
        fill(&form, "quantity", &quantity.to_string()).await?;
        self.submit(&form).await
    }

    /// The quantity the page shows for `sku`.
    pub(crate) async fn quantity(&self, sku: &str) -> Result<u64, CmdError> {
        let text = self
            .row(sku)
            .await?
            .find(Locator::Css(".quantity"))
            .await?
            .text()
            .await?;
        Ok(text.trim().parse().unwrap_or_else(|_| {
            panic!("the page shows {text:?} as the quantity of {sku}, not a number")
        }))
    }

    /// Reloads the page until it shows `expected` for `sku` (persisted-async mode, where the
    /// list may lag behind a command), within [`CONVERGENCE_BOUND`]; gives the last quantity
    /// seen.
    pub(crate) async fn quantity_once_caught_up(
        &self,
        sku: &str,
        expected: u64,
    ) -> Result<u64, CmdError> {
        let deadline = Instant::now() + CONVERGENCE_BOUND;
        loop {
            match self.quantity(sku).await {
                Ok(quantity) if quantity == expected || Instant::now() > deadline => {
                    return Ok(quantity);
                }
                Err(error) if Instant::now() > deadline => return Err(error),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A reload can meet the page still loading on a busy machine: tried again, until
            // the bound.
            if let Err(error) = self.reload().await
                && Instant::now() > deadline
            {
                return Err(error);
            }
        }
    }

    /// The texts of the page's error messages (elements of class `error`), empty ones left out.
    pub(crate) async fn errors(&self) -> Result<Vec<String>, CmdError> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(".error")).await? {
            let text = element.text().await?;
            if !text.trim().is_empty() {
                texts.push(text.trim().to_owned());
            }
        }
        Ok(texts)
    }

    /// How far the product list has got, as the page says (element `lag`, mode
    /// `persisted-async`): the position of the last event it has seen and the store's head.
    pub(crate) async fn lag(&self) -> Result<(u64, u64), CmdError> {
        let lag = self.client.find(Locator::Id("lag")).await?;
        let number = async |class: &str| -> Result<u64, CmdError> {
            let text = lag.find(Locator::Css(class)).await?.text().await?;
            Ok(text.trim().parse().unwrap_or_else(|_| {
                panic!("the page shows {text:?} as the list's {class}, not a number")
            }))
        };
        Ok((number(".position").await?, number(".head").await?))
    }

    /// Clicks the form's submit button and waits until the page that follows has replaced
    /// this one (chromedriver's click returns once the click is dispatched, before a form's
    /// navigation), within [`PAGE_LOAD_BOUND`].
    async fn submit(&self, form: &Element) -> Result<(), CmdError> {
        let this_page = self.client.find(Locator::Css("html")).await?;
        form.find(Locator::Css("button, input[type=\"submit\"]"))
            .await?
            .click()
            .await?;
        let deadline = Instant::now() + PAGE_LOAD_BOUND;
        loop {
            match this_page.tag_name().await {
                Err(error) if is_gone(&error) => return Ok(()),
                Err(error) => return Err(error),
                Ok(_) if Instant::now() > deadline => return Err(CmdError::WaitTimeout),
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The product's row; an attribute selector, so any SKU is matched exactly.
    async fn row(&self, sku: &str) -> Result<Element, CmdError> {
        let id = format!("product-{sku}");
        self.client
            .find(Locator::Css(&format!(
                "[id=\"{}\"]",
                id.replace('"', "\\\"")
            )))
            .await
    }
}

/// Whether `error` says the element's page was replaced: a stale reference, or, when the
/// question meets the document being swapped, Chromium's "does not belong to the document".
fn is_gone(error: &CmdError) -> bool {
    error.is_stale_element_reference()
        || error
            .to_string()
            .contains("does not belong to the document")
}

/// Types `value` into the form's input `name`, as a person would, after clearing it.
async fn fill(form: &Element, name: &str, value: &str) -> Result<(), CmdError> {
    let input = form
        .find(Locator::Css(&format!("input[name=\"{name}\"]")))
        .await?;
    input.clear().await?;
    input.send_keys(value).await
}
