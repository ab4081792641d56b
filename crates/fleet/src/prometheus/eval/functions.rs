//! The functions of a range selector's window, as Prometheus 2.x computes
//! them: `rate`, `increase` and `delta` extrapolated, `irate`/`idelta`,
//! and the `*_over_time` family.

use promql_parser::parser::MatrixSelector;

use super::range_ms;

pub(super) type Rollup = fn(&[(i64, f64)], i64, &MatrixSelector) -> Option<f64>;

/// The functions of a range selector's window, by name.
pub(super) fn range_function(name: &str) -> Option<Rollup> {
    Some(match name {
        "rate" => |w, t, ms| extrapolated(w, t, ms, true, true),
        "increase" => |w, t, ms| extrapolated(w, t, ms, true, false),
        "delta" => |w, t, ms| extrapolated(w, t, ms, false, false),
        "irate" => |w, _, _| instant_delta(w, true),
        "idelta" => |w, _, _| instant_delta(w, false),
        "avg_over_time" => |w, _, _| Some(w.iter().map(|s| s.1).sum::<f64>() / w.len() as f64),
        "sum_over_time" => |w, _, _| Some(w.iter().map(|s| s.1).sum()),
        "count_over_time" => |w, _, _| Some(w.len() as f64),
        "min_over_time" => |w, _, _| w.iter().map(|s| s.1).reduce(|m, x| if x < m || m.is_nan() { x } else { m }),
        "max_over_time" => |w, _, _| w.iter().map(|s| s.1).reduce(|m, x| if x > m || m.is_nan() { x } else { m }),
        "last_over_time" => |w, _, _| w.last().map(|s| s.1),
        "present_over_time" => |_, _, _| Some(1.0),
        "stdvar_over_time" | "stddev_over_time" => {
            if name == "stddev_over_time" {
                |w, _, _| variance(w).map(f64::sqrt)
            } else {
                |w, _, _| variance(w)
            }
        }
        "changes" => |w, _, _| {
            Some(w.windows(2).filter(|p| p[0].1 != p[1].1 && !(p[0].1.is_nan() && p[1].1.is_nan())).count() as f64)
        },
        "resets" => |w, _, _| Some(w.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64),
        _ => return None,
    })
}

fn variance(w: &[(i64, f64)]) -> Option<f64> {
    let n = w.len() as f64;
    let mean = w.iter().map(|s| s.1).sum::<f64>() / n;
    Some(w.iter().map(|s| (s.1 - mean).powi(2)).sum::<f64>() / n)
}

/// φ-quantile of `values` as Prometheus computes it (linear between ranks).
pub(super) fn quantile(q: f64, mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    if q.is_nan() {
        return Some(f64::NAN);
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = q * (values.len() - 1) as f64;
    let (lower, upper) = (rank.floor() as usize, (rank.floor() as usize + 1).min(values.len() - 1));
    let weight = rank - rank.floor();
    Some(values[lower] * (1.0 - weight) + values[upper] * weight)
}

/// `rate`, `increase` and `delta` as Prometheus 2.x computes them: the
/// change over the window, counter resets added back for counters,
/// extrapolated towards the window's ends (not past where a counter would
/// reach zero).
fn extrapolated(w: &[(i64, f64)], t: i64, ms: &MatrixSelector, counter: bool, per_second: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let range = range_ms(ms) as f64 / 1000.0;
    let (range_start, range_end) = ((t as f64 / 1000.0) - range, t as f64 / 1000.0);
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut previous = 0.0;
        for &(_, v) in w {
            if v < previous {
                result += previous;
            }
            previous = v;
        }
    }
    let mut to_start = first.0 as f64 / 1000.0 - range_start;
    let to_end = range_end - last.0 as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average_gap = sampled / (w.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { average_gap / 2.0 };
    interval += if to_end < threshold { to_end } else { average_gap / 2.0 };
    result *= interval / sampled;
    if per_second {
        result /= range;
    }
    Some(result)
}

/// `irate` and `idelta`: from the window's last two samples.
fn instant_delta(w: &[(i64, f64)], per_second: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (previous, last) = (w[w.len() - 2], w[w.len() - 1]);
    let change = if per_second && last.1 < previous.1 { last.1 } else { last.1 - previous.1 };
    if !per_second {
        return Some(change);
    }
    let seconds = (last.0 - previous.0) as f64 / 1000.0;
    if seconds == 0.0 { None } else { Some(change / seconds) }
}
