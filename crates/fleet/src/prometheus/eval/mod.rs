//! PromQL evaluated as Prometheus 2.x does, over series already read: the
//! expression (parsed by `promql-parser`) is evaluated at every step of a
//! range at once, each node answering a value per step. Selectors are read
//! first ([`selections`]: what to read, and how far back), so the reading
//! can be async and bounded while the evaluation stays a pure function.
//!
//! What this engine cannot answer it refuses ([`EvalError::Unsupported`],
//! Prometheus's `bad_data`) naming the part, never answering wrongly.
//!
//! - [`binary`]: the operators; [`functions`]: a range selector's window
//!   functions.

mod binary;
mod functions;

use std::collections::{BTreeMap, HashMap};

use promql_parser::label::{METRIC_NAME, Matchers};
use promql_parser::parser::{AggregateExpr, Call, Expr, LabelModifier, MatrixSelector, Offset, VectorSelector};

use functions::{quantile, range_function};

/// A series' labels, `__name__` included, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// How far back an instant selector looks for a sample (Prometheus's
/// default `--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// A series as read: labels and samples `(ms, value)` sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// The instants a query is evaluated at: `start`, `start + step`, … ≤ `end` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Steps {
    /// One instant (an instant query).
    pub fn at(t: i64) -> Self {
        Self { start: t, end: t, step: 1 }
    }

    pub fn len(&self) -> usize {
        usize::try_from((self.end - self.start) / self.step.max(1) + 1).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// Why a query has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// PromQL this engine does not evaluate (Prometheus's `bad_data`).
    Unsupported(String),
    /// A query that is valid but cannot be answered as asked (`execution`).
    Execution(String),
}

/// A query's answer: per series, a value at some of the steps.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Scalar(Vec<(i64, f64)>),
    /// Sorted by labels; series without any value left out.
    Series(Vec<(Labels, Vec<(i64, f64)>)>),
    String(String),
}

/// A selector to read: its matchers and name, and the time span `[from, to]`
/// (ms) the query needs of it.
#[derive(Debug, Clone)]
pub struct Selection {
    pub key: String,
    pub name: Option<String>,
    pub matchers: Matchers,
    pub from: i64,
    pub to: i64,
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Some(Offset::Neg(d)) => i64::try_from(d.as_millis()).map_or(i64::MIN + 1, |ms| -ms),
    }
}

/// A range selector's range (ms), saturating.
fn range_ms(ms: &MatrixSelector) -> i64 {
    i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX)
}

fn unsupported(what: impl Into<String>) -> EvalError {
    EvalError::Unsupported(what.into())
}

/// Every selector of `expr` with the span it needs over `steps`; refuses what
/// the engine does not evaluate before anything is read.
pub fn selections(expr: &Expr, steps: Steps) -> Result<Vec<Selection>, EvalError> {
    let mut out = Vec::new();
    walk(expr, steps, &mut out)?;
    Ok(out)
}

fn select(vs: &VectorSelector, range: i64, steps: Steps, out: &mut Vec<Selection>) -> Result<(), EvalError> {
    if vs.at.is_some() {
        return Err(unsupported(format!("the @ modifier ({vs})")));
    }
    let offset = offset_ms(&vs.offset);
    let back = if range > 0 { range } else { LOOKBACK_MS };
    out.push(Selection {
        key: vs.to_string(),
        name: vs.name.clone(),
        matchers: vs.matchers.clone(),
        from: steps.start.saturating_sub(offset).saturating_sub(back),
        to: steps.end.saturating_sub(offset),
    });
    Ok(())
}

