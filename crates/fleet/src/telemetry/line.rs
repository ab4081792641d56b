//! Line protocol in, a [`Chunk`] out: InfluxData's parser reads each line;
//! this module groups the points by series, applies the precision, drops
//! the tags the server sets, and refuses the whole body at its first bad
//! line (a write is all or nothing).

use crate::codes;
use std::collections::HashMap;

use influxdb_line_protocol::builder::{AfterField, LineProtocolBuilder};
use influxdb_line_protocol::{FieldValue, ParsedLine};
use relayhub_core::error::ApiError;

use super::model::{Chunk, Kind, RESERVED_TAGS, Series, SeriesKey, Values};

/// The unit of the timestamps in a body (`precision=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    /// InfluxDB v2's names (`ns`, `us`, `ms`, `s`; v1's `n` and `u` too);
    /// nanoseconds when absent.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.unwrap_or("ns") {
            "ns" | "n" => Ok(Precision::Nanoseconds),
            "us" | "u" | "µs" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            _ => Err(ApiError::invalid_field("precision is ns, us, ms or s")),
        }
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }
}

/// Bounds on what one body may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of a measurement, tag key or value, or field key.
    pub name_bytes: usize,
    /// Tags on one line.
    pub tags: usize,
    /// Bytes of one string field value.
    pub string_bytes: usize,
    /// Distinct series in one body.
    pub series: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { name_bytes: 256, tags: 64, string_bytes: 64 * 1024, series: 100_000 }
    }
}

/// A parsed body: its points, and its lines again for forwarding (with the
/// robot's tags) when asked for.
#[derive(Debug)]
pub struct Parsed {
    pub chunk: Chunk,
    pub lines: usize,
    pub forward: Option<Vec<u8>>,
}

/// Parses `body`. Lines without a timestamp get `now` (Unix ns);
/// `forward_tags` (the robot's `robot`, `hostname`, `arch`) asks for the
/// lines re-written with them, for a forwarding target.
pub fn parse(
    body: &str,
    precision: Precision,
    now: i64,
    limits: Limits,
    forward_tags: Option<&[(&str, &str)]>,
) -> Result<Parsed, ApiError> {
    // The whole body in one pass of the parser; only a body that fails is
    // read again line by line, to name the line (and to forgive `\r\n`).
    let mut reading = Reading::new(body, forward_tags);
    let whole = influxdb_line_protocol::parse_lines(body)
        .try_for_each(|line| reading.accept(&line.map_err(|_| ())?, precision, now, limits).map_err(|_| ()));
    match whole {
        Ok(()) => Ok(reading.finish()),
        Err(()) => parse_numbered(body, precision, now, limits, forward_tags),
    }
}

/// [`parse`], one line at a time, for the error that names the line.
fn parse_numbered(
    body: &str,
    precision: Precision,
    now: i64,
    limits: Limits,
    forward_tags: Option<&[(&str, &str)]>,
) -> Result<Parsed, ApiError> {
    let mut reading = Reading::new(body, forward_tags);
    let mut line_no = 1;
    for segment in influxdb_line_protocol::split_lines(body) {
        let at = line_no;
        line_no += 1 + segment.bytes().filter(|b| *b == b'\n').count();
        let text = segment.trim_start_matches([' ', '\t']).trim_end_matches(['\r', ' ', '\t']);
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let bad = |why: &dyn std::fmt::Display| {
            let shown: String = text.chars().take(120).collect();
            ApiError::new(codes::INVALID_LINE_PROTOCOL, format!("line {at}: {why}: {shown}"))
        };
        match influxdb_line_protocol::parse_lines(text).next() {
            Some(Ok(line)) => reading.accept(&line, precision, now, limits).map_err(|why| bad(&why))?,
            Some(Err(err)) => return Err(bad(&err)),
            None => {}
        }
    }
    Ok(reading.finish())
}

/// Tags given by name and value.
type Tags<'t> = &'t [(&'t str, &'t str)];

/// A body being read: its points grouped, and its lines for forwarding
/// (with the robot's tags).
struct Reading<'t> {
    grouper: Grouper,
    forward: Option<(Vec<u8>, Tags<'t>)>,
    lines: usize,
}

impl<'t> Reading<'t> {
    fn new(body: &str, forward_tags: Option<Tags<'t>>) -> Self {
        let forward = forward_tags.map(|tags| (Vec::with_capacity(body.len() + body.len() / 4), tags));
        Self { grouper: Grouper::default(), forward, lines: 0 }
    }

