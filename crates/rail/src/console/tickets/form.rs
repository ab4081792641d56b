//! The form that issues a ticket, and how its fields become the API's
//! request (the API's rules then judge it).

use relayhub_core::console::{Markup, Viewer, html};
use relayhub_core::time::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

use super::super::Refusal;
use super::super::view::{datetime_local, day, number, parse_day, parse_utc_minute};
use crate::api::RailError;
use crate::api::admin::TicketRequest;
use crate::model::Passenger;

/// The most passengers the form's list offers (the newest).
pub(super) const CHOICES: u32 = 100;

/// The passengers to choose from, and how many the license has.
pub(super) struct Choices {
    pub passengers: Vec<Passenger>,
    pub total: u64,
}

/// The form as typed (kept when refused, to correct it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TicketForm {
    pub user_id: String,
    train_number: String,
    wagon_number: String,
    place_number: String,
    /// `YYYY-MM-DD`: the train's day.
    date: String,
    station_id: String,
    destination_id: String,
    /// `YYYY-MM-DDTHH:MM`, UTC: the departure.
    start_date: String,
}

impl TicketForm {
    /// A new form: for `user`, today, departing now.
    pub fn fresh(user: Option<Uuid>, now: Timestamp) -> Self {
        Self {
            user_id: user.map(|u| u.to_string()).unwrap_or_default(),
            date: day(now),
            start_date: datetime_local(now),
            ..Self::default()
        }
    }

    /// The API's request, or the field that cannot be one.
    pub fn request(&self) -> Result<TicketRequest, RailError> {
        let whole = |field: &str, raw: &str| {
            i32::try_from(number(field, raw)?).map_err(|_| RailError::field(field, "0-2147483647"))
        };
        Ok(TicketRequest {
            user_id: Uuid::parse_str(self.user_id.trim())
                .map_err(|_| RailError::field("user_id", "choose a passenger"))?,
            train_number: whole("train_number", &self.train_number)?,
            wagon_number: whole("wagon_number", &self.wagon_number)?,
            place_number: whole("place_number", &self.place_number)?,
            date: parse_day(&self.date).ok_or_else(|| RailError::field("date", "a day, YYYY-MM-DD"))?,
            station_id: self.station_id.clone(),
            destination_id: self.destination_id.clone(),
            start_date: parse_utc_minute(&self.start_date)
                .ok_or_else(|| RailError::field("start_date", "a time, YYYY-MM-DDTHH:MM (UTC)"))?,
        })
    }
}

/// The form, or where to add a passenger first.
pub(super) fn form(viewer: &Viewer, draft: &TicketForm, choices: &Choices, refusal: Option<&Refusal>) -> Markup {
    let described = refusal.map(|_| "new-ticket-error");
    let number = |id: &str, name: &str, value: &str| {
        html! { input id=(id) type="number" name=(name) min="0" max="2147483647" required value=(value); }
    };
    html! {
        @if choices.passengers.is_empty() {
            p { "Tickets are for passengers: " a href="/console/rail/passengers" { "add a passenger" } " first." }
        } @else {
            @if let Some(refusal) = refusal { (refusal.alert("new-ticket-error")) }
            form.stack id="new-ticket" method="post" action="/console/rail/tickets" aria-labelledby="new-ticket-heading" {
                (viewer.csrf_field())
                div {
                    label for="ticket-user" { "Passenger" }
                    select #ticket-user name="user_id" required aria-describedby=[described] {
                        @for p in &choices.passengers {
                            @let id = p.id.to_string();
                            option value=(id) selected[id == draft.user_id] { (p.name) " (" (id[..8]) "…)" }
                        }
                    }
                    @if choices.total > u64::from(CHOICES) {
                        p.muted { "The " (CHOICES) " newest of " (choices.total) " passengers are listed; for another, "
                            "open their tickets from " a href="/console/rail/passengers" { "the passengers" } "." }
                    }
                }
                div { label for="ticket-train" { "Train number" } (number("ticket-train", "train_number", &draft.train_number)) }
                div { label for="ticket-wagon" { "Wagon number" } (number("ticket-wagon", "wagon_number", &draft.wagon_number)) }
                div { label for="ticket-place" { "Place number" } (number("ticket-place", "place_number", &draft.place_number)) }
                div {
                    label for="ticket-date" { "Train's day" }
                    input #ticket-date type="date" name="date" required value=(draft.date);
                }
                div {
                    label for="ticket-station" { "From (station id)" }
                    input #ticket-station name="station_id" required maxlength="60" value=(draft.station_id);
                }
                div {
                    label for="ticket-destination" { "To (destination id)" }
                    input #ticket-destination name="destination_id" required maxlength="60" value=(draft.destination_id);
                }
                div {
                    label for="ticket-start" { "Departs (UTC)" }
                    input #ticket-start type="datetime-local" name="start_date" required value=(draft.start_date);
                }
                button type="submit" { "Issue ticket" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed() -> TicketForm {
        TicketForm {
            user_id: Uuid::from_u128(5).to_string(),
            train_number: "7".into(),
            wagon_number: "3".into(),
            place_number: "12".into(),
            date: "2026-12-01".into(),
            station_id: "MOW".into(),
            destination_id: "SPB".into(),
            start_date: "2026-12-01T10:30".into(),
        }
    }

    #[test]
    fn a_typed_form_is_the_apis_request() {
        let r = typed().request().unwrap();
        assert_eq!(r.user_id, Uuid::from_u128(5));
        assert_eq!((r.train_number, r.wagon_number, r.place_number), (7, 3, 12));
        assert_eq!(r.date.rfc3339(), "2026-12-01T00:00:00.000Z");
        assert_eq!(r.start_date.rfc3339(), "2026-12-01T10:30:00.000Z");
        assert_eq!((r.station_id.as_str(), r.destination_id.as_str()), ("MOW", "SPB"));
    }

    #[test]
    fn a_field_that_is_not_a_value_is_named() {
        let refused = |f: fn(&mut TicketForm)| {
            let mut form = typed();
            f(&mut form);
            form.request().unwrap_err().error.message
        };
        assert_eq!(refused(|f| f.user_id = "nobody".into()), "user_id: choose a passenger");
        assert_eq!(refused(|f| f.train_number = "9999999999".into()), "train_number: 0-2147483647");
        assert_eq!(refused(|f| f.date = "tomorrow".into()), "date: a day, YYYY-MM-DD");
        assert_eq!(refused(|f| f.start_date = String::new()), "start_date: a time, YYYY-MM-DDTHH:MM (UTC)");
        // Negative numbers pass here: the API's own rule refuses them.
        let mut form = typed();
        form.place_number = "-1".into();
        assert_eq!(form.request().unwrap().place_number, -1);
    }

    #[test]
    fn a_fresh_form_is_for_today() {
        let now = Timestamp::from_millis(1_795_000_000_123);
        let form = TicketForm::fresh(Some(Uuid::from_u128(1)), now);
        assert_eq!(form.date, "2026-11-18");
        assert_eq!(form.start_date, "2026-11-18T11:06");
        assert_eq!(form.user_id, Uuid::from_u128(1).to_string());
    }
}
