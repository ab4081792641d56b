//! `/console/rail/stores/{store}`: one store, its items and their stock,
//! adding and removing items, its staff token, deleting it.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use relayhub_core::console::{Form, Markup, Page, PageError, Viewer, html, time_ago};
use relayhub_core::ids::LicensePk;
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

use super::stores::{delete_form, type_name};
use super::view::{PAGE_SIZE, described_fields, last_page, money, number, pager, path_id, shown_once};
use super::{ListQuery, Query, Refusal};
use crate::Rail;
use crate::api::store::ItemRequest;
use crate::model::{Item, Store};

pub(super) fn routes() -> Router<Rail> {
    Router::new()
        .route("/console/rail/stores/{store}", get(show))
        .route("/console/rail/stores/{store}/items", post(add_item))
        .route("/console/rail/stores/{store}/items/{item}/stock", post(set_stock))
        .route("/console/rail/stores/{store}/items/{item}/delete", post(remove_item))
        .route("/console/rail/stores/{store}/token", post(issue_token))
}

/// The form that adds an item (kept when refused, to correct it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ItemForm {
    name: String,
    description: String,
    price_penny: String,
    balance: String,
    category: String,
    logo_url: String,
}

/// A row's stock form: the new balance, and the page to go back to.
#[derive(Debug, Deserialize)]
struct StockForm {
    balance: String,
    page: Option<u32>,
}

/// A row's remove form: the page to go back to.
#[derive(Debug, Deserialize)]
struct BackForm {
    page: Option<u32>,
}

/// Which form a refusal belongs beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Items,
    NewItem,
}

/// The license's store (deleted ones are gone): another license's is
/// "not found", like one that never was.
async fn store_of(rail: &Rail, viewer: &Viewer, raw: &str) -> Result<(LicensePk, Store), PageError> {
    let license = rail.console_license(viewer).await?;
    let id = path_id(raw, "store")?;
    let store = rail.shops.store(license, id).await?.ok_or_else(|| PageError::not_found("store"))?;
    Ok((license, store))
}

fn back(store: Uuid, page: u32) -> Redirect {
    Redirect::to(&format!("/console/rail/stores/{store}?page={page}"))
}

async fn show(
    State(rail): State<Rail>,
    viewer: Viewer,
    Path(store): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Page, PageError> {
    let (license, store) = store_of(&rail, &viewer, &store).await?;
    page(&rail, &viewer, license, &store, query.request()?, &ItemForm::default(), None).await
}

async fn page(
    rail: &Rail,
    viewer: &Viewer,
    license: LicensePk,
    store: &Store,
    request: PageRequest,
    draft: &ItemForm,
    refused: Option<(At, &Refusal)>,
) -> Result<Page, PageError> {
    let items = rail.shops.items(license, Some(store.id), request).await?;
    let refusal = |at: At| refused.filter(|(place, _)| *place == at).map(|(_, refusal)| refusal);
    Ok(viewer.page(
        &store.name,
        html! {
            p { a href="/console/rail" { "Rail" } " › " a href="/console/rail/stores" { "Stores" } " › " (store.name) }
            dl.facts {
                dt { "Type" } dd { (type_name(store.store_type)) }
                dt { "Description" } dd { (store.description) }
                dt { "Logo URL" } dd { (store.logo_url) }
                dt { "Opened" } dd { (time_ago(Some(store.created_at))) }
                dt { "Id" } dd { code { (store.id) } }
            }
            h2 id="items" { "Items" }
            @if let Some(refusal) = refusal(At::Items) { (refusal.alert("items-error")) }
            @if items.items.is_empty() {
                p.muted { "No items on this page." }
            } @else {
                div.table-wrap {
                    table {
                        caption.muted { "Items for sale, oldest first" }
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Category" } th.num scope="col" { "Price" }
                            th scope="col" { "Stock" } th scope="col" { "Remove" }
                        } }
                        tbody { @for item in &items.items { (row(viewer, item, request.page)) } }
                    }
                }
            }
            (pager(&format!("/console/rail/stores/{}", store.id), "", request, items.total, "items"))
            h2 id="new-item-heading" { "Add an item" }
            (item_form(viewer, store.id, draft, refusal(At::NewItem)))
            h2 { "Staff token" }
            p { "The store's staff sign in with a token (or with a key registered through the API). "
                "A new token replaces the previous one." }
            form.inline method="post" action={ "/console/rail/stores/" (store.id) "/token" }
                data-confirm="Issue a new staff token? The current one stops working." {
                (viewer.csrf_field())
                button.secondary type="submit" { "Issue staff token" }
            }
            h2 { "Delete the store" }
            p { "Its items disappear from sale; its purchases and tasks are kept." }
            (delete_form(viewer, store, "Delete store"))
        },
    ))
}