fn walk(expr: &Expr, steps: Steps, out: &mut Vec<Selection>) -> Result<(), EvalError> {
    match expr {
        Expr::VectorSelector(vs) => select(vs, 0, steps, out),
        Expr::MatrixSelector(ms) => select(&ms.vs, range_ms(ms), steps, out),
        Expr::Aggregate(a) => {
            walk(&a.expr, steps, out)?;
            a.param.as_deref().map_or(Ok(()), |p| walk(p, steps, out))
        }
        Expr::Unary(u) => walk(&u.expr, steps, out),
        Expr::Binary(b) => {
            walk(&b.lhs, steps, out)?;
            walk(&b.rhs, steps, out)
        }
        Expr::Paren(p) => walk(&p.expr, steps, out),
        Expr::Call(call) => call.args.args.iter().try_for_each(|arg| walk(arg, steps, out)),
        Expr::Subquery(s) => Err(unsupported(format!("subqueries ({s})"))),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(unsupported("extensions")),
    }
}

/// What a node answers: one value per step.
enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<StepSeries>),
    String(String),
}

struct StepSeries {
    labels: Labels,
    values: Vec<Option<f64>>,
}

/// The series read for each selection, by its key.
pub type Read = HashMap<String, Vec<RawSeries>>;

/// Evaluates `expr` at every step, over the series `read` for its selections.
pub fn evaluate(expr: &Expr, steps: Steps, read: &Read) -> Result<Answer, EvalError> {
    let engine = Engine { steps, read };
    Ok(match engine.eval(expr)? {
        Value::Scalar(values) => {
            Answer::Scalar(values.into_iter().enumerate().map(|(i, v)| (steps.time(i), v)).collect())
        }
        Value::String(s) => Answer::String(s),
        Value::Vector(series) => {
            let mut out: Vec<_> = series
                .into_iter()
                .map(|s| {
                    let points: Vec<(i64, f64)> =
                        s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (steps.time(i), v))).collect();
                    (s.labels, points)
                })
                .filter(|(_, points)| !points.is_empty())
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Answer::Series(out)
        }
    })
}

struct Engine<'a> {
    steps: Steps,
    read: &'a Read,
}

fn without_name(mut labels: Labels) -> Labels {
    labels.remove(METRIC_NAME);
    labels
}

