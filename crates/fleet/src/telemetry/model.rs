//! Telemetry as it is stored: a *chunk* is a set of series, each a run of
//! points of one type sorted by time. A write becomes one chunk; the
//! compactor merges a robot's chunks into bigger ones.

use serde::Serialize;
use utoipa::ToSchema;

/// The tags the server sets from the robot's record (seed 002): a robot
/// cannot write them, so it cannot write as another robot.
pub const RESERVED_TAGS: [&str; 3] = ["robot", "hostname", "arch"];

/// What identifies a series within one robot's data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub measurement: String,
    /// Sorted by key, without the reserved tags.
    pub tags: Vec<(String, String)>,
    pub field: String,
}

/// A field's type, as line protocol writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Float,
    Integer,
    Unsigned,
    Boolean,
    String,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Float => 0,
            Kind::Integer => 1,
            Kind::Unsigned => 2,
            Kind::Boolean => 3,
            Kind::String => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [Kind::Float, Kind::Integer, Kind::Unsigned, Kind::Boolean, Kind::String].into_iter().find(|k| k.code() == code)
    }
}

/// A series' values, one type per series.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Float(Vec<f64>),
    Integer(Vec<i64>),
    Unsigned(Vec<u64>),
    Boolean(Vec<bool>),
    String(Vec<String>),
}

impl Values {
    pub fn empty(kind: Kind) -> Self {
        match kind {
            Kind::Float => Values::Float(Vec::new()),
            Kind::Integer => Values::Integer(Vec::new()),
            Kind::Unsigned => Values::Unsigned(Vec::new()),
            Kind::Boolean => Values::Boolean(Vec::new()),
            Kind::String => Values::String(Vec::new()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Values::Float(_) => Kind::Float,
            Values::Integer(_) => Kind::Integer,
            Values::Unsigned(_) => Kind::Unsigned,
            Values::Boolean(_) => Kind::Boolean,
            Values::String(_) => Kind::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Integer(v) => v.len(),
            Values::Unsigned(v) => v.len(),
            Values::Boolean(v) => v.len(),
            Values::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th value as a number for charts (`None` for strings).
    pub fn number(&self, i: usize) -> Option<f64> {
        match self {
            Values::Float(v) => Some(v[i]),
            Values::Integer(v) => Some(v[i] as f64),
            Values::Unsigned(v) => Some(v[i] as f64),
            Values::Boolean(v) => Some(if v[i] { 1.0 } else { 0.0 }),
            Values::String(_) => None,
        }
    }

    /// The `i`th value as text (strings as they are, others formatted).
    pub fn text(&self, i: usize) -> String {
        match self {
            Values::String(v) => v[i].clone(),
            Values::Boolean(v) => v[i].to_string(),
            Values::Integer(v) => v[i].to_string(),
            Values::Unsigned(v) => v[i].to_string(),
            Values::Float(v) => v[i].to_string(),
        }
    }

    /// Keeps the values at `keep` (ascending indexes).
    pub fn select(&self, keep: &[usize]) -> Values {
        fn pick<T: Clone>(v: &[T], keep: &[usize]) -> Vec<T> {
            keep.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            Values::Float(v) => Values::Float(pick(v, keep)),
            Values::Integer(v) => Values::Integer(pick(v, keep)),
            Values::Unsigned(v) => Values::Unsigned(pick(v, keep)),
            Values::Boolean(v) => Values::Boolean(pick(v, keep)),
            Values::String(v) => Values::String(pick(v, keep)),
        }
    }
}

/// One series' points, sorted by time, one per time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub key: SeriesKey,
    /// Unix nanoseconds, ascending, unique.
    pub times: Vec<i64>,
    pub values: Values,
}

impl Series {
    /// Sorts by time, keeping the last written of equal times (a point
    /// written again replaces the earlier one, as in InfluxDB).
    pub fn normalize(&mut self) {
        let n = self.times.len();
        if self.times.windows(2).all(|w| w[0] < w[1]) {
            return;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| self.times[i]);
        let keep: Vec<usize> = (0..n)
            .filter(|&at| at + 1 == n || self.times[order[at]] != self.times[order[at + 1]])
            .map(|at| order[at])
            .collect();
        self.times = keep.iter().map(|&i| self.times[i]).collect();
        self.values = self.values.select(&keep);
    }
}

/// A set of series: what one write stores, what compaction merges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// Sorted by key.
    pub series: Vec<Series>,
}

impl Chunk {
    pub fn points(&self) -> usize {
        points_of(self.series.iter().map(|s| s.times.as_slice()))
    }