    fn accept(&mut self, line: &ParsedLine<'_>, precision: Precision, now: i64, limits: Limits) -> Result<(), String> {
        let time = match line.timestamp {
            None => now,
            Some(t) => t.checked_mul(precision.nanos()).ok_or("the timestamp is out of range")?,
        };
        self.grouper.add(line, time, limits)?;
        if let Some((out, tags)) = self.forward.as_mut() {
            write_forward(out, line, tags, time);
        }
        self.lines += 1;
        Ok(())
    }

    fn finish(self) -> Parsed {
        Parsed { chunk: self.grouper.finish(), lines: self.lines, forward: self.forward.map(|(out, _)| out) }
    }
}

/// Points gathered per series. Lines name their series by measurement and
/// tags as written (in any order, with tags the server drops); each such
/// spelling is looked up by a hash of its parts, so no key is built for
/// the lines of a series already seen.
#[derive(Default)]
struct Grouper {
    by_spelling: HashMap<u64, Vec<(Spelling, usize)>>,
    by_key: HashMap<(String, Vec<(String, String)>), usize>,
    groups: Vec<Group>,
    series: Vec<Series>,
}

/// A measurement and its tags as a line writes them.
struct Spelling {
    measurement: String,
    tags: Vec<(String, String)>,
}

impl Spelling {
    fn of(line: &ParsedLine<'_>) -> Self {
        let tags = line.series.tag_set.iter().flatten().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self { measurement: line.series.measurement.to_string(), tags }
    }

    fn hash(line: &ParsedLine<'_>) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        line.series.measurement.as_str().hash(&mut hasher);
        for (k, v) in line.series.tag_set.iter().flatten() {
            (k.as_str(), v.as_str()).hash(&mut hasher);
        }
        hasher.finish()
    }

    fn matches(&self, line: &ParsedLine<'_>) -> bool {
        let tags = line.series.tag_set.as_deref().unwrap_or_default();
        self.measurement == line.series.measurement.as_str()
            && self.tags.len() == tags.len()
            && self.tags.iter().zip(tags).all(|((a, b), (k, v))| a == k.as_str() && b == v.as_str())
    }
}

/// A measurement and tags, and its fields' series.
struct Group {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, usize)>,
}

impl Grouper {
    fn add(&mut self, line: &ParsedLine<'_>, time: i64, limits: Limits) -> Result<(), String> {
        let hash = Spelling::hash(line);
        let known = self.by_spelling.get(&hash).and_then(|seen| seen.iter().find(|(s, _)| s.matches(line)));
        let group = match known {
            Some(&(_, group)) => group,
            None => {
                let group = self.group_of(line, limits)?;
                self.by_spelling.entry(hash).or_default().push((Spelling::of(line), group));
                group
            }
        };
        for (name, value) in line.field_set.iter() {
            let index = match self.groups[group].fields.iter().find(|(field, _)| field.as_str() == name.as_str()) {
                Some(&(_, index)) => index,
                None => self.new_series(group, name.as_str(), kind_of(value), limits)?,
            };
            let series = &mut self.series[index];
            push(&mut series.values, value, limits).map_err(|why| format!("field {}: {why}", name.as_str()))?;
            series.times.push(time);
        }
        Ok(())
    }

    fn group_of(&mut self, line: &ParsedLine<'_>, limits: Limits) -> Result<usize, String> {
        let measurement = checked(line.series.measurement.as_str(), "the measurement", limits)?;
        let mut tags = Vec::new();
        for (key, value) in line.series.tag_set.iter().flatten() {
            if RESERVED_TAGS.contains(&key.as_str()) {
                continue;
            }
            tags.push((checked(key.as_str(), "a tag key", limits)?, checked(value.as_str(), "a tag value", limits)?));
        }
        if tags.len() > limits.tags {
            return Err(format!("more than {} tags", limits.tags));
        }
        tags.sort();
        if let Some(pair) = tags.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(format!("duplicate tag {:?}", pair[0].0));
        }
        let key = (measurement, tags);
        if let Some(&group) = self.by_key.get(&key) {
            return Ok(group);
        }
        let group = self.groups.len();
        self.groups.push(Group { measurement: key.0.clone(), tags: key.1.clone(), fields: Vec::new() });
        self.by_key.insert(key, group);
        Ok(group)
    }

    fn new_series(&mut self, group: usize, field: &str, kind: Kind, limits: Limits) -> Result<usize, String> {
        if self.series.len() >= limits.series {
            return Err(format!("more than {} series in one body", limits.series));
        }
        let field = checked(field, "a field key", limits)?;
        let Group { measurement, tags, .. } = &self.groups[group];
        let key = SeriesKey { measurement: measurement.clone(), tags: tags.clone(), field: field.clone() };
        let index = self.series.len();
        self.series.push(Series { key, times: Vec::new(), values: Values::empty(kind) });
        self.groups[group].fields.push((field, index));
        Ok(index)
    }

    fn finish(self) -> Chunk {
        let mut series = self.series;
        series.iter_mut().for_each(Series::normalize);
        series.sort_by(|a, b| a.key.cmp(&b.key));
        Chunk { series }
    }
}

