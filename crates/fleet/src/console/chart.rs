//! Line charts drawn on the server, as SVG: no script, no request to
//! another host, and readable before any stylesheet arrives.

use std::fmt::Write;

use relayhub_core::console::{Markup, html};

/// The drawing's size in its own units (it scales to its box).
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 180.0;
/// Room for the value labels on the left and the time labels below.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// Points one chart draws at most; more are thinned evenly (the reads
/// already ask for fewer steps than this).
pub const MAX_CHART_POINTS: usize = 300;

/// A line chart of `points` (Unix milliseconds, value) over `[from, to)`
/// (Unix milliseconds): the line, the axes, the bottom and top of the value
/// scale and the range's ends. Values that are not finite are left out, so
/// the markup never says `NaN`. `label` names the chart for screen readers.
pub fn line_chart(label: &str, points: &[(i64, f64)], from: i64, to: i64) -> Markup {
    let finite: Vec<(i64, f64)> = points.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    let every = finite.len().div_ceil(MAX_CHART_POINTS).max(1);
    let mut shown: Vec<(i64, f64)> = finite.iter().copied().step_by(every).collect();
    // Thinning keeps the latest point: it is what the caption talks about.
    if let (Some(last), Some(kept)) = (finite.last(), shown.last_mut())
        && kept != last
    {
        *kept = *last;
    }
    let span = format_span(to.saturating_sub(from));
    let (bottom, right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);
    let Some(scale) = Scale::of(&shown, from, to) else {
        return html! {
            svg.chart role="img" aria-label=(format!("{label}: no data in the last {span}"))
                viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) {
                (axes())
                text x=(LEFT + 8.0) y=(TOP + 40.0) { "No data in the last " (span) }
            }
        };
    };
    let mut line = String::new();
    for &(t, v) in &shown {
        let _ = write!(line, "{:.1},{:.1} ", scale.x(t), scale.y(v));
    }
    let line = line.trim_end();
    let latest = shown.last().map(|&(t, v)| (scale.x(t), scale.y(v)));
    let (lo, hi) = (format_value(scale.lo), format_value(scale.hi));
    let aria = format!("{label} over the last {span}: from {lo} to {hi}");
    html! {
        svg.chart role="img" aria-label=(aria) viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) {
            (axes())
            text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" { (hi) }
            text x=(LEFT - 6.0) y=(bottom) text-anchor="end" { (lo) }
            text x=(LEFT) y=(HEIGHT - 6.0) { (span) " ago" }
            text x=(right) y=(HEIGHT - 6.0) text-anchor="end" { "now" }
            polyline.line points=(line) {}
            @if let Some((x, y)) = latest {
                circle.dot cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" {}
            }
        }
    }
}

fn axes() -> Markup {
    let (bottom, right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);
    html! {
        line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(bottom) {}
        line.axis x1=(LEFT) y1=(bottom) x2=(right) y2=(bottom) {}
    }
}

/// Where values and times land in the drawing.
struct Scale {
    from: i64,
    to: i64,
    lo: f64,
    hi: f64,
}

impl Scale {
    /// The scale of finite `points`; `None` when there are none.
    fn of(points: &[(i64, f64)], from: i64, to: i64) -> Option<Self> {
        let lo = points.iter().map(|p| p.1).reduce(f64::min)?;
        let hi = points.iter().map(|p| p.1).reduce(f64::max)?;
        // A flat line sits in the middle of a scale around its value.
        let (lo, hi) = if hi - lo > hi.abs().max(lo.abs()) * 1e-12 {
            (lo, hi)
        } else {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() / 10.0 };
            (lo - pad, hi + pad)
        };
        Some(Self { from, to: to.max(from.saturating_add(1)), lo, hi })
    }

    fn x(&self, t: i64) -> f64 {
        let frac = t.saturating_sub(self.from) as f64 / self.to.saturating_sub(self.from) as f64;
        LEFT + frac.clamp(0.0, 1.0) * (WIDTH - RIGHT - LEFT)
    }

    fn y(&self, v: f64) -> f64 {
        // Halves: the difference of two huge values must not overflow.
        let frac = (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0);
        let frac = if frac.is_finite() { frac.clamp(0.0, 1.0) } else { 0.5 };
        HEIGHT - BOTTOM - frac * (HEIGHT - BOTTOM - TOP)
    }
}

