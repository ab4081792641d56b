//! Chunks as bytes: a deflated dictionary of series, then columns of
//! times and values (numbers compressed with `pco`, strings deflated).
//!
//! Layout: `RHT` 1, a form byte, then length-prefixed sections: the
//! dictionary, then
//! - *grouped* (a write: a few points per series): all times in one
//!   column, and one column per kind of value across the series;
//! - *per series* (compacted chunks): each series' times and values on
//!   their own, so each is compressed with what suits it (`pco` picks a
//!   delta order and a mode such as "multiples of 0.01" per column), and a
//!   reader decodes only the series it wants;
//! - *rollup*: per series, bucket times and the partial aggregates.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use super::aggregate::{Acc, Rollup, RollupSeries};
use super::model::{Chunk, Kind, Series, SeriesKey, Values};

const MAGIC: &[u8; 4] = b"RHT\x01";
const GROUPED: u8 = 0;
const ROLLUP: u8 = 1;
const PER_SERIES: u8 = 2;
/// Series this long on average are compressed one by one: below it the
/// per-column overhead (a few dozen bytes) outweighs what it saves.
const PER_SERIES_FROM: usize = 16;
/// Fresh writes favour speed; compaction favours size.
pub const FAST: usize = 2;
pub const SMALL: usize = 8;

/// A stored chunk that cannot be read (a bug or a damaged database).
#[derive(Debug, thiserror::Error)]
#[error("a telemetry chunk is damaged: {0}")]
pub struct Damaged(pub String);

fn damaged(what: impl std::fmt::Display) -> Damaged {
    Damaged(what.to_string())
}

/// Encodes `chunk` at a `pco` compression `level` ([`FAST`], [`SMALL`]).
pub fn encode(chunk: &Chunk, level: usize) -> Vec<u8> {
    let per_series = chunk.points() >= PER_SERIES_FROM * chunk.series.len().max(1);
    let mut out = Vec::with_capacity(64 + chunk.points() * 4);
    out.extend_from_slice(MAGIC);
    out.push(if per_series { PER_SERIES } else { GROUPED });
    section(&mut out, &dictionary(chunk.series.iter().map(|s| (&s.key, s.values.kind(), s.times.len()))));
    if per_series {
        for series in &chunk.series {
            section(&mut out, &numbers(&series.times, level));
            section(&mut out, &values_column(series.values.kind(), std::iter::once(&series.values), level));
        }
        return out;
    }
    let times: Vec<i64> = chunk.series.iter().flat_map(|s| s.times.iter().copied()).collect();
    section(&mut out, &numbers(&times, level));
    for kind in KINDS {
        let of_kind = chunk.series.iter().filter(|s| s.values.kind() == kind).map(|s| &s.values);
        section(&mut out, &values_column(kind, of_kind, level));
    }
    out
}

/// Encodes a rollup (per-step aggregates).
pub fn encode_rollup(rollup: &Rollup, level: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(ROLLUP);
    section(&mut out, &dictionary(rollup.series.iter().map(|s| (&s.key, Kind::Float, s.times.len()))));
    for series in &rollup.series {
        section(&mut out, &numbers(&series.times, level));
        section(&mut out, &numbers(&series.accs.iter().map(|a| a.count).collect::<Vec<_>>(), level));
        for part in ROLLUP_PARTS {
            section(&mut out, &numbers(&series.accs.iter().map(part).collect::<Vec<_>>(), level));
        }
    }
    out
}

/// A rollup's float columns, in order. (When `last` was measured is not
/// kept: of two aggregates of one bucket, the later chunk's `last` wins.)
const ROLLUP_PARTS: [fn(&Acc) -> f64; 4] = [|a| a.sum, |a| a.min, |a| a.max, |a| a.last];

const KINDS: [Kind; 5] = [Kind::Float, Kind::Integer, Kind::Unsigned, Kind::Boolean, Kind::String];

/// The series a chunk holds, without decoding its points.
pub fn keys(bytes: &[u8]) -> Result<Vec<(SeriesKey, Kind, usize)>, Damaged> {
    let mut input = Reader::new(bytes);
    input.header()?;
    read_dictionary(input.section()?)
}