fn checked(name: &str, what: &str, limits: Limits) -> Result<String, String> {
    if name.len() > limits.name_bytes {
        return Err(format!("{what} is longer than {} bytes", limits.name_bytes));
    }
    Ok(name.to_owned())
}

fn kind_of(value: &FieldValue<'_>) -> Kind {
    match value {
        FieldValue::F64(_) => Kind::Float,
        FieldValue::I64(_) => Kind::Integer,
        FieldValue::U64(_) => Kind::Unsigned,
        FieldValue::Boolean(_) => Kind::Boolean,
        FieldValue::String(_) => Kind::String,
    }
}

fn push(values: &mut Values, value: &FieldValue<'_>, limits: Limits) -> Result<(), String> {
    match (values, value) {
        (Values::Float(v), FieldValue::F64(x)) if x.is_finite() => v.push(*x),
        (Values::Float(_), FieldValue::F64(_)) => return Err("not a finite number".into()),
        (Values::Integer(v), FieldValue::I64(x)) => v.push(*x),
        (Values::Unsigned(v), FieldValue::U64(x)) => v.push(*x),
        (Values::Boolean(v), FieldValue::Boolean(x)) => v.push(*x),
        (Values::String(v), FieldValue::String(x)) => {
            if x.len() > limits.string_bytes {
                return Err(format!("a string longer than {} bytes", limits.string_bytes));
            }
            v.push(x.as_str().to_owned());
        }
        (values, value) => {
            let (was, is) = (values.kind(), kind_of(value));
            return Err(format!("{is:?} here, {was:?} earlier in this body (one type per field)").to_lowercase());
        }
    }
    Ok(())
}

/// Appends `line` with the robot's tags in place of any it sent.
fn write_forward(out: &mut Vec<u8>, line: &ParsedLine<'_>, robot_tags: &[(&str, &str)], time: i64) {
    let mut builder = LineProtocolBuilder::new_with(std::mem::take(out)).measurement(line.series.measurement.as_str());
    for (key, value) in robot_tags {
        if !value.is_empty() {
            builder = builder.tag(key, value);
        }
    }
    for (key, value) in line.series.tag_set.iter().flatten() {
        if !RESERVED_TAGS.contains(&key.as_str()) {
            builder = builder.tag(key.as_str(), value.as_str());
        }
    }
    let mut fields = line.field_set.iter();
    let Some((name, value)) = fields.next() else { return };
    let mut builder = first_field(builder, name.as_str(), value);
    for (name, value) in fields {
        builder = next_field(builder, name.as_str(), value);
    }
    *out = builder.timestamp(time).close_line().build();
}

type AfterMeasurement = LineProtocolBuilder<Vec<u8>, influxdb_line_protocol::builder::AfterMeasurement>;

fn first_field(b: AfterMeasurement, name: &str, value: &FieldValue<'_>) -> LineProtocolBuilder<Vec<u8>, AfterField> {
    match value {
        FieldValue::F64(x) => b.field(name, *x),
        FieldValue::I64(x) => b.field(name, *x),
        FieldValue::U64(x) => b.field(name, *x),
        FieldValue::Boolean(x) => b.field(name, *x),
        FieldValue::String(x) => b.field(name, x.as_str()),
    }
}