/// A value for a label: a few significant digits, exponents for the very
/// large and the very small.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let abs = v.abs();
    if abs == 0.0 {
        return "0".to_owned();
    }
    if !(1e-3..1e7).contains(&abs) {
        return format!("{v:.2e}");
    }
    let decimals = if abs >= 1000.0 {
        0
    } else if abs >= 10.0 {
        1
    } else if abs >= 1.0 {
        2
    } else {
        4
    };
    let text = format!("{v:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

/// A range's length for a person: "1 h", "15 min", "30 s".
fn format_span(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polyline(svg: &str) -> Vec<(f64, f64)> {
        let start = svg.find("points=\"").expect("a line") + 8;
        let end = start + svg[start..].find('"').unwrap();
        svg[start..end]
            .split(' ')
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn points_are_scaled_to_the_range_and_the_values() {
        let svg = line_chart("cpu.usage_user", &[(0, 10.0), (500, 30.0), (1000, 20.0)], 0, 1000).into_string();
        let line = polyline(&svg);
        assert_eq!(line, vec![(LEFT, HEIGHT - BOTTOM), ((LEFT + WIDTH - RIGHT) / 2.0, TOP), (WIDTH - RIGHT, 84.0)]);
        assert!(
            svg.contains(
                r#"<svg class="chart" role="img" aria-label="cpu.usage_user over the last 1 s: from 10 to 30""#
            )
        );
        assert!(svg.contains(">30</text>") && svg.contains(">10</text>"), "{svg}");
        assert!(svg.contains(r#"class="axis""#));
    }

    #[test]
    fn no_data_draws_axes_and_says_so() {
        let svg = line_chart("mem.used", &[], 0, 3_600_000).into_string();
        assert!(!svg.contains("polyline"));
        assert!(svg.contains("No data in the last 1 h"));
        assert!(svg.contains(r#"aria-label="mem.used: no data in the last 1 h""#));
    }

    #[test]
    fn one_point_or_a_flat_line_sits_mid_scale_without_nan() {
        for points in [vec![(500, 7.0)], vec![(0, 0.0), (1000, 0.0)]] {
            let svg = line_chart("x", &points, 0, 1000).into_string();
            let mid = HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) / 2.0;
            assert!(polyline(&svg).iter().all(|&(_, y)| y == mid), "{svg}");
            assert!(svg.contains("<circle"), "the latest point is marked");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn values_that_are_not_finite_are_left_out_and_huge_ones_do_not_overflow() {
        let points = [(0, f64::NAN), (10, f64::MAX), (20, -f64::MAX), (30, f64::INFINITY)];
        let svg = line_chart("x", &points, 0, 40).into_string();
        let line = polyline(&svg);
        assert_eq!(line.len(), 2);
        assert!(line.iter().all(|&(x, y)| x.is_finite() && y.is_finite()));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn many_points_are_thinned_keeping_the_latest() {
        let points: Vec<(i64, f64)> = (0..1000).map(|i| (i, i as f64)).collect();
        let svg = line_chart("x", &points, 0, 1000).into_string();
        let line = polyline(&svg);
        assert!(line.len() <= MAX_CHART_POINTS);
        assert_eq!(line.last().unwrap().1, TOP, "the latest (highest) point is drawn");
    }

    #[test]
    fn values_read_as_a_person_writes_them() {
        assert_eq!(format_value(12.345), "12.3");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(1234.6), "1235");
        assert_eq!(format_value(8.2e9), "8.20e9");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(f64::NAN), "–");
    }
}
