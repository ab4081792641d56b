//! `/console/robots`: the viewer's robots (the API's listing rule), and a
//! robot's page: its facts, live charts of its measurements of the last
//! hour, and its recent log lines.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use relayhub_core::console::{Markup, PageError, PageResult, Viewer, html, live, time_ago};
use relayhub_core::time::Timestamp;
use serde::Deserialize;

use super::caller;
use super::chart::{format_value, line_chart};
use crate::Fleet;
use crate::auth::UserAuth;
use crate::model::{Robot, RobotStatus};
use crate::rules::listing;
use crate::telemetry::aggregate::Agg;
use crate::telemetry::api::{CHART_RANGE, ChartQuery, LOG_RANGE, robot_tags};
use crate::telemetry::logs::{self, LogFilter};
use crate::telemetry::model::{Kind, SeriesKey};
use crate::telemetry::nanos;

/// Robots listed at most (the listing says when there are more).
const MAX_ROWS: usize = 500;
/// Charts on a robot's page at most; a measurement chosen shows others.
const MAX_CHARTS: usize = 12;
/// Measurements offered to choose from at most.
const MAX_MEASUREMENTS: usize = 200;
/// Log lines shown.
const MAX_LOGS: usize = 50;
/// A chart's step: 240 steps over the hour, under the chart's bound, and
/// no wider than Telegraf's default 10 s interval needs.
const CHART_STEP: Duration = Duration::from_secs(15);
/// A robot is online when it wrote this recently: Telegraf writes every
/// 10 s by default, so a few missed flushes are not yet "offline".
const ONLINE_WITHIN: Duration = Duration::from_secs(120);

pub(super) fn routes() -> Router<Fleet> {
    Router::new()
        .route("/console/robots", get(list))
        .route("/console/robots/live", get(list_live))
        .route("/console/robots/{id}", get(detail))
        .route("/console/robots/{id}/live", get(detail_live))
}

async fn list(State(fleet): State<Fleet>, viewer: Viewer) -> PageResult {
    let auth = caller(&fleet, &viewer).await?;
    let table = robots_table(&fleet, &auth).await?;
    let whose = if viewer.is_admin() { "Every robot of your license." } else { "Your robots." };
    Ok(viewer.page(
        "Robots",
        html! {
            p.muted { (whose) " A robot is online when it wrote in the last 2 minutes." }
            div.table-wrap data-live="/console/robots/live" { (table) }
            p { a href="/console/pair" { "Pair a robot" } }
        },
    ))
}

async fn list_live(State(fleet): State<Fleet>, viewer: Viewer) -> Result<impl IntoResponse, PageError> {
    let auth = caller(&fleet, &viewer).await?;
    Ok(live(move || {
        let (fleet, auth) = (fleet.clone(), auth.clone());
        async move { robots_table(&fleet, &auth).await }
    }))
}

/// The listing's table: the same robots `GET /api/robots` lists.
async fn robots_table(fleet: &Fleet, auth: &UserAuth) -> Result<Markup, PageError> {
    let (license, owner) = listing(&auth.user);
    let robots = fleet.robots.robots(license, owner).await?;
    let now = Timestamp::now();
    Ok(html! {
        @if robots.is_empty() {
            p { "No robots yet. " a href="/console/pair" { "Pair one" } " with the code it shows." }
        } @else {
            table #robots {
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Status" }
                        th scope="col" { "Connection" }
                        th scope="col" { "Last seen" }
                        th scope="col" { "Hostname" }
                        th scope="col" { "Address" }
                    }
                }
                tbody {
                    @for robot in robots.iter().take(MAX_ROWS) {
                        tr {
                            td { a href=(format!("/console/robots/{}", robot.id)) { (robot.name) } }
                            td { (status_badge(robot.status)) }
                            td { (online_badge(robot, now)) }
                            td { (time_ago(robot.last_seen_at)) }
                            td { (robot.hostname) }
                            td { (address(robot)) }
                        }
                    }
                }
            }
            @if robots.len() > MAX_ROWS {
                p.notice { "Showing the first " (MAX_ROWS) " of " (robots.len()) " robots." }
            }
        }
    })
}

fn status_badge(status: RobotStatus) -> Markup {
    let class = match status {
        RobotStatus::Active => "badge ok",
        RobotStatus::Pending => "badge warn",
        RobotStatus::Inactive => "badge off",
        RobotStatus::Error => "badge bad",
    };
    html! { span class=(class) { (status.as_str()) } }
}

fn online(robot: &Robot, now: Timestamp) -> bool {
    let recent = robot.last_seen_at.is_some_and(|at| now.minus(ONLINE_WITHIN).millis() <= at.millis());
    robot.status == RobotStatus::Active && recent
}