/// Decodes the series of a points chunk that `wanted` selects.
pub fn decode(bytes: &[u8], wanted: impl Fn(&SeriesKey) -> bool) -> Result<Chunk, Damaged> {
    let mut input = Reader::new(bytes);
    let form = input.header()?;
    let dictionary = read_dictionary(input.section()?)?;
    let selected: Vec<bool> = dictionary.iter().map(|(key, _, _)| wanted(key)).collect();
    let mut series = match form {
        GROUPED if selected.contains(&true) => decode_grouped(&mut input, &dictionary, &selected)?,
        GROUPED => Vec::new(),
        PER_SERIES => {
            let mut series = Vec::new();
            for ((key, kind, n), selected) in dictionary.into_iter().zip(selected) {
                let (times, values) = (input.section()?, input.section()?);
                if selected {
                    series.push(Series { key, times: unnumbers(times, n)?, values: read_values(kind, values, n)? });
                }
            }
            series
        }
        _ => return Err(damaged("not a chunk of points")),
    };
    series.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Chunk { series })
}

fn decode_grouped(
    input: &mut Reader<'_>,
    dictionary: &[(SeriesKey, Kind, usize)],
    selected: &[bool],
) -> Result<Vec<Series>, Damaged> {
    let times: Vec<i64> = unnumbers(input.section()?, total(dictionary))?;
    let mut offsets = Vec::with_capacity(dictionary.len());
    let mut at = 0;
    for (_, _, n) in dictionary {
        offsets.push(at);
        at += n;
    }
    let mut series = Vec::new();
    for kind in KINDS {
        let column = input.section()?;
        let members: Vec<usize> = (0..dictionary.len()).filter(|&i| dictionary[i].1 == kind).collect();
        if !members.iter().any(|&i| selected[i]) {
            continue;
        }
        let count = members.iter().map(|&i| dictionary[i].2).sum();
        let values = read_values(kind, column, count)?;
        let mut start = 0;
        for i in members {
            let (key, _, n) = &dictionary[i];
            if selected[i] {
                series.push(Series {
                    key: key.clone(),
                    times: times[offsets[i]..offsets[i] + n].to_vec(),
                    values: slice(&values, start, *n),
                });
            }
            start += n;
        }
    }
    Ok(series)
}

/// Decodes the series of a rollup that `wanted` selects.
pub fn decode_rollup(bytes: &[u8], wanted: impl Fn(&SeriesKey) -> bool) -> Result<Rollup, Damaged> {
    let mut input = Reader::new(bytes);
    if input.header()? != ROLLUP {
        return Err(damaged("points where a rollup was expected"));
    }
    let mut series = Vec::new();
    for (key, _, n) in read_dictionary(input.section()?)? {
        let times = input.section()?;
        let counts = input.section()?;
        let parts = [input.section()?, input.section()?, input.section()?, input.section()?];
        if !wanted(&key) {
            continue;
        }
        let times: Vec<i64> = unnumbers(times, n)?;
        let counts: Vec<u64> = unnumbers(counts, n)?;
        let parts: Vec<Vec<f64>> = parts.iter().map(|p| unnumbers(p, n)).collect::<Result<_, _>>()?;
        let accs = (0..n)
            .map(|i| Acc {
                count: counts[i],
                sum: parts[0][i],
                min: parts[1][i],
                max: parts[2][i],
                last: parts[3][i],
                last_time: times[i],
            })
            .collect();
        series.push(RollupSeries { key, times, accs });
    }
    Ok(Rollup { series })
}

fn total(dictionary: &[(SeriesKey, Kind, usize)]) -> usize {
    dictionary.iter().map(|(_, _, n)| n).sum()
}

fn dictionary<'a>(entries: impl Iterator<Item = (&'a SeriesKey, Kind, usize)>) -> Vec<u8> {
    let mut plain = Vec::new();
    let entries: Vec<_> = entries.collect();
    varint(&mut plain, entries.len() as u64);
    for (key, kind, n) in entries {
        text(&mut plain, &key.measurement);
        varint(&mut plain, key.tags.len() as u64);
        for (k, v) in &key.tags {
            text(&mut plain, k);
            text(&mut plain, v);
        }
        text(&mut plain, &key.field);
        plain.push(kind.code());
        varint(&mut plain, n as u64);
    }
    deflate(&plain)
}

