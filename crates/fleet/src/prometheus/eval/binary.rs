//! Binary operators: between scalars, a vector and a scalar, and two
//! vectors (one-to-one matching on all labels but the name, or `on`/
//! `ignoring`), with `bool`, and the set operators `and`/`or`/`unless`.

use std::collections::{BTreeMap, HashMap};

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::{Engine, EvalError, Labels, StepSeries, Value, unsupported, without_name};

impl Engine<'_> {
    pub(super) fn binary(&self, b: &BinaryExpr) -> Result<Value, EvalError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        let (lhs, rhs) = (self.eval(&b.lhs)?, self.eval(&b.rhs)?);
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(x, y)| {
                        let v = apply(&op, *x, *y)?;
                        Ok(if comparison { if v.is_some() { 1.0 } else { 0.0 } } else { v.unwrap_or(f64::NAN) })
                    })
                    .collect::<Result<_, EvalError>>()?,
            )),
            (Value::Vector(series), Value::Scalar(s)) | (Value::Scalar(s), Value::Vector(series))
                if b.op.is_set_operator() =>
            {
                let _ = (series, s);
                Err(unsupported(format!("{op} between a vector and a scalar")))
            }
            (Value::Vector(series), Value::Scalar(s)) => {
                self.with_scalar(series, &s, &op, comparison, return_bool, false)
            }
            (Value::Scalar(s), Value::Vector(series)) => {
                self.with_scalar(series, &s, &op, comparison, return_bool, true)
            }
            (Value::Vector(l), Value::Vector(r)) => self.vector_vector(b, l, r, &op, comparison, return_bool),
            _ => Err(unsupported(format!("{op} with a string"))),
        }
    }

    fn with_scalar(
        &self,
        series: Vec<StepSeries>,
        s: &[f64],
        op: &str,
        comparison: bool,
        return_bool: bool,
        scalar_first: bool,
    ) -> Result<Value, EvalError> {
        let mut out = Vec::with_capacity(series.len());
        for serie in series {
            let mut values = Vec::with_capacity(serie.values.len());
            for (i, v) in serie.values.iter().enumerate() {
                values.push(match v {
                    None => None,
                    Some(x) => {
                        let (l, r) = if scalar_first { (s[i], *x) } else { (*x, s[i]) };
                        let result = apply(op, l, r)?;
                        match (comparison, return_bool) {
                            (false, _) => result,
                            (true, true) => Some(if result.is_some() { 1.0 } else { 0.0 }),
                            // A filter keeps the vector's own value.
                            (true, false) => result.map(|_| *x),
                        }
                    }
                });
            }
            let labels = if comparison && !return_bool { serie.labels } else { without_name(serie.labels) };
            out.push(StepSeries { labels, values });
        }
        Ok(Value::Vector(out))
    }

    fn vector_vector(
        &self,
        b: &BinaryExpr,
        lhs: Vec<StepSeries>,
        rhs: Vec<StepSeries>,
        op: &str,
        comparison: bool,
        return_bool: bool,
    ) -> Result<Value, EvalError> {
        let modifier = b.modifier.as_ref();
        let matching = modifier.and_then(|m| m.matching.as_ref());
        let card = modifier.map(|m| &m.card);
        if matches!(card, Some(VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_))) {
            return Err(unsupported("group_left and group_right"));
        }
        let signature = |labels: &Labels| -> Labels {
            match matching {
                Some(LabelModifier::Include(on)) => {
                    labels.iter().filter(|(k, _)| on.labels.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
                }
                Some(LabelModifier::Exclude(ignoring)) => labels
                    .iter()
                    .filter(|(k, _)| !ignoring.labels.contains(k) && k.as_str() != METRIC_NAME)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                None => without_name(labels.clone()),
            }
        };
        let n = self.n();
        if b.op.is_set_operator() {
            let right: Vec<Labels> = rhs.iter().map(|s| signature(&s.labels)).collect();
            let present_right =
                |sig: &Labels, step: usize| rhs.iter().zip(&right).any(|(s, r)| r == sig && s.values[step].is_some());
            let mut out = Vec::new();
            match op {
                "and" | "unless" => {
                    let want = op == "and";
                    for s in lhs {
                        let sig = signature(&s.labels);
                        let values = (0..n).map(|i| s.values[i].filter(|_| present_right(&sig, i) == want)).collect();
                        out.push(StepSeries { labels: s.labels, values });
                    }
                }
                _ => {
                    // or: every lhs sample, and rhs samples whose signature
                    // has no lhs sample at that step.
                    let left: Vec<Labels> = lhs.iter().map(|s| signature(&s.labels)).collect();
                    let present_left = |sig: &Labels, step: usize| {
                        lhs.iter().zip(&left).any(|(s, l)| l == sig && s.values[step].is_some())
                    };
                    let extra: Vec<StepSeries> = rhs
                        .iter()
                        .zip(&right)
                        .map(|(s, sig)| StepSeries {
                            labels: s.labels.clone(),
                            values: (0..n).map(|i| s.values[i].filter(|_| !present_left(sig, i))).collect(),
                        })
                        .collect();
                    out.extend(lhs);
                    out.extend(extra);
                }
            }
            return Ok(Value::Vector(out));
        }
        let mut by_signature: HashMap<Labels, Vec<usize>> = HashMap::new();
        for (i, s) in rhs.iter().enumerate() {
            by_signature.entry(signature(&s.labels)).or_default().push(i);
        }
        let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        for l in &lhs {
            let sig = signature(&l.labels);
            let Some(matches) = by_signature.get(&sig) else { continue };
            let labels = match (comparison && !return_bool, matching) {
                (_, Some(LabelModifier::Include(_))) => sig.clone(),
                (true, _) => l.labels.clone(),
                (false, Some(LabelModifier::Exclude(ignoring))) => {
                    without_name(l.labels.clone()).into_iter().filter(|(k, _)| !ignoring.labels.contains(k)).collect()
                }
                (false, None) => without_name(l.labels.clone()),
            };
            let slot = out.entry(labels).or_insert_with(|| vec![None; n]);
            for (step, cell) in slot.iter_mut().enumerate() {
                let Some(x) = l.values[step] else { continue };
                let present: Vec<f64> = matches.iter().filter_map(|&m| rhs[m].values[step]).collect();
                let y = match present.as_slice() {
                    [] => continue,
                    [y] => *y,
                    _ => {
                        return Err(EvalError::Execution(
                            "found duplicate series for the match group on the right hand side; many-to-many matching not allowed".into(),
                        ));
                    }
                };
                if cell.is_some() {
                    return Err(EvalError::Execution(
                        "found duplicate series for the match group on the left hand side; many-to-many matching not allowed".into(),
                    ));
                }
                let result = apply(op, x, y)?;
                *cell = match (comparison, return_bool) {
                    (false, _) => result,
                    (true, true) => Some(if result.is_some() { 1.0 } else { 0.0 }),
                    (true, false) => result.map(|_| x),
                };
            }
        }
        Ok(Value::Vector(out.into_iter().map(|(labels, values)| StepSeries { labels, values }).collect()))
    }
}

/// An arithmetic result, or a comparison's: `Some` when true (the value is
/// unused), `None` when false.
fn apply(op: &str, x: f64, y: f64) -> Result<Option<f64>, EvalError> {
    let truth = |b: bool| if b { Some(1.0) } else { None };
    Ok(match op {
        "+" => Some(x + y),
        "-" => Some(x - y),
        "*" => Some(x * y),
        "/" => Some(x / y),
        "%" => Some(x % y),
        "^" => Some(x.powf(y)),
        "atan2" => Some(x.atan2(y)),
        "==" => truth(x == y),
        "!=" => truth(x != y),
        ">" => truth(x > y),
        "<" => truth(x < y),
        ">=" => truth(x >= y),
        "<=" => truth(x <= y),
        other => return Err(unsupported(format!("the operator {other}"))),
    })
}
