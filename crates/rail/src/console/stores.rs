//! `/console/rail/stores`: the license's stores, opening one, deleting one.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use relayhub_core::console::{Form, Markup, Page, PageError, Viewer, html, time_ago};
use relayhub_core::ids::LicensePk;
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use serde::Deserialize;

use super::view::{described_fields, pager, path_id};
use super::{ListQuery, Query, Refusal};
use crate::Rail;
use crate::api::RailError;
use crate::api::store::StoreRequest;
use crate::model::{Store, StoreType};

pub(super) fn routes() -> Router<Rail> {
    Router::new()
        .route("/console/rail/stores", get(list).post(open))
        .route("/console/rail/stores/{store}/delete", post(delete))
}

/// The form that opens a store (kept when refused, to correct it).
#[derive(Debug, Default, Deserialize)]
struct StoreForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    logo_url: String,
    #[serde(default)]
    store_type: String,
}

async fn list(State(rail): State<Rail>, viewer: Viewer, Query(query): Query<ListQuery>) -> Result<Page, PageError> {
    let license = rail.console_license(&viewer).await?;
    page(&rail, &viewer, license, query.request()?, &StoreForm::default(), None).await
}

async fn page(
    rail: &Rail,
    viewer: &Viewer,
    license: LicensePk,
    request: PageRequest,
    draft: &StoreForm,
    refusal: Option<&Refusal>,
) -> Result<Page, PageError> {
    let stores = rail.shops.stores(license, request).await?;
    Ok(viewer.page(
        "Stores",
        html! {
            p { a href="/console/rail" { "Rail" } " › Stores" }
            @if stores.items.is_empty() {
                p.muted { "No stores on this page." }
            } @else {
                div.table-wrap {
                    table {
                        caption.muted { "Stores open, oldest first" }
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Description" }
                            th scope="col" { "Opened" } th scope="col" { "Delete" }
                        } }
                        tbody { @for store in &stores.items { (row(viewer, store)) } }
                    }
                }
            }
            (pager("/console/rail/stores", "", request, stores.total, "stores"))
            h2 id="new-store-heading" { "Open a store" }
            (form(viewer, draft, refusal))
        },
    ))
}

fn row(viewer: &Viewer, store: &Store) -> Markup {
    html! {
        tr {
            td { a href={ "/console/rail/stores/" (store.id) } { (store.name) } }
            td { (type_name(store.store_type)) }
            td { (store.description) }
            td { (time_ago(Some(store.created_at))) }
            td { (delete_form(viewer, store, "Delete")) }
        }
    }
}

/// A store type as the form and the tables name it.
pub(super) fn type_name(store_type: StoreType) -> &'static str {
    match store_type {
        StoreType::Shop => "Shop",
        StoreType::Restaurant => "Restaurant",
    }
}

/// Deleting a store, after the browser asks (`data-confirm`).
pub(super) fn delete_form(viewer: &Viewer, store: &Store, label: &str) -> Markup {
    let question = format!(
        "Delete the store {}? It and its items disappear from sale, its staff token and key stop working; \
         its purchases are kept.",
        store.name
    );
    html! {
        form.inline method="post" action={ "/console/rail/stores/" (store.id) "/delete" } data-confirm=(question) {
            (viewer.csrf_field())
            button.danger type="submit" aria-label={ (label) " " (store.name) } { (label) }
        }
    }
}

fn form(viewer: &Viewer, draft: &StoreForm, refusal: Option<&Refusal>) -> Markup {
    let described = refusal.map(|_| "new-store-error");
    html! {
        @if let Some(refusal) = refusal { (refusal.alert("new-store-error")) }
        form.stack id="new-store" method="post" action="/console/rail/stores" aria-labelledby="new-store-heading" {
            (viewer.csrf_field())
            div {
                label for="store-name" { "Name" }
                input #store-name name="name" required maxlength="100" value=(draft.name) aria-describedby=[described];
            }
            div {
                label for="store-type" { "Type" }
                select #store-type name="store_type" {
                    @for t in [StoreType::Shop, StoreType::Restaurant] {
                        option value=(t.as_str()) selected[draft.store_type == t.as_str()] { (type_name(t)) }
                    }
                }
            }
            (described_fields("store", &draft.description, &draft.logo_url))
            button type="submit" { "Open store" }
        }
    }
}

async fn open(State(rail): State<Rail>, viewer: Viewer, Form(draft): Form<StoreForm>) -> Result<Response, PageError> {
    let license = rail.console_license(&viewer).await?;
    let opened = match StoreType::parse(&draft.store_type) {
        Some(store_type) => {
            let request = StoreRequest {
                name: draft.name.clone(),
                description: draft.description.clone(),
                logo_url: draft.logo_url.clone(),
                store_type,
            };
            rail.open_store(license, request).await
        }
        None => Err(RailError::field("store_type", "SHOP or RESTAURANT")),
    };
    match opened {
        Ok(store) => Ok(Redirect::to(&format!("/console/rail/stores/{}", store.id)).into_response()),
        Err(err) => {
            let refusal = Refusal::from(err);
            let page = page(
                &rail,
                &viewer,
                license,
                PageRequest { page: 1, size: super::view::PAGE_SIZE },
                &draft,
                Some(&refusal),
            );
            Ok(refusal.answer(page.await?))
        }
    }
}

async fn delete(State(rail): State<Rail>, viewer: Viewer, Path(store): Path<String>) -> Result<Redirect, PageError> {
    let license = rail.console_license(&viewer).await?;
    let store = path_id(&store, "store")?;
    rail.shops.delete_store(license, store, Timestamp::now()).await?;
    Ok(Redirect::to("/console/rail/stores"))
}