fn read_dictionary(bytes: &[u8]) -> Result<Vec<(SeriesKey, Kind, usize)>, Damaged> {
    let plain = inflate(bytes)?;
    let mut input = Reader::new(&plain);
    let n = input.count()?;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let measurement = input.text()?;
        let tag_count = input.count()?;
        let mut tags = Vec::with_capacity(tag_count.min(64));
        for _ in 0..tag_count {
            tags.push((input.text()?, input.text()?));
        }
        let field = input.text()?;
        let kind = Kind::from_code(input.byte()?).ok_or_else(|| damaged("an unknown kind"))?;
        let points = input.count()?;
        out.push((SeriesKey { measurement, tags, field }, kind, points));
    }
    Ok(out)
}

fn values_column<'a>(kind: Kind, of_kind: impl Iterator<Item = &'a Values>, level: usize) -> Vec<u8> {
    match kind {
        Kind::Float => numbers(&gather(of_kind, |v| if let Values::Float(x) = v { x.as_slice() } else { &[] }), level),
        Kind::Integer => {
            numbers(&gather(of_kind, |v| if let Values::Integer(x) = v { x.as_slice() } else { &[] }), level)
        }
        Kind::Unsigned => {
            numbers(&gather(of_kind, |v| if let Values::Unsigned(x) = v { x.as_slice() } else { &[] }), level)
        }
        Kind::Boolean => {
            let bits = gather(of_kind, |v| if let Values::Boolean(x) = v { x.as_slice() } else { &[] });
            let mut packed = vec![0u8; bits.len().div_ceil(8)];
            for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
                packed[i / 8] |= 1 << (i % 8);
            }
            packed
        }
        Kind::String => {
            let mut plain = Vec::new();
            for value in of_kind {
                if let Values::String(strings) = value {
                    strings.iter().for_each(|s| text(&mut plain, s));
                }
            }
            if plain.is_empty() { plain } else { deflate(&plain) }
        }
    }
}

fn read_values(kind: Kind, column: &[u8], count: usize) -> Result<Values, Damaged> {
    Ok(match kind {
        Kind::Float => Values::Float(unnumbers(column, count)?),
        Kind::Integer => Values::Integer(unnumbers(column, count)?),
        Kind::Unsigned => Values::Unsigned(unnumbers(column, count)?),
        Kind::Boolean => {
            if column.len() != count.div_ceil(8) {
                return Err(damaged("a boolean column of the wrong length"));
            }
            Values::Boolean((0..count).map(|i| column[i / 8] & (1 << (i % 8)) != 0).collect())
        }
        Kind::String => {
            let plain = if count == 0 { Vec::new() } else { inflate(column)? };
            let mut input = Reader::new(&plain);
            Values::String((0..count).map(|_| input.text()).collect::<Result<_, _>>()?)
        }
    })
}

fn gather<'a, T: Copy + 'a>(of_kind: impl Iterator<Item = &'a Values>, part: impl Fn(&'a Values) -> &'a [T]) -> Vec<T> {
    of_kind.flat_map(|v| part(v).iter().copied()).collect()
}

fn slice(values: &Values, start: usize, n: usize) -> Values {
    let range = start..start + n;
    match values {
        Values::Float(v) => Values::Float(v[range].to_vec()),
        Values::Integer(v) => Values::Integer(v[range].to_vec()),
        Values::Unsigned(v) => Values::Unsigned(v[range].to_vec()),
        Values::Boolean(v) => Values::Boolean(v[range].to_vec()),
        Values::String(v) => Values::String(v[range].to_vec()),
    }
}

fn numbers<T: pco::data_types::Number>(values: &[T], level: usize) -> Vec<u8> {
    if values.is_empty() {
        return Vec::new();
    }
    let config = pco::ChunkConfig::default().with_compression_level(level);
    // Compressing numbers that are in memory cannot fail but for a bug.
    pco::standalone::simple_compress(values, &config).expect("pco compresses numbers")
}

fn unnumbers<T: pco::data_types::Number>(bytes: &[u8], count: usize) -> Result<Vec<T>, Damaged> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let values: Vec<T> = pco::standalone::simple_decompress(bytes).map_err(damaged)?;
    if values.len() != count {
        return Err(damaged(format!("{} values where {count} were listed", values.len())));
    }
    Ok(values)
}

fn deflate(plain: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(plain.len() / 3), Compression::fast());
    // Writing to a Vec cannot fail.
    encoder.write_all(plain).expect("deflate into memory");
    encoder.finish().expect("deflate into memory")
}

