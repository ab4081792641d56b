//! The arithmetic of charts, written once: points and rollups fold into
//! mergeable partial aggregates ([`Acc`]) per time bucket, whichever chunk
//! or backend they come from.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use utoipa::ToSchema;

use super::model::{Chunk, SeriesKey};

/// What a chart shows per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    #[default]
    Mean,
    Min,
    Max,
    Last,
}

/// A partial aggregate of points: any two merge into the aggregate of both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    /// When `last` was measured, so merges keep the latest.
    pub last_time: i64,
}

impl Acc {
    pub fn of(time: i64, value: f64) -> Self {
        Self { count: 1, sum: value, min: value, max: value, last: value, last_time: time }
    }

    pub fn merge(&mut self, other: &Acc) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.last_time >= self.last_time {
            (self.last, self.last_time) = (other.last, other.last_time);
        }
    }

    pub fn value(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Mean => self.sum / self.count.max(1) as f64,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Last => self.last,
        }
    }
}

/// Per-step aggregates of numeric series: what outlives raw points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollup {
    pub series: Vec<RollupSeries>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RollupSeries {
    pub key: SeriesKey,
    /// Bucket starts, ascending.
    pub times: Vec<i64>,
    pub accs: Vec<Acc>,
}

/// The start of the `step`-long bucket holding `time`, aligned to the epoch
/// (so every chart and rollup agrees on where buckets start).
pub fn bucket(time: i64, step: i64) -> i64 {
    time - time.rem_euclid(step)
}

impl Rollup {
    /// Rolls a chunk's numeric series up into `step` buckets. A rollup's
    /// aggregates are dated by their bucket (as stored): of two for the
    /// same bucket, the one merged later holds the later `last`.
    pub fn of(chunk: &Chunk, step: i64) -> Rollup {
        let mut folded = Folded::default();
        for series in &chunk.series {
            let slot = folded.entry(series.key.clone()).or_default();
            for (i, &time) in series.times.iter().enumerate() {
                if let Some(value) = series.values.number(i) {
                    fold(slot, bucket(time, step), &Acc::of(time, value));
                }
            }
            slot.iter_mut().for_each(|(start, acc)| acc.last_time = *start);
        }
        Rollup::from_folded(folded)
    }

    /// Merges rollups: aggregates of the same series and bucket combine.
    pub fn merge(rollups: Vec<Rollup>) -> Rollup {
        let mut folded = Folded::default();
        for rollup in rollups {
            for series in rollup.series {
                let slot = folded.entry(series.key).or_default();
                for (time, acc) in series.times.into_iter().zip(&series.accs) {
                    fold(slot, time, acc);
                }
            }
        }
        Rollup::from_folded(folded)
    }

    fn from_folded(folded: Folded) -> Rollup {
        let series = folded
            .into_iter()
            .filter(|(_, buckets)| !buckets.is_empty())
            .map(|(key, buckets)| {
                let (times, accs) = buckets.into_iter().unzip();
                RollupSeries { key, times, accs }
            })
            .collect();
        Rollup { series }
    }

    /// How many buckets the rollup holds, over all series.
    pub fn points(&self) -> usize {
        super::model::points_of(self.series.iter().map(|s| s.times.as_slice()))
    }

    /// The first and last bucket start (`None` when empty).
    pub fn span(&self) -> Option<(i64, i64)> {
        super::model::span_of(self.series.iter().map(|s| s.times.as_slice()))
    }
}

type Folded = BTreeMap<SeriesKey, BTreeMap<i64, Acc>>;

fn fold(buckets: &mut BTreeMap<i64, Acc>, time: i64, acc: &Acc) {
    buckets.entry(time).and_modify(|into| into.merge(acc)).or_insert(*acc);
}

/// A chart being filled: per series, per step bucket.
#[derive(Debug)]
pub struct Chart {
    step: i64,
    folded: Folded,
}

impl Chart {
    pub fn new(step: i64) -> Self {
        Self { step, folded: Folded::default() }
    }

    /// Series with points so far.
    pub fn series(&self) -> usize {
        self.folded.len()
    }

