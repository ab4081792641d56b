//! What the rail pages share: ids from the address, pages of lists,
//! prices and times as a person reads them, a secret shown once.

use chrono::{NaiveDate, NaiveDateTime};
use relayhub_core::console::{Markup, PageError, html};
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use uuid::Uuid;

use crate::api::RailError;
use crate::rules;

/// Rows a page of a list shows (the API's default page size).
pub(super) const PAGE_SIZE: u32 = 50;

/// An id from the address: anything but a UUID names nothing there is.
pub(super) fn path_id(raw: &str, what: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(raw).map_err(|_| PageError::not_found(what))
}

/// The number of the last page of `total` rows, `size` a page; 1 when
/// there are none (an empty list still has its first page).
pub(super) fn last_page(total: u64, size: u32) -> u32 {
    let pages = total.div_ceil(u64::from(size.max(1))).max(1);
    u32::try_from(pages).unwrap_or(u32::MAX).min(PageRequest::MAX_PAGE)
}

/// "Page 2 of 5 (tickets: 230, 50 a page)" with links to the pages either side;
/// `extra` is more of the query (`&user_id=…`).
pub(super) fn pager(path: &str, extra: &str, request: PageRequest, total: u64, noun: &str) -> Markup {
    let last = last_page(total, request.size);
    html! {
        nav.pager aria-label="Pages" {
            @if request.page > 1 {
                a rel="prev" href={ (path) "?page=" (request.page.min(last + 1) - 1) (extra) } { "Previous page" }
            }
            span { "Page " (request.page) " of " (last) " (" (noun) ": " (total) ", " (request.size) " a page)" }
            @if request.page < last {
                a rel="next" href={ (path) "?page=" (request.page + 1) (extra) } { "Next page" }
            }
        }
    }
}

/// A whole number typed in a form, refused as the API refuses a number
/// out of its bounds (the API's rules then check the bounds themselves).
pub(super) fn number(field: &str, raw: &str) -> Result<i64, RailError> {
    raw.trim().parse().map_err(|_| RailError::field(field, "0-2147483647"))
}

/// A price in pennies as a person reads it: "2.50".
pub(super) fn money(penny: i32) -> String {
    let sign = if penny < 0 { "-" } else { "" };
    let abs = i64::from(penny).abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The UTC day an instant falls on: "2026-05-01".
pub(super) fn day(at: Timestamp) -> String {
    at.to_datetime().format("%Y-%m-%d").to_string()
}

/// An instant to the minute, in UTC: "2026-05-01 10:30 UTC".
pub(super) fn utc_minute(at: Timestamp) -> String {
    at.to_datetime().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An `<input type="date">`'s value (`YYYY-MM-DD`) as that day's UTC midnight.
pub(super) fn parse_day(raw: &str) -> Option<Timestamp> {
    let day = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").ok()?;
    Some(rules::day_range(day).0)
}

/// An `<input type="datetime-local">`'s value (`YYYY-MM-DDTHH:MM`, seconds
/// optional) read as UTC, which the form says.
pub(super) fn parse_utc_minute(raw: &str) -> Option<Timestamp> {
    let raw = raw.trim();
    let at = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    Some(Timestamp::from_millis(at.and_utc().timestamp_millis()))
}

/// `<input type="datetime-local">`'s form of an instant, in UTC.
pub(super) fn datetime_local(at: Timestamp) -> String {
    at.to_datetime().format("%Y-%m-%dT%H:%M").to_string()
}

/// A secret the server keeps only hashed: shown on this page and never
/// again (`#secret` holds it).
pub(super) fn shown_once(what: &str, secret: &str) -> Markup {
    html! {
        p.notice role="status" { "Copy the " (what) " now: it is shown once and cannot be read again." }
        pre id="secret" { (secret) }
    }
}

/// The optional description and logo fields a store and an item share
/// (seed 004 gives both), ids prefixed by `what`.
pub(super) fn described_fields(what: &str, description: &str, logo_url: &str) -> Markup {
    html! {
        div {
            label for=(format!("{what}-description")) { "Description (optional)" }
            input id=(format!("{what}-description")) name="description" maxlength="255" value=(description);
        }
        div {
            label for=(format!("{what}-logo")) { "Logo URL (optional)" }
            input id=(format!("{what}-logo")) name="logo_url" maxlength="255" value=(logo_url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_uuids_are_not_found() {
        let id = Uuid::from_u128(7);
        assert_eq!(path_id(&id.to_string(), "store").unwrap(), id);
        assert_eq!(path_id("../x", "store").unwrap_err().status, axum::http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_last_page_is_never_zero() {
        assert_eq!(last_page(0, 50), 1);
        assert_eq!(last_page(50, 50), 1);
        assert_eq!(last_page(51, 50), 2);
        assert_eq!(last_page(1, 0), 1);
        assert_eq!(last_page(u64::MAX, 1), PageRequest::MAX_PAGE);
    }

    #[test]
    fn the_pager_links_only_to_pages_that_exist() {
        let page = |page, total| {
            pager("/console/rail/tickets", "&user_id=x", PageRequest { page, size: 50 }, total, "tickets").into_string()
        };
        let only = page(1, 10);
        assert!(!only.contains("rel=\"prev\"") && !only.contains("rel=\"next\""));
        assert!(only.contains("Page 1 of 1 (tickets: 10, 50 a page)"));
        let middle = page(2, 120);
        assert!(middle.contains("href=\"/console/rail/tickets?page=1&amp;user_id=x\""));
        assert!(middle.contains("href=\"/console/rail/tickets?page=3&amp;user_id=x\""));
        // Past the end: back to the last page, not to the one before it.
        assert!(page(9, 120).contains("?page=3&amp;"));
    }

    #[test]
    fn numbers_are_whole() {
        assert_eq!(number("balance", " 12 ").unwrap(), 12);
        assert_eq!(number("balance", "-3").unwrap(), -3, "the API's rules refuse it, with their message");
        let refused = number("price_penny", "2.50").unwrap_err();
        assert_eq!(refused.error.message, "price_penny: 0-2147483647");
        assert!(number("balance", "").is_err());
    }

    #[test]
    fn prices_read_as_money() {
        assert_eq!(money(250), "2.50");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(0), "0.00");
        assert_eq!(money(-150), "-1.50");
        assert_eq!(money(i32::MIN), "-21474836.48");
    }

    #[test]
    fn form_dates_are_utc() {
        assert_eq!(parse_day("2026-12-01").unwrap().rfc3339(), "2026-12-01T00:00:00.000Z");
        assert_eq!(parse_day("01.12.2026"), None);
        let at = parse_utc_minute("2026-12-01T10:30").unwrap();
        assert_eq!(at.rfc3339(), "2026-12-01T10:30:00.000Z");
        assert_eq!(parse_utc_minute("2026-12-01T10:30:15").unwrap().rfc3339(), "2026-12-01T10:30:15.000Z");
        assert_eq!(parse_utc_minute("tomorrow"), None);
        assert_eq!(datetime_local(at), "2026-12-01T10:30");
        assert_eq!(utc_minute(at), "2026-12-01 10:30 UTC");
        assert_eq!(day(parse_day("2026-12-01").unwrap()), "2026-12-01", "midnight is its own day");
    }
}