fn inflate(bytes: &[u8]) -> Result<Vec<u8>, Damaged> {
    let mut plain = Vec::new();
    DeflateDecoder::new(bytes).read_to_end(&mut plain).map_err(damaged)?;
    Ok(plain)
}

fn section(out: &mut Vec<u8>, bytes: &[u8]) {
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn text(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads what the writers above wrote, refusing anything short or odd.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn header(&mut self) -> Result<u8, Damaged> {
        if self.take(4)? != MAGIC {
            return Err(damaged("not a chunk"));
        }
        self.byte()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Damaged> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or_else(|| damaged("cut short"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, Damaged> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, Damaged> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(damaged("a number too long"))
    }

    fn count(&mut self) -> Result<usize, Damaged> {
        let n = usize::try_from(self.varint()?).map_err(damaged)?;
        // No count can exceed the bytes left to describe it.
        if n > self.bytes.len().saturating_mul(8).saturating_add(1 << 20) {
            return Err(damaged("an impossible count"));
        }
        Ok(n)
    }

    fn section(&mut self) -> Result<&'a [u8], Damaged> {
        let n = self.count()?;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, Damaged> {
        let n = self.count()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(measurement: &str, field: &str) -> SeriesKey {
        SeriesKey { measurement: measurement.into(), tags: vec![("host".into(), "pi".into())], field: field.into() }
    }

    fn sample() -> Chunk {
        let times: Vec<i64> = (0..360).map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000).collect();
        let mut series = vec![
            Series {
                key: key("cpu", "usage_idle"),
                times: times.clone(),
                values: Values::Float((0..360).map(|i| 90.0 + f64::from(i % 7) * 0.25).collect()),
            },
            Series {
                key: key("mem", "free"),
                times: times.clone(),
                values: Values::Integer((0..360).map(|i| 1 << 30 | i).collect()),
            },
            Series {
                key: key("net", "bytes"),
                times: times.clone(),
                values: Values::Unsigned((0..360).map(|i| i * 1500).collect()),
            },
            Series {
                key: key("sys", "ok"),
                times: times.clone(),
                values: Values::Boolean((0..360).map(|i| i % 3 == 0).collect()),
            },
            Series {
                key: key("syslog", "message"),
                times: times[..3].to_vec(),
                values: Values::String(vec!["boot".into(), String::new(), "ünïcode \"quoted\"".into()]),
            },
        ];
        series.sort_by(|a, b| a.key.cmp(&b.key));
        Chunk { series }
    }

    #[test]
    fn chunks_round_trip_and_cost_little_per_point() {
        let chunk = sample();
        for level in [FAST, SMALL] {
            let bytes = encode(&chunk, level);
            assert_eq!(decode(&bytes, |_| true).unwrap(), chunk);
            let per_point = bytes.len() as f64 / chunk.points() as f64;
            assert!(per_point < 2.5, "{per_point:.2} bytes per point at level {level}");
        }
        let bytes = encode(&chunk, SMALL);
        let only = decode(&bytes, |k| k.measurement == "mem").unwrap();
        assert_eq!(only.series.len(), 1);
        assert_eq!(only.series[0], chunk.series[1]);
        assert_eq!(keys(&bytes).unwrap().len(), 5);
        assert_eq!(decode(&encode(&Chunk::default(), FAST), |_| true).unwrap(), Chunk::default());
    }

    #[test]
    fn rollups_round_trip() {
        let acc = |n: u64, at: i64| Acc { count: n, sum: n as f64 * 2.0, min: 1.0, max: 3.0, last: 2.5, last_time: at };
        let rollup = Rollup {
            series: vec![RollupSeries { key: key("cpu", "x"), times: vec![0, 60], accs: vec![acc(2, 0), acc(6, 60)] }],
        };
        let bytes = encode_rollup(&rollup, SMALL);
        assert_eq!(decode_rollup(&bytes, |_| true).unwrap(), rollup);
        assert!(decode(&bytes, |_| true).is_err(), "a rollup is not points");
    }

    #[test]
    fn damaged_bytes_are_refused_not_panicked_on() {
        let bytes = encode(&sample(), FAST);
        for cut in [0, 3, 5, 9, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], |_| true).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[6] ^= 0xff;
        let _ = decode(&flipped, |_| true);
    }
}
