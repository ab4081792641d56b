//! The signal's page in the web console, `/console/calls`, for the
//! license's admins: the license's calls in progress (who calls whom,
//! where the call is, since when) and its users connected to signaling
//! now. Read-only.
//!
//! Only signed-in users (`signal.require_user`) belong to a license, so
//! only their calls are listed. Where the store cannot list calls (the
//! state shared by several nodes in PostgreSQL), the page shows the users
//! connected to this node and says that is all it knows.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use relayhub_core::console::{Markup, NavItem, PageError, PageResult, Pages, Viewer, html, live, time_ago};
use relayhub_core::ids::LicensePk;
use relayhub_core::time::Timestamp;

use crate::Signal;
use crate::overview::{CallState, Overview, Party};
use crate::state::Status;

/// The signal's section of the console.
pub fn pages(signal: Signal) -> Pages {
    let nav = vec![NavItem {
        label: "Calls",
        href: "/console/calls",
        summary: "Calls in progress in the license, and who is connected to call signaling now.",
        admin: true,
        shown: None,
    }];
    let pages = Router::new()
        .route("/console/calls", get(calls))
        .route("/console/calls/live", get(calls_live))
        .with_state(signal);
    Pages::new(nav, pages)
}

async fn calls(State(signal): State<Signal>, viewer: Viewer) -> PageResult {
    viewer.require_admin()?;
    let fragment = fragment(&signal, viewer.account.license).await?;
    Ok(viewer.page(
        "Calls",
        html! {
            p.muted { "Calls being set up or held over call signaling (seed 003) by the license's users. Read-only." }
            @if !signal.config.require_user {
                p.notice {
                    "Signaling also accepts sockets opened with the app API key (" code { "signal.require_user" }
                    " is off): their users belong to no license and are not listed here."
                }
            }
            div #calls-live data-live="/console/calls/live" { (fragment) }
        },
    ))
}

async fn calls_live(State(signal): State<Signal>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.require_admin()?;
    let license = viewer.account.license;
    Ok(live(move || {
        let signal = signal.clone();
        async move { fragment(&signal, license).await }
    })
    .into_response())
}

/// The calls and the users online: the one fragment the page and its live
/// region render.
async fn fragment(signal: &Signal, license: LicensePk) -> Result<Markup, PageError> {
    let overview = signal.store.overview(license.0).await?;
    Ok(html! {
        h2 { "Calls in progress" }
        (calls_table(&overview))
        h2 { "Connected now" }
        (online_table(&overview))
    })
}

fn calls_table(overview: &Overview) -> Markup {
    html! {
        @if overview.calls.is_empty() {
            p #no-calls { "No calls in progress." }
        } @else {
            (cut_note(overview.calls.len(), overview.calls_total, "calls"))
            div.table-wrap {
                table #calls {
                    thead { tr {
                        th scope="col" { "Caller" } th scope="col" { "Callee" }
                        th scope="col" { "State" } th scope="col" { "Since" }
                    } }
                    tbody {
                        @for call in &overview.calls {
                            tr data-caller=(call.caller.id) data-callee=(call.callee.id) {
                                td { (party(&call.caller)) }
                                td { (party(&call.callee)) }
                                td { (state_badge(call.state)) }
                                td { (time_ago(call.since.map(Timestamp::from_millis))) }
                            }
                        }
                    }
                }
            }
            p.muted { "Since: when the call was offered (ringing) or answered." }
        }
    }
}

fn online_table(overview: &Overview) -> Markup {
    html! {
        @if overview.online.is_empty() {
            p #no-users { "No user of the license is connected to signaling." }
        } @else {
            (cut_note(overview.online.len(), overview.online_total, "users"))
            div.table-wrap {
                table #signal-users {
                    thead { tr {
                        th scope="col" { "User" } th scope="col" { "Status" } th scope="col" class="num" { "Devices" }
                    } }
                    tbody {
                        @for online in &overview.online {
                            tr data-user=(online.user.id) {
                                td { (party(&online.user)) }
                                td { (status_label(online.status, online.called)) }
                                td.num { (online.sockets) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// "Showing the first 200 of 250 calls.", when the list was cut.
fn cut_note(shown: usize, total: usize, what: &str) -> Markup {
    html! {
        @if total > shown { p.muted { "Showing the first " (shown) " of " (total) " " (what) "." } }
    }
}

fn party(party: &Party) -> Markup {
    html! {
        @if let Some(name) = &party.name { (name) " " }
        code { (party.id) }
    }
}

fn state_badge(state: CallState) -> Markup {
    match state {
        CallState::Ringing => html! { span.badge.warn { (state.label()) } },
        CallState::Connecting => html! { span.badge.warn { (state.label()) } },
        CallState::InCall => html! { span.badge.ok { (state.label()) } },
    }
}

/// A user's place in a call, in words; `called`: an offer rings it.
fn status_label(status: Status, called: bool) -> &'static str {
    if called {
        return "Being called";
    }
    match status {
        Status::Idle => "Idle",
        Status::Calling => "Calling",
        Status::Ringing => "Connecting",
        Status::InCall => "In call",
        Status::Ended => "Call ended",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_words() {
        assert_eq!(status_label(Status::Idle, false), "Idle");
        assert_eq!(status_label(Status::Idle, true), "Being called");
        assert_eq!(status_label(Status::Ringing, false), "Connecting", "the callee after ANSWER, before ICE");
        assert_eq!(status_label(Status::InCall, false), "In call");
    }

    #[test]
    fn a_cut_list_says_so() {
        assert_eq!(cut_note(3, 3, "calls").into_string(), "");
        assert_eq!(
            cut_note(200, 250, "calls").into_string(),
            "<p class=\"muted\">Showing the first 200 of 250 calls.</p>"
        );
    }

    #[test]
    fn a_party_shows_its_name_and_id() {
        let named = Party { id: "42".into(), name: Some("Ann <x>".into()) };
        assert_eq!(party(&named).into_string(), "Ann &lt;x&gt; <code>42</code>");
        assert_eq!(party(&Party { id: "7".into(), name: None }).into_string(), "<code>7</code>");
    }
}