fn next_field(
    b: LineProtocolBuilder<Vec<u8>, AfterField>,
    name: &str,
    value: &FieldValue<'_>,
) -> LineProtocolBuilder<Vec<u8>, AfterField> {
    match value {
        FieldValue::F64(x) => b.field(name, *x),
        FieldValue::I64(x) => b.field(name, *x),
        FieldValue::U64(x) => b.field(name, *x),
        FieldValue::Boolean(x) => b.field(name, *x),
        FieldValue::String(x) => b.field(name, x.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn parsed(body: &str, precision: Precision) -> Result<Parsed, ApiError> {
        parse(body, precision, NOW, Limits::default(), None)
    }

    fn series<'a>(chunk: &'a Chunk, measurement: &str, field: &str) -> &'a Series {
        chunk.series.iter().find(|s| s.key.measurement == measurement && s.key.field == field).expect("the series")
    }

    #[test]
    fn every_field_type_escaping_and_precision() {
        let body = "# a comment\n\
            cpu,cpu=cpu0,host=pi usage_idle=99.5,usage_user=0.5 1700000000\n\
            \n\
            mem,host=pi total=4000i,free=12u,ok=true 1700000001\r\n\
            syslog,app\\ name=sshd message=\"said \\\"hi\\\", left\",level=\"info\" 1700000002\n\
            weird\\,name,tag\\=key=a\\ b value=1 1700000003\n";
        let p = parsed(body, Precision::Seconds).unwrap();
        assert_eq!(p.lines, 4);
        let idle = series(&p.chunk, "cpu", "usage_idle");
        assert_eq!(idle.key.tags, vec![("cpu".into(), "cpu0".into()), ("host".into(), "pi".into())]);
        assert_eq!(
            (idle.times.clone(), idle.values.clone()),
            (vec![1_700_000_000_000_000_000], Values::Float(vec![99.5]))
        );
        assert_eq!(series(&p.chunk, "mem", "total").values, Values::Integer(vec![4000]));
        assert_eq!(series(&p.chunk, "mem", "free").values, Values::Unsigned(vec![12]));
        assert_eq!(series(&p.chunk, "mem", "ok").values, Values::Boolean(vec![true]));
        let message = series(&p.chunk, "syslog", "message");
        assert_eq!(message.values, Values::String(vec!["said \"hi\", left".into()]));
        assert_eq!(message.key.tags, vec![("app name".into(), "sshd".into())]);
        let weird = series(&p.chunk, "weird,name", "value");
        assert_eq!(weird.key.tags, vec![("tag=key".into(), "a b".into())]);
    }

    #[test]
    fn timestamps_scale_and_default_to_now() {
        for (precision, raw, want) in [
            (Precision::Nanoseconds, "5", 5),
            (Precision::Microseconds, "5", 5_000),
            (Precision::Milliseconds, "5", 5_000_000),
            (Precision::Seconds, "-5", -5_000_000_000),
        ] {
            let p = parsed(&format!("m v=1 {raw}"), precision).unwrap();
            assert_eq!(p.chunk.series[0].times, vec![want]);
        }
        assert_eq!(parsed("m v=1", Precision::Seconds).unwrap().chunk.series[0].times, vec![NOW]);
        let overflow = parsed("m v=1 9223372036854775807", Precision::Seconds).unwrap_err();
        assert!(overflow.message.contains("out of range"), "{}", overflow.message);
    }

    #[test]
    fn the_first_bad_line_is_named_and_nothing_is_kept() {
        for (body, line, why) in [
            ("m v=1\nm v=99999999999999999999i\nm v=2", 2, "integer"),
            ("m v=1\nm v=oops", 2, "no fields"),
            ("m v=1\n\n\nm\n", 4, ""),
            ("m v=1i\nm v=2", 2, "one type per field"),
            ("m,t=a,t=b v=1", 1, "duplicate"),
            ("m v=\"open", 1, ""),
            ("m v=1\nm v=1e999", 2, "finite"),
        ] {
            let err = parsed(body, Precision::Nanoseconds).unwrap_err();
            assert_eq!(err.code, codes::INVALID_LINE_PROTOCOL);
            assert!(err.message.starts_with(&format!("line {line}: ")), "{body:?}: {}", err.message);
            assert!(err.message.to_lowercase().contains(why), "{body:?}: {}", err.message);
        }
    }

    #[test]
    fn the_servers_tags_cannot_be_written_and_reach_forwarding_instead() {
        let tags = [("robot", "kitchen"), ("hostname", "pi-1"), ("arch", "arm64")];
        let p = parse(
            "cpu,robot=evil,host=x,arch=z usage=1.5,n=2i 7",
            Precision::Nanoseconds,
            NOW,
            Limits::default(),
            Some(&tags),
        )
        .unwrap();
        assert!(p.chunk.series.iter().all(|s| s.key.tags == vec![("host".to_owned(), "x".to_owned())]));
        let forward = String::from_utf8(p.forward.unwrap()).unwrap();
        assert_eq!(forward, "cpu,robot=kitchen,hostname=pi-1,arch=arm64,host=x usage=1.5,n=2i 7\n");
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits { name_bytes: 4, tags: 1, string_bytes: 3, series: 2 };
        for (body, why) in [
            ("measure v=1", "measurement"),
            ("m,a=1,b=2 v=1", "tags"),
            ("m v=\"long\"", "string"),
            ("m a=1,b=2,c=3", "series"),
        ] {
            let err = parse(body, Precision::Nanoseconds, NOW, limits, None).unwrap_err();
            assert!(err.message.contains(why), "{body}: {}", err.message);
        }
    }
}