    /// Adds the points of `chunk` within `range`.
    pub fn add_points(&mut self, chunk: &Chunk, range: Range<i64>) {
        for series in &chunk.series {
            let start = series.times.partition_point(|t| *t < range.start);
            let end = series.times.partition_point(|t| *t < range.end);
            if start == end || series.values.number(start).is_none() {
                continue;
            }
            let slot = self.folded.entry(series.key.clone()).or_default();
            for i in start..end {
                let time = series.times[i];
                let value = series.values.number(i).unwrap_or(f64::NAN);
                fold(slot, bucket(time, self.step), &Acc::of(time, value));
            }
        }
    }

    /// Adds rollup buckets starting within `range` (a rollup bucket falls
    /// wholly into the chart bucket its start falls into).
    pub fn add_rollup(&mut self, rollup: &Rollup, range: Range<i64>) {
        for series in &rollup.series {
            let start = series.times.partition_point(|t| *t < range.start);
            let end = series.times.partition_point(|t| *t < range.end);
            if start == end {
                continue;
            }
            let slot = self.folded.entry(series.key.clone()).or_default();
            for i in start..end {
                fold(slot, bucket(series.times[i], self.step), &series.accs[i]);
            }
        }
    }

    /// Each series' `(bucket start, value)`, by series key.
    pub fn finish(self, agg: Agg) -> Vec<(SeriesKey, Vec<(i64, f64)>)> {
        self.folded
            .into_iter()
            .map(|(key, buckets)| (key, buckets.into_iter().map(|(t, acc)| (t, acc.value(agg))).collect::<Vec<_>>()))
            .filter(|(_, points)| !points.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::model::{Series, Values};

    fn chunk(times: Vec<i64>, values: Vec<f64>) -> Chunk {
        let key = SeriesKey { measurement: "cpu".into(), tags: vec![], field: "x".into() };
        Chunk { series: vec![Series { key, times, values: Values::Float(values) }] }
    }

    #[test]
    fn buckets_align_to_the_epoch_before_zero_too() {
        assert_eq!((bucket(125, 60), bucket(120, 60), bucket(-1, 60)), (120, 120, -60));
    }

    #[test]
    fn a_chart_from_points_equals_one_from_their_rollup() {
        let points = chunk((0..600).step_by(10).collect(), (0..60).map(f64::from).collect());
        for agg in [Agg::Mean, Agg::Min, Agg::Max, Agg::Last] {
            let mut direct = Chart::new(120);
            direct.add_points(&points, 0..600);
            let mut rolled = Chart::new(120);
            rolled.add_rollup(&Rollup::merge(vec![Rollup::of(&points, 60)]), 0..600);
            let (direct, rolled) = (direct.finish(agg), rolled.finish(agg));
            assert_eq!(direct, rolled, "{agg:?}");
            assert_eq!(direct[0].1.len(), 5);
        }
        let mut chart = Chart::new(120);
        chart.add_points(&points, 0..600);
        let mean = chart.finish(Agg::Mean);
        assert_eq!(mean[0].1[0], (0, 5.5), "mean of 0..=11");
    }

    #[test]
    fn split_rollups_merge_to_the_whole_and_last_stays_last() {
        let a = Rollup::of(&chunk(vec![0, 10], vec![1.0, 5.0]), 60);
        let b = Rollup::of(&chunk(vec![20, 70], vec![3.0, 9.0]), 60);
        let merged = Rollup::merge(vec![a, b]);
        let first = merged.series[0].accs[0];
        assert_eq!((first.count, first.sum, first.min, first.max, first.last), (3, 9.0, 1.0, 5.0, 3.0));
        assert_eq!(merged.series[0].times, vec![0, 60]);
    }

    #[test]
    fn a_chart_keeps_to_its_range() {
        let mut chart = Chart::new(50);
        chart.add_points(&chunk(vec![50, 100, 150, 199, 200], vec![1.0, 2.0, 3.0, 4.0, 5.0]), 100..200);
        assert_eq!(chart.finish(Agg::Max)[0].1, vec![(100, 2.0), (150, 4.0)]);
    }
}