fn online_badge(robot: &Robot, now: Timestamp) -> Markup {
    if online(robot, now) {
        html! { span.badge.ok { "online" } }
    } else {
        html! { span.badge.off { "offline" } }
    }
}

fn address(robot: &Robot) -> Markup {
    match &robot.ip_address {
        Some(ip) => html! { code { (ip) } },
        None => html! { span.muted { "unknown" } },
    }
}

/// `?measurement=`: only that measurement's charts.
#[derive(Debug, Default, Deserialize)]
struct Shown {
    #[serde(default)]
    measurement: Option<String>,
}

impl Shown {
    fn measurement(&self) -> Option<&str> {
        self.measurement.as_deref().filter(|m| !m.is_empty())
    }
}

/// A robot id from the path; anything else is no robot of the viewer's.
fn robot_id(raw: &str) -> Result<i64, PageError> {
    raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| PageError::not_found("robot"))
}

async fn detail(
    State(fleet): State<Fleet>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> PageResult {
    let auth = caller(&fleet, &viewer).await?;
    let robot = fleet.visible_robot(&auth, robot_id(&id)?).await?;
    let owner = match robot.owner_id {
        Some(owner) if viewer.is_admin() => fleet.users.user(owner).await?.map(|u| u.name),
        _ => None,
    };
    let measurements = measurements(&fleet, &robot).await?;
    let wanted = shown.measurement();
    let fragment = telemetry(&fleet, &auth, robot.id, wanted).await?;
    let page = format!("/console/robots/{}", robot.id);
    let query =
        wanted.map(|m| format!("?measurement={}", form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>()));
    let live_url = format!("{page}/live{}", query.unwrap_or_default());
    let now = Timestamp::now();
    Ok(viewer.page(
        &robot.name,
        html! {
            dl.facts {
                dt { "Status" } dd { (status_badge(robot.status)) }
                dt { "Connection" } dd { (online_badge(&robot, now)) }
                dt { "Last seen" } dd { (time_ago(robot.last_seen_at)) }
                dt { "Hostname" } dd { (robot.hostname) }
                dt { "Address" } dd { (address(&robot)) }
                dt { "Architecture" } dd { (robot.architecture.map_or("unknown", |a| a.as_str())) }
                dt { "Paired" } dd { (time_ago(Some(robot.created_at))) }
                @if let Some(owner) = owner { dt { "Owner" } dd { (owner) } }
                dt { "Robot id" } dd { (robot.id) }
            }
            @if !measurements.is_empty() {
                form.filter method="get" action=(page) {
                    div {
                        label for="measurement" { "Measurement" }
                        select #measurement name="measurement" {
                            option value="" selected[wanted.is_none()] { "All" }
                            @for m in &measurements {
                                option value=(m) selected[wanted == Some(m.as_str())] { (m) }
                            }
                        }
                    }
                    button.secondary type="submit" { "Show" }
                }
            }
            div #telemetry data-live=(live_url) { (fragment) }
        },
    ))
}