fn row(viewer: &Viewer, item: &Item, page: u32) -> Markup {
    let base = format!("/console/rail/stores/{}/items/{}", item.store_id, item.id);
    let input = format!("stock-{}", item.id);
    html! {
        tr {
            td { (item.name) @if !item.description.is_empty() { br; span.muted { (item.description) } } }
            td { (item.category) }
            td.num { (money(item.price_penny)) }
            td {
                form.rail-row method="post" action={ (base) "/stock" } {
                    (viewer.csrf_field())
                    input type="hidden" name="page" value=(page);
                    label.rail-hidden for=(input) { "Stock of " (item.name) }
                    input id=(input) type="number" name="balance" min="0" max="2147483647" required value=(item.balance);
                    button.secondary type="submit" { "Set stock" }
                }
            }
            td {
                form.inline method="post" action={ (base) "/delete" }
                    data-confirm={ "Remove " (item.name) " from sale? Purchases of it keep it." } {
                    (viewer.csrf_field())
                    input type="hidden" name="page" value=(page);
                    button.secondary type="submit" aria-label={ "Remove " (item.name) } { "Remove" }
                }
            }
        }
    }
}

fn item_form(viewer: &Viewer, store: Uuid, draft: &ItemForm, refusal: Option<&Refusal>) -> Markup {
    let described = refusal.map(|_| "new-item-error");
    let balance = if draft.balance.is_empty() { "0" } else { &draft.balance };
    html! {
        @if let Some(refusal) = refusal { (refusal.alert("new-item-error")) }
        form.stack id="new-item" method="post" action={ "/console/rail/stores/" (store) "/items" }
            aria-labelledby="new-item-heading" {
            (viewer.csrf_field())
            div {
                label for="item-name" { "Name" }
                input #item-name name="name" required maxlength="100" value=(draft.name) aria-describedby=[described];
            }
            div {
                label for="item-price" { "Price, in pennies" }
                input #item-price type="number" name="price_penny" min="0" max="2147483647" required value=(draft.price_penny);
            }
            div {
                label for="item-balance" { "Stock, in units" }
                input #item-balance type="number" name="balance" min="0" max="2147483647" required value=(balance);
            }
            div {
                label for="item-category" { "Category (optional)" }
                input #item-category name="category" maxlength="100" value=(draft.category);
            }
            (described_fields("item", &draft.description, &draft.logo_url))
            button type="submit" { "Add item" }
        }
    }
}

async fn add_item(
    State(rail): State<Rail>,
    viewer: Viewer,
    Path(store): Path<String>,
    Form(draft): Form<ItemForm>,
) -> Result<Response, PageError> {
    let (license, store) = store_of(&rail, &viewer, &store).await?;
    let added = async {
        let request = ItemRequest {
            store_id: Some(store.id),
            name: draft.name.clone(),
            description: draft.description.clone(),
            price_penny: number("price_penny", &draft.price_penny)?,
            balance: number("balance", &draft.balance)?,
            category: draft.category.clone(),
            logo_url: draft.logo_url.clone(),
        };
        rail.add_item_to(license, store.id, request).await
    };
    match added.await {
        Ok(_) => {
            // The new item is the newest: on the last page.
            let total = rail.shops.items(license, Some(store.id), PageRequest { page: 1, size: 1 }).await?.total;
            Ok(back(store.id, last_page(total, PAGE_SIZE)).into_response())
        }
        Err(err) => {
            let refusal = Refusal::from(err);
            let request = PageRequest { page: 1, size: PAGE_SIZE };
            let page = page(&rail, &viewer, license, &store, request, &draft, Some((At::NewItem, &refusal))).await?;
            Ok(refusal.answer(page))
        }
    }
}

async fn set_stock(
    State(rail): State<Rail>,
    viewer: Viewer,
    Path((store, item)): Path<(String, String)>,
    Form(form): Form<StockForm>,
) -> Result<Response, PageError> {
    let (license, store) = store_of(&rail, &viewer, &store).await?;
    let item = path_id(&item, "item")?;
    let request = ListQuery { page: form.page }.request()?;
    let set = match number("balance", &form.balance) {
        Ok(balance) => rail.set_item_balance(license, Some(store.id), item, balance).await,
        Err(err) => Err(err),
    };
    match set {
        Ok(_) => Ok(back(store.id, request.page).into_response()),
        Err(err) if err.error.status() == axum::http::StatusCode::NOT_FOUND => Err(PageError::not_found("item")),
        Err(err) => {
            let refusal = Refusal::from(err);
            let draft = ItemForm::default();
            let page = page(&rail, &viewer, license, &store, request, &draft, Some((At::Items, &refusal))).await?;
            Ok(refusal.answer(page))
        }
    }
}

async fn remove_item(
    State(rail): State<Rail>,
    viewer: Viewer,
    Path((store, item)): Path<(String, String)>,
    Form(form): Form<BackForm>,
) -> Result<Redirect, PageError> {
    let (license, store) = store_of(&rail, &viewer, &store).await?;
    let item = path_id(&item, "item")?;
    let request = ListQuery { page: form.page }.request()?;
    rail.shops.delete_item(license, Some(store.id), item, Timestamp::now()).await?;
    Ok(back(store.id, request.page))
}

async fn issue_token(State(rail): State<Rail>, viewer: Viewer, Path(store): Path<String>) -> Result<Page, PageError> {
    let (license, store) = store_of(&rail, &viewer, &store).await?;
    let token = rail.issue_store_token(license, store.id).await?;
    Ok(viewer.page(
        &format!("Staff token for {}", store.name),
        html! {
            (shown_once("staff token", &token.token))
            p { "The store's staff send it as " code { "Authorization: Bearer …" } " to " code { "/store_api/store/…" } "." }
            p { a href={ "/console/rail/stores/" (store.id) } { "Back to " (store.name) } }
        },
    ))
}