    /// The first and last time of any point (`None` when empty).
    pub fn span(&self) -> Option<(i64, i64)> {
        span_of(self.series.iter().map(|s| s.times.as_slice()))
    }

    /// Drops points before `from` (past their retention) and the series
    /// left empty.
    pub fn retain_from(&mut self, from: i64) {
        for series in &mut self.series {
            let start = series.times.partition_point(|t| *t < from);
            if start > 0 {
                let keep: Vec<usize> = (start..series.times.len()).collect();
                series.times.drain(..start);
                series.values = series.values.select(&keep);
            }
        }
        self.series.retain(|s| !s.times.is_empty());
    }

    /// Merges chunks given oldest first: a point at a time some series
    /// already has replaces it (later writes win). A field whose type
    /// changed keeps separate runs per type (both stay readable).
    pub fn merge(chunks: Vec<Chunk>) -> Chunk {
        let mut by_key: std::collections::BTreeMap<(SeriesKey, u8), Series> = std::collections::BTreeMap::new();
        for chunk in chunks {
            for series in chunk.series {
                let slot = (series.key.clone(), series.values.kind().code());
                match by_key.get_mut(&slot) {
                    None => {
                        by_key.insert(slot, series);
                    }
                    Some(into) => append(into, series),
                }
            }
        }
        let mut series: Vec<Series> = by_key.into_values().collect();
        series.iter_mut().for_each(Series::normalize);
        Chunk { series }
    }
}

fn append(into: &mut Series, from: Series) {
    into.times.extend(from.times);
    match (&mut into.values, from.values) {
        (Values::Float(a), Values::Float(b)) => a.extend(b),
        (Values::Integer(a), Values::Integer(b)) => a.extend(b),
        (Values::Unsigned(a), Values::Unsigned(b)) => a.extend(b),
        (Values::Boolean(a), Values::Boolean(b)) => a.extend(b),
        (Values::String(a), Values::String(b)) => a.extend(b),
        // Merge keys include the kind, so the kinds always agree.
        _ => unreachable!("series of one kind"),
    }
}

/// How many points the series' sorted time columns hold together.
pub(crate) fn points_of<'a>(columns: impl Iterator<Item = &'a [i64]>) -> usize {
    columns.map(<[i64]>::len).sum()
}

/// The first and last time over sorted time columns (`None` when all are
/// empty): what a chunk or a rollup covers.
pub(crate) fn span_of<'a>(columns: impl Iterator<Item = &'a [i64]> + Clone) -> Option<(i64, i64)> {
    let first = columns.clone().filter_map(<[i64]>::first).min()?;
    let last = columns.filter_map(<[i64]>::last).max()?;
    Some((*first, *last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(field: &str) -> SeriesKey {
        SeriesKey { measurement: "cpu".into(), tags: vec![], field: field.into() }
    }

    #[test]
    fn normalizing_sorts_and_the_last_write_of_a_time_wins() {
        let mut s = Series { key: key("x"), times: vec![30, 10, 30, 20], values: Values::Integer(vec![1, 2, 3, 4]) };
        s.normalize();
        assert_eq!((s.times, s.values), (vec![10, 20, 30], Values::Integer(vec![2, 4, 3])));
    }

    #[test]
    fn merging_keeps_later_points_and_both_types_of_a_changed_field() {
        let a =
            Chunk { series: vec![Series { key: key("x"), times: vec![1, 2], values: Values::Float(vec![1.0, 2.0]) }] };
        let b = Chunk {
            series: vec![
                Series { key: key("x"), times: vec![2, 3], values: Values::Float(vec![20.0, 3.0]) },
                Series { key: key("x"), times: vec![4], values: Values::String(vec!["four".into()]) },
            ],
        };
        let merged = Chunk::merge(vec![a, b]);
        assert_eq!(merged.series.len(), 2);
        assert_eq!(merged.series[0].values, Values::Float(vec![1.0, 20.0, 3.0]));
        assert_eq!(merged.points(), 4);
        assert_eq!(merged.span(), Some((1, 4)));
        let mut recent = merged.clone();
        recent.retain_from(3);
        assert_eq!((recent.points(), recent.span()), (2, Some((3, 4))));
        recent.retain_from(5);
        assert_eq!(recent, Chunk::default());
    }
}