async fn detail_live(
    State(fleet): State<Fleet>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Result<impl IntoResponse, PageError> {
    let auth = caller(&fleet, &viewer).await?;
    // Refused at once (404), not as a stream that ends without a word.
    let id = fleet.visible_robot(&auth, robot_id(&id)?).await?.id;
    let wanted = shown.measurement().map(str::to_owned);
    Ok(live(move || {
        let (fleet, auth, wanted) = (fleet.clone(), auth.clone(), wanted.clone());
        async move { telemetry(&fleet, &auth, id, wanted.as_deref()).await }
    }))
}

/// `[from, to)` of the last `range`, Unix ns.
fn last(range: Duration) -> (i64, i64) {
    let to = Timestamp::now().millis().saturating_mul(1_000_000);
    (to.saturating_sub(nanos(range)), to)
}

/// The numeric series a robot wrote in the last hour (what can be charted;
/// log lines are shown as logs), in the series listing's order.
async fn chartable(fleet: &Fleet, robot: &Robot) -> Result<Vec<SeriesKey>, PageError> {
    let (from, to) = last(CHART_RANGE);
    let series = fleet.telemetry.series(robot.id, from, to).await?;
    let keys: BTreeSet<SeriesKey> = series
        .into_iter()
        .filter(|(key, kind)| *kind != Kind::String && key.measurement != logs::MEASUREMENT)
        .map(|(key, _)| key)
        .collect();
    Ok(keys.into_iter().collect())
}

async fn measurements(fleet: &Fleet, robot: &Robot) -> Result<Vec<String>, PageError> {
    let names: BTreeSet<String> = chartable(fleet, robot).await?.into_iter().map(|k| k.measurement).collect();
    Ok(names.into_iter().take(MAX_MEASUREMENTS).collect())
}

/// The robot page's live part: a chart per series (of `measurement`, when
/// chosen), then the recent log lines. The robot is checked again on every
/// render: one deleted, or no longer the viewer's, ends the stream.
async fn telemetry(fleet: &Fleet, auth: &UserAuth, id: i64, measurement: Option<&str>) -> Result<Markup, PageError> {
    let robot = fleet.visible_robot(auth, id).await?;
    let keys: Vec<SeriesKey> = chartable(fleet, &robot)
        .await?
        .into_iter()
        .filter(|k| measurement.is_none_or(|m| k.measurement == m))
        .collect();
    let charts = charts(fleet, &robot, &keys[..keys.len().min(MAX_CHARTS)]).await;
    let (from, to) = last(LOG_RANGE);
    let lines = fleet.telemetry.logs(robot.id, from, to, LogFilter::default(), MAX_LOGS).await?;
    Ok(html! {
        h2 #measurements { "Measurements of the last hour" }
        @if keys.is_empty() {
            p.muted {
                @if let Some(m) = measurement { "No numeric series of " code { (m) } " in the last hour." }
                @else { "No measurements in the last hour. A robot writes them with its token to "
                    code { "/api/v2/write" } " (Telegraf does, once installed)." }
            }
        }
        @if keys.len() > MAX_CHARTS {
            p.notice role="status" {
                "Showing " (MAX_CHARTS) " of " (keys.len()) " series. Choose a measurement to see others."
            }
        }
        div.charts { (charts) }
        h2 #logs { "Recent logs" }
        @if lines.is_empty() {
            p.muted { "No log lines in the last day." }
        } @else {
            p.muted { "The last " (MAX_LOGS) " lines of the last day at most, newest first." }
            div.table-wrap {
                table #log-lines {
                    thead {
                        tr {
                            th scope="col" { "Time" }
                            th scope="col" { "Level" }
                            th scope="col" { "Program" }
                            th scope="col" { "Message" }
                        }
                    }
                    tbody {
                        @for line in &lines {
                            tr {
                                td { (time_ago(Some(Timestamp::from_millis(line.nanos.div_euclid(1_000_000))))) }
                                td { (line.level.as_deref().unwrap_or("")) }
                                td { (line.program.as_deref().unwrap_or("")) }
                                td.message { (line.message) }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A figure per series of `keys`: one read per measurement (the API's
/// chart), its series matched to the keys. A read that fails says so in
/// its charts' place, and the others still show.
async fn charts(fleet: &Fleet, robot: &Robot, keys: &[SeriesKey]) -> Markup {
    let (from, to) = last(CHART_RANGE);
    let mut by_measurement: BTreeMap<&str, Vec<&SeriesKey>> = BTreeMap::new();
    for key in keys {
        by_measurement.entry(key.measurement.as_str()).or_default().push(key);
    }
    let mut found = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for (measurement, wanted) in &by_measurement {
        let fields: BTreeSet<&str> = wanted.iter().map(|k| k.field.as_str()).collect();
        let query = ChartQuery {
            measurement: (*measurement).to_owned(),
            field: (fields.len() == 1).then(|| wanted[0].field.clone()),
            tags: Vec::new(),
            from,
            to,
            step: Some(nanos(CHART_STEP)),
            agg: Agg::Mean,
        };
        match fleet.robot_chart(robot, query).await {
            Ok(chart) => {
                for series in chart.series {
                    found.insert((series.measurement, series.field, series.tags), series.points);
                }
            }
            Err(err) => {
                failed.insert(*measurement, err.message);
            }
        }
    }
    let (from_ms, to_ms) = (from.div_euclid(1_000_000), to.div_euclid(1_000_000));
    html! {
        @for key in keys {
            @let name = format!("{}.{}", key.measurement, key.field);
            @let tags = key.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            @let lookup = (key.measurement.clone(), key.field.clone(), robot_tags(robot, key));
            @let points = found.get(&lookup).map(Vec::as_slice).unwrap_or_default();
            @let label = if tags.is_empty() { name.clone() } else { format!("{name} ({tags})") };
            figure {
                figcaption {
                    code { (name) }
                    @if !tags.is_empty() { " " span.muted { (tags) } }
                    @if let Some(&(_, latest)) = points.last() { " · latest " strong.latest { (format_value(latest)) } }
                }
                @if let Some(err) = failed.get(key.measurement.as_str()) {
                    p.error role="alert" { (err) }
                } @else {
                    (line_chart(&label, points, from_ms, to_ms))
                }
            }
        }
    }
}
