//! Seed 004's rules as pure functions: what a purchase may be, which days a
//! train date covers, how ticket codes and challenges look.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDate;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::time::Timestamp;
use uuid::Uuid;

use crate::model::{Item, Purchase, PurchaseLine};

/// The most lines one purchase may have.
pub const MAX_LINES: usize = 100;
/// The most units of one item in one purchase.
pub const MAX_COUNT: i32 = 10_000;

/// 128 random bits, URL-safe: what a ticket's QR code or a challenge carries.
pub fn random_code() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A password of 16 letters and digits (about 95 bits): pasted into a
/// shell or typed on a robot's screen without quoting.
pub fn random_password() -> String {
    let mut password = String::new();
    while password.len() < 16 {
        password.extend(random_code().chars().filter(char::is_ascii_alphanumeric));
    }
    password.truncate(16);
    password
}

/// Merges lines naming the same item (a robot's cart may list a coffee
/// twice) and orders them by item, so two purchases lock rows in the same
/// order. Refuses empty carts and counts outside 1..=[`MAX_COUNT`].
pub fn merge_lines(lines: &[PurchaseLine]) -> Result<Vec<PurchaseLine>, ApiError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ApiError::invalid_field(format!("items: 1-{MAX_LINES} lines")));
    }
    let mut merged: BTreeMap<Uuid, i32> = BTreeMap::new();
    for line in lines {
        if !(1..=MAX_COUNT).contains(&line.count) {
            return Err(ApiError::invalid_field(format!("count: 1-{MAX_COUNT}")));
        }
        let total = merged.entry(line.item_id).or_default();
        *total = total.saturating_add(line.count).min(MAX_COUNT + 1);
        if *total > MAX_COUNT {
            return Err(ApiError::invalid_field(format!("count: at most {MAX_COUNT} of one item")));
        }
    }
    Ok(merged.into_iter().map(|(item_id, count)| PurchaseLine { item_id, count }).collect())
}

/// The one store every item of a purchase belongs to.
pub fn purchase_store(items: &[Item]) -> Result<Uuid, ApiError> {
    let first = items.first().ok_or_else(|| ApiError::invalid_field("items: at least one"))?.store_id;
    if items.iter().any(|i| i.store_id != first) {
        return Err(ApiError::invalid_field("items: every item of a purchase must be from one store"));
    }
    Ok(first)
}

/// Refuses with `insufficient_balance` when any line wants more than its
/// item has. `items[i]` is the item of `lines[i]`.
pub fn check_balances(items: &[Item], lines: &[PurchaseLine]) -> Result<(), ApiError> {
    for (item, line) in items.iter().zip(lines) {
        if item.balance < line.count {
            return Err(insufficient(item.id, item.balance));
        }
    }
    Ok(())
}

/// The refusal of a purchase that would take a balance below zero.
pub fn insufficient(item: Uuid, balance: i32) -> ApiError {
    ApiError::new(ErrorCode::InsufficientBalance, format!("item {item} has {balance} left"))
}

/// What a purchase's task carries for the store: its lines.
pub fn task_data(purchase: &Purchase) -> serde_json::Value {
    serde_json::json!({ "items": purchase.items })
}

/// The instants a train date (`YYYY-MM-DD`, UTC) covers: `from..until`.
pub fn day_range(date: NaiveDate) -> (Timestamp, Timestamp) {
    let from = date.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or_default();
    (Timestamp::from_millis(from), Timestamp::from_millis(from + 86_400_000))
}

/// A ticket is current until the end of the day after its `date`: a
/// passenger still on an overnight train sees it.
pub fn is_current(date: Timestamp, now: Timestamp) -> bool {
    date.millis() + 2 * 86_400_000 > now.millis()
}

/// Engineer privileges: a non-negative bit set.
pub fn check_privileges(privileges: i64) -> Result<i32, ApiError> {
    i32::try_from(privileges)
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| ApiError::invalid_field("privileges: a bit set, 0-2147483647"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: u128, count: i32) -> PurchaseLine {
        PurchaseLine { item_id: Uuid::from_u128(id), count }
    }

    fn item(id: u128, store: u128, balance: i32) -> Item {
        Item {
            id: Uuid::from_u128(id),
            store_id: Uuid::from_u128(store),
            name: "tea".into(),
            description: String::new(),
            logo_url: String::new(),
            balance,
            price_penny: 100,
            category: String::new(),
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn lines_merge_by_item_in_item_order() {
        let merged = merge_lines(&[line(2, 1), line(1, 2), line(2, 3)]).unwrap();
        assert_eq!(merged, vec![line(1, 2), line(2, 4)]);
        assert!(merge_lines(&[]).is_err());
        assert!(merge_lines(&[line(1, 0)]).is_err());
        assert!(merge_lines(&[line(1, MAX_COUNT), line(1, 1)]).is_err());
    }

    #[test]
    fn a_purchase_is_from_one_store_and_within_balances() {
        assert_eq!(purchase_store(&[item(1, 9, 1), item(2, 9, 1)]).unwrap(), Uuid::from_u128(9));
        assert_eq!(purchase_store(&[item(1, 9, 1), item(2, 8, 1)]).unwrap_err().code, ErrorCode::InvalidField);
        assert!(check_balances(&[item(1, 9, 2)], &[line(1, 2)]).is_ok());
        let refused = check_balances(&[item(1, 9, 1)], &[line(1, 2)]).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InsufficientBalance);
    }

    #[test]
    fn a_day_is_its_utc_midnights() {
        let (from, until) = day_range(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(from.rfc3339(), "2026-12-01T00:00:00.000Z");
        assert_eq!(until.millis() - from.millis(), 86_400_000);
    }

    #[test]
    fn codes_are_long_and_distinct() {
        let (a, b) = (random_code(), random_code());
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        let password = random_password();
        assert_eq!(password.len(), 16);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(password, random_password());
    }
}
