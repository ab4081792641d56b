//! Seed 004's rules as pure functions: what a purchase may be, which days a
//! train date covers, how ticket codes and challenges look.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDate;
use relayhub_core::error::ApiError;
use relayhub_core::time::Timestamp;
use uuid::Uuid;

use crate::codes;
use crate::model::{Item, Purchase, PurchaseLine, Ticket, TicketAcceptance, TicketScan};

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
    ApiError::new(codes::INSUFFICIENT_BALANCE, format!("item {item} has {balance} left"))
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

/// The calendar day an instant falls on in `zone`.
pub fn local_day(at: Timestamp, zone: chrono_tz::Tz) -> NaiveDate {
    at.to_datetime().with_timezone(&zone).date_naive()
}

/// What a robot may do with a ticket it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketVerdict {
    /// Unused, for this train and today: accept it now.
    Accept,
    /// This robot accepted it within `rail.ticket_recheck`: its retry gets
    /// the same answer, and nothing changes.
    Repeat,
}

/// Seed 004's ticket check, retry-safe: the accepting robot's repeat is
/// answered again for a while; anyone else, or later, is refused; a ticket
/// of another train or day is refused with what the ticket says (and stays
/// unused).
pub fn ticket_verdict(
    ticket: &Ticket,
    accepted: Option<TicketAcceptance>,
    scan: &TicketScan,
) -> Result<TicketVerdict, ApiError> {
    if let Some(first) = accepted
        && ticket.used
        && first.robot == scan.robot
        && (0..scan.recheck_millis).contains(&(scan.at.millis() - first.at.millis()))
    {
        return Ok(TicketVerdict::Repeat);
    }
    if let Some(train) = scan.train_number
        && train != ticket.train_number
    {
        return Err(ApiError::new(
            codes::TICKET_WRONG_TRAIN,
            format!("the ticket is for train {}, not train {train}", ticket.train_number),
        ));
    }
    let (day, today) = (local_day(ticket.date, scan.zone), local_day(scan.at, scan.zone));
    if day != today {
        return Err(ApiError::new(
            codes::TICKET_NOT_TODAY,
            format!("the ticket is for {day}, and today is {today} ({})", scan.zone.name()),
        ));
    }
    if ticket.used {
        return Err(ApiError::new(codes::TICKET_USED, "this ticket was already accepted"));
    }
    Ok(TicketVerdict::Accept)
}

/// What a retried purchase must repeat: its passenger, its merged lines and
/// whether it starts ready. The same `Idempotency-Key` with another
/// fingerprint is a client's mistake, not a retry.
pub fn purchase_fingerprint(user: Uuid, lines: &[PurchaseLine], is_default_ready: bool) -> Vec<u8> {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(user.as_bytes());
    for line in lines {
        hash.update(line.item_id.as_bytes());
        hash.update(line.count.to_be_bytes());
    }
    hash.update([u8::from(is_default_ready)]);
    hash.finalize().to_vec()
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
    use relayhub_core::error::ErrorCode;

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
        assert_eq!(purchase_store(&[item(1, 9, 1), item(2, 8, 1)]).unwrap_err().code, ErrorCode::INVALID_FIELD);
        assert!(check_balances(&[item(1, 9, 2)], &[line(1, 2)]).is_ok());
        let refused = check_balances(&[item(1, 9, 1)], &[line(1, 2)]).unwrap_err();
        assert_eq!(refused.code, codes::INSUFFICIENT_BALANCE);
    }

    #[test]
    fn a_day_is_its_utc_midnights() {
        let (from, until) = day_range(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(from.rfc3339(), "2026-12-01T00:00:00.000Z");
        assert_eq!(until.millis() - from.millis(), 86_400_000);
    }

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::from_millis(chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis())
    }

    fn ticket(train: i32, date: &str, used: bool) -> Ticket {
        Ticket {
            id: Uuid::from_u128(7),
            user_id: Uuid::from_u128(8),
            train_number: train,
            wagon_number: 3,
            place_number: 12,
            date: at(date),
            station_id: "MSK".into(),
            destination_id: "SPB".into(),
            start_date: at(date),
            code: "code".into(),
            used,
        }
    }

    fn scan(robot: u128, when: &str, train: Option<i32>, zone: chrono_tz::Tz) -> TicketScan {
        TicketScan { robot: Uuid::from_u128(robot), at: at(when), train_number: train, recheck_millis: 600_000, zone }
    }

    #[test]
    fn the_accepting_robot_is_answered_again_for_a_while_and_no_one_else_is() {
        let used = ticket(101, "2026-12-07T08:00:00Z", true);
        let first = Some(TicketAcceptance { robot: Uuid::from_u128(1), at: at("2026-12-07T09:00:00Z") });
        let utc = chrono_tz::UTC;
        assert_eq!(
            ticket_verdict(&used, first, &scan(1, "2026-12-07T09:09:59Z", None, utc)).unwrap(),
            TicketVerdict::Repeat
        );
        let late = ticket_verdict(&used, first, &scan(1, "2026-12-07T09:10:00Z", None, utc)).unwrap_err();
        assert_eq!(late.code, codes::TICKET_USED);
        let other = ticket_verdict(&used, first, &scan(2, "2026-12-07T09:00:01Z", None, utc)).unwrap_err();
        assert_eq!(other.code, codes::TICKET_USED);
        let fresh = ticket(101, "2026-12-07T08:00:00Z", false);
        assert_eq!(
            ticket_verdict(&fresh, None, &scan(2, "2026-12-07T09:00:00Z", Some(101), utc)).unwrap(),
            TicketVerdict::Accept
        );
    }

    #[test]
    fn a_ticket_of_another_train_or_day_is_refused_with_what_it_says() {
        let fresh = ticket(101, "2026-12-07T20:30:00Z", false);
        let wrong =
            ticket_verdict(&fresh, None, &scan(1, "2026-12-07T21:00:00Z", Some(102), chrono_tz::UTC)).unwrap_err();
        assert_eq!(wrong.code, codes::TICKET_WRONG_TRAIN);
        assert!(wrong.message.contains("train 101") && wrong.message.contains("102"), "{}", wrong.message);
        // 20:30 UTC is 23:30 in Moscow, 21:30 UTC is already the next day there.
        let moscow = chrono_tz::Europe::Moscow;
        let tomorrow = ticket_verdict(&fresh, None, &scan(1, "2026-12-07T21:30:00Z", None, moscow)).unwrap_err();
        assert_eq!(tomorrow.code, codes::TICKET_NOT_TODAY);
        assert!(
            tomorrow.message.contains("2026-12-07") && tomorrow.message.contains("2026-12-08"),
            "{}",
            tomorrow.message
        );
        assert!(ticket_verdict(&fresh, None, &scan(1, "2026-12-07T21:30:00Z", None, chrono_tz::UTC)).is_ok());
    }

    #[test]
    fn a_purchase_fingerprint_is_its_passenger_lines_and_readiness() {
        let lines = [line(1, 2), line(2, 1)];
        let a = purchase_fingerprint(Uuid::from_u128(5), &lines, false);
        assert_eq!(a, purchase_fingerprint(Uuid::from_u128(5), &lines, false));
        assert_ne!(a, purchase_fingerprint(Uuid::from_u128(6), &lines, false));
        assert_ne!(a, purchase_fingerprint(Uuid::from_u128(5), &lines[..1], false));
        assert_ne!(a, purchase_fingerprint(Uuid::from_u128(5), &lines, true));
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