impl Engine<'_> {
    fn n(&self) -> usize {
        self.steps.len()
    }

    fn series_of(&self, vs: &VectorSelector) -> &[RawSeries] {
        self.read.get(&vs.to_string()).map_or(&[], Vec::as_slice)
    }

    fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.n()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
                Value::Vector(series) => Ok(Value::Vector(
                    series
                        .into_iter()
                        .map(|s| StepSeries {
                            labels: without_name(s.labels),
                            values: s.values.into_iter().map(|v| v.map(|x| -x)).collect(),
                        })
                        .collect(),
                )),
                Value::String(_) => Err(unsupported("a minus before a string")),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs))),
            Expr::MatrixSelector(ms) => {
                Err(unsupported(format!("a range selector outside a function ({ms}): use a range query")))
            }
            Expr::Call(call) => self.call(call),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Subquery(s) => Err(unsupported(format!("subqueries ({s})"))),
            Expr::Extension(_) => Err(unsupported("extensions")),
        }
    }

    /// An instant selector: at each step the latest sample within the lookback.
    fn instant(&self, vs: &VectorSelector) -> Vec<StepSeries> {
        let offset = offset_ms(&vs.offset);
        self.series_of(vs)
            .iter()
            .map(|raw| {
                let values = (0..self.n())
                    .map(|i| {
                        let t = self.steps.time(i).saturating_sub(offset);
                        let upto = raw.samples.partition_point(|(ts, _)| *ts <= t);
                        upto.checked_sub(1)
                            .map(|j| raw.samples[j])
                            .filter(|(ts, _)| *ts >= t.saturating_sub(LOOKBACK_MS))
                            .map(|s| s.1)
                    })
                    .collect();
                StepSeries { labels: raw.labels.clone(), values }
            })
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect()
    }

    /// A range selector's window at each step: the samples in `[t - range, t]`.
    fn windows<'s>(&self, ms: &MatrixSelector, raw: &'s RawSeries) -> Vec<&'s [(i64, f64)]> {
        let (offset, range) = (offset_ms(&ms.vs.offset), range_ms(ms));
        (0..self.n())
            .map(|i| {
                let t = self.steps.time(i).saturating_sub(offset);
                let from = raw.samples.partition_point(|(ts, _)| *ts < t.saturating_sub(range));
                let to = raw.samples.partition_point(|(ts, _)| *ts <= t);
                &raw.samples[from..to.max(from)]
            })
            .collect()
    }

    fn call(&self, call: &Call) -> Result<Value, EvalError> {
        let name = call.func.name;
        let args = &call.args.args;
        let arg = |i: usize| {
            args.get(i).map(|a| a.as_ref()).ok_or_else(|| unsupported(format!("{name} without its argument")))
        };
        if name == "quantile_over_time" {
            let q = self.scalar_arg(arg(0)?, name)?;
            let Expr::MatrixSelector(ms) = arg(1)? else {
                return Err(unsupported("quantile_over_time of something other than a range selector"));
            };
            let series = self.over_windows(ms, |w, _, i| quantile(q[i], w.iter().map(|s| s.1).collect()), true);
            return Ok(Value::Vector(series));
        }
        if let Some(rollup) = range_function(name) {
            let Expr::MatrixSelector(ms) = arg(0)? else {
                return Err(unsupported(format!("{name} of something other than a range selector")));
            };
            // last_over_time keeps the metric name, as in Prometheus.
            let drop_name = name != "last_over_time";
            return Ok(Value::Vector(self.over_windows(ms, |w, t, _| rollup(w, t, ms), drop_name)));
        }
        match name {
            "abs" | "ceil" | "floor" | "exp" | "ln" | "log2" | "log10" | "sqrt" | "sgn" => {
                let f: fn(f64) -> f64 = match name {
                    "abs" => f64::abs,
                    "ceil" => f64::ceil,
                    "floor" => f64::floor,
                    "exp" => f64::exp,
                    "ln" => f64::ln,
                    "log2" => f64::log2,
                    "log10" => f64::log10,
                    "sqrt" => f64::sqrt,
                    _ => |x: f64| {
                        if x > 0.0 {
                            1.0
                        } else if x < 0.0 {
                            -1.0
                        } else {
                            x
                        }
                    },
                };
                self.map_vector(arg(0)?, name, |x, _| f(x))
            }
            "round" => {
                let to = match args.get(1) {
                    Some(p) => self.scalar_arg(p, name)?,
                    None => vec![1.0; self.n()],
                };
                // Prometheus rounds half up: floor(x / to + 0.5) * to.
                self.map_vector(arg(0)?, name, |x, i| (x / to[i] + 0.5).floor() * to[i])
            }
            "clamp_min" | "clamp_max" => {
                let bound = self.scalar_arg(arg(1)?, name)?;
                let max = name == "clamp_max";
                self.map_vector(arg(0)?, name, |x, i| if max { x.min(bound[i]) } else { x.max(bound[i]) })
            }
            "clamp" => {
                let (lo, hi) = (self.scalar_arg(arg(1)?, name)?, self.scalar_arg(arg(2)?, name)?);
                self.map_vector(arg(0)?, name, |x, i| if lo[i] > hi[i] { f64::NAN } else { x.max(lo[i]).min(hi[i]) })
            }
            "time" => Ok(Value::Scalar((0..self.n()).map(|i| self.steps.time(i) as f64 / 1000.0).collect())),
            "vector" => {
                let values = self.scalar_arg(arg(0)?, name)?;
                Ok(Value::Vector(vec![StepSeries {
                    labels: Labels::new(),
                    values: values.into_iter().map(Some).collect(),
                }]))
            }
            "scalar" => {
                let Value::Vector(series) = self.eval(arg(0)?)? else {
                    return Err(unsupported("scalar() of something other than an instant vector"));
                };
                Ok(Value::Scalar(
                    (0..self.n())
                        .map(|i| {
                            let present: Vec<f64> = series.iter().filter_map(|s| s.values[i]).collect();
                            if present.len() == 1 { present[0] } else { f64::NAN }
                        })
                        .collect(),
                ))
            }
            other => Err(unsupported(format!("the function {other}()"))),
        }
    }

    fn scalar_arg(&self, expr: &Expr, function: &str) -> Result<Vec<f64>, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(unsupported(format!("{function}() with a parameter that is not a scalar"))),
        }
    }

    fn map_vector(&self, expr: &Expr, function: &str, f: impl Fn(f64, usize) -> f64) -> Result<Value, EvalError> {
        let Value::Vector(series) = self.eval(expr)? else {
            return Err(unsupported(format!("{function}() of something other than an instant vector")));
        };
        Ok(Value::Vector(
            series
                .into_iter()
                .map(|s| StepSeries {
                    labels: without_name(s.labels),
                    values: s.values.into_iter().enumerate().map(|(i, v)| v.map(|x| f(x, i))).collect(),
                })
                .collect(),
        ))
    }

    /// A function of each step's window of a range selector.
    fn over_windows(
        &self,
        ms: &MatrixSelector,
        f: impl Fn(&[(i64, f64)], i64, usize) -> Option<f64>,
        drop_name: bool,
    ) -> Vec<StepSeries> {
        let offset = offset_ms(&ms.vs.offset);
        self.series_of(&ms.vs)
            .iter()
            .map(|raw| {
                let values = self
                    .windows(ms, raw)
                    .into_iter()
                    .enumerate()
                    .map(|(i, w)| if w.is_empty() { None } else { f(w, self.steps.time(i).saturating_sub(offset), i) })
                    .collect();
                let labels = if drop_name { without_name(raw.labels.clone()) } else { raw.labels.clone() };
                StepSeries { labels, values }
            })
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect()
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, EvalError> {
        let op = a.op.to_string();
        let Value::Vector(series) = self.eval(&a.expr)? else {
            return Err(unsupported(format!("{op} of something other than an instant vector")));
        };
        let param = match &a.param {
            Some(p) if matches!(op.as_str(), "topk" | "bottomk" | "quantile") => Some(self.scalar_arg(p, &op)?),
            Some(_) => return Err(unsupported(format!("the aggregation {op}"))),
            None => None,
        };
        let group_of = |labels: &Labels| -> Labels {
            match &a.modifier {
                None => Labels::new(),
                Some(LabelModifier::Include(keep)) => labels
                    .iter()
                    .filter(|(k, _)| keep.labels.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Some(LabelModifier::Exclude(drop)) => labels
                    .iter()
                    .filter(|(k, _)| !drop.labels.contains(k) && k.as_str() != METRIC_NAME)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        };
        let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
        for (i, s) in series.iter().enumerate() {
            groups.entry(group_of(&s.labels)).or_default().push(i);
        }
        let n = self.n();
        if matches!(op.as_str(), "topk" | "bottomk") {
            let k = param.unwrap_or_default();
            let top = op == "topk";
            let mut keep = vec![vec![false; n]; series.len()];
            for members in groups.values() {
                for step in 0..n {
                    let kk = k[step];
                    // NaN or less than one: nothing is kept.
                    if kk.is_nan() || kk < 1.0 {
                        continue;
                    }
                    let mut present: Vec<(usize, f64)> =
                        members.iter().filter_map(|&m| series[m].values[step].map(|v| (m, v))).collect();
                    present.sort_by(|x, y| {
                        let order = x.1.partial_cmp(&y.1).unwrap_or(std::cmp::Ordering::Equal);
                        if top { order.reverse() } else { order }
                    });
                    for (m, _) in present.into_iter().take(kk as usize) {
                        keep[m][step] = true;
                    }
                }
            }
            return Ok(Value::Vector(
                series
                    .into_iter()
                    .zip(keep)
                    .map(|(s, keep)| StepSeries {
                        labels: s.labels,
                        values: s.values.into_iter().zip(keep).map(|(v, k)| v.filter(|_| k)).collect(),
                    })
                    .collect(),
            ));
        }
        let mut out = Vec::with_capacity(groups.len());
        for (labels, members) in groups {
            let values = (0..n)
                .map(|step| {
                    let present: Vec<f64> = members.iter().filter_map(|&m| series[m].values[step]).collect();
                    if present.is_empty() {
                        return Ok(None);
                    }
                    let count = present.len() as f64;
                    let mean = present.iter().sum::<f64>() / count;
                    let var = present.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / count;
                    Ok(Some(match op.as_str() {
                        "sum" => present.iter().sum(),
                        "avg" => mean,
                        "count" => count,
                        "group" => 1.0,
                        "min" => present.iter().copied().fold(f64::NAN, |m, x| if m.is_nan() || x < m { x } else { m }),
                        "max" => present.iter().copied().fold(f64::NAN, |m, x| if m.is_nan() || x > m { x } else { m }),
                        "stdvar" => var,
                        "stddev" => var.sqrt(),
                        "quantile" => {
                            quantile(param.as_ref().map_or(f64::NAN, |q| q[step]), present).unwrap_or(f64::NAN)
                        }
                        other => return Err(unsupported(format!("the aggregation {other}"))),
                    }))
                })
                .collect::<Result<Vec<_>, EvalError>>()?;
            out.push(StepSeries { labels, values });
        }
        Ok(Value::Vector(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn run(query: &str, steps: Steps, series: &[RawSeries]) -> Result<Answer, EvalError> {
        let expr = promql_parser::parser::parse(query).unwrap();
        let mut read = Read::new();
        for selection in selections(&expr, steps)? {
            let wanted = series
                .iter()
                .filter(|s| {
                    selection.name.as_ref().is_none_or(|n| s.labels.get(METRIC_NAME) == Some(n))
                        && selection
                            .matchers
                            .matchers
                            .iter()
                            .all(|m| m.is_match(s.labels.get(&m.name).map_or("", |v| v)))
                })
                .cloned()
                .collect();
            read.insert(selection.key, wanted);
        }
        evaluate(&expr, steps, &read)
    }

    #[test]
    fn a_counter_reset_is_added_back_and_the_rate_extrapolated_as_prometheus_does() {
        // Samples every 10 s: 0, 10, 20, then a reset to 5, 15.
        let counter = RawSeries {
            labels: labels(&[("__name__", "c"), ("robot", "a")]),
            samples: vec![(0, 0.0), (10_000, 10.0), (20_000, 20.0), (30_000, 5.0), (40_000, 15.0)],
        };
        let Answer::Series(got) = run("increase(c[40s])", Steps::at(40_000), &[counter]).unwrap() else { panic!() };
        // 20 + 15 = 35 over the 40 s sampled; the window starts at the
        // first sample, and a counter at 0 is not extrapolated below zero.
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, labels(&[("robot", "a")]), "the metric name goes");
        assert!((got[0].1[0].1 - 35.0).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn an_instant_selector_looks_back_five_minutes_inclusive_and_no_further() {
        let gauge = RawSeries { labels: labels(&[("__name__", "g")]), samples: vec![(0, 1.0)] };
        let steps = Steps { start: 0, end: 360_000, step: 60_000 };
        let Answer::Series(got) = run("g", steps, &[gauge]).unwrap() else { panic!() };
        let times: Vec<i64> = got[0].1.iter().map(|p| p.0).collect();
        assert_eq!(times, [0, 60_000, 120_000, 180_000, 240_000, 300_000]);
    }

    #[test]
    fn what_the_engine_cannot_answer_is_refused_naming_it() {
        let steps = Steps::at(0);
        for (query, named) in [
            ("rate(g[5m])[10m:1m]", "subqueries"),
            ("g @ 100", "@ modifier"),
            ("label_replace(g, \"a\", \"b\", \"c\", \"d\")", "label_replace"),
            ("g * on(a) group_left g", "group_left"),
            ("count_values(\"v\", g)", "count_values"),
        ] {
            match run(query, steps, &[]) {
                Err(EvalError::Unsupported(why)) => assert!(why.contains(named), "{query}: {why}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
