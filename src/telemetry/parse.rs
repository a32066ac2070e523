//! A quote-aware parser for the Prometheus text exposition format (0.0.4, plus the
//! OpenMetrics bits a scraper meets: `# EOF`, `# UNIT`, `_created`, exemplars).
//!
//! Why our own and not `prometheus-parse` (decision recorded in docs/telemetry.md): that crate
//! splits label values on `,`, drops labels holding `=` and samples holding `}`, rejects names
//! with `:`, keeps escapes undecoded, returns `_sum`/`_count` as unrelated samples and skips
//! bad lines silently. Here label values are read character by character with escapes
//! decoded, summaries and histograms come back joined, and every rejected line is reported.

use std::collections::HashMap;

/// Labels of one series, sorted by name (so equal label sets compare equal).
pub type Labels = Vec<(String, String)>;

/// What `# TYPE` declared for a family (`Untyped` when nothing did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Quantiles plus `_sum` and `_count`.
    Summary,
    /// Cumulative `_bucket{le}` plus `_sum` and `_count`.
    Histogram,
    /// No or unknown type.
    Untyped,
}

impl Kind {
    fn parse(text: &str) -> Self {
        match text {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "summary" => Self::Summary,
            "histogram" => Self::Histogram,
            _ => Self::Untyped,
        }
    }
}

/// The value of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter, gauge or untyped sample.
    Number(f64),
    /// A summary joined from its quantile, `_sum` and `_count` samples.
    Summary {
        /// `_count`.
        count: f64,
        /// `_sum` (0 when absent, as the OTel Prometheus compatibility spec says).
        sum: f64,
        /// `(quantile, value)` pairs in the order they came.
        quantiles: Vec<(f64, f64)>,
    },
    /// A histogram joined from its `_bucket`, `_sum` and `_count` samples.
    Histogram {
        /// `_count`.
        count: f64,
        /// `_sum`, when the source gave one.
        sum: Option<f64>,
        /// `(le, cumulative count)` pairs sorted by bound, `+Inf` included when present.
        buckets: Vec<(f64, f64)>,
    },
}

/// One series of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels (without `quantile`/`le`).
    pub labels: Labels,
    /// Its value.
    pub value: Value,
    /// The sample's own timestamp, when the source wrote one.
    pub timestamp_ms: Option<i64>,
    /// OpenMetrics `_created` (seconds since the epoch): when a counter started.
    pub created: Option<f64>,
}

/// All series of one metric name.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The metric name (the `# TYPE` name for typed families).
    pub name: String,
    /// Declared type.
    pub kind: Kind,
    /// `# HELP` text, escapes decoded.
    pub help: Option<String>,
    /// `# UNIT` (OpenMetrics), when given.
    pub unit: Option<String>,
    /// Series in first-seen order.
    pub series: Vec<Series>,
}

/// A line (or family) that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based line number (0 for a family dropped as a whole).
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// A parsed exposition page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Families in first-seen order.
    pub families: Vec<Family>,
    /// Everything not used, with reasons.
    pub rejected: Vec<Rejected>,
}

/// Which part of a composite family a sample fills.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Plain,
    Sum,
    Count,
    Bucket,
    Created,
}

/// A family while it is being joined: composite series are looked up by label set.
struct Building {
    family: Family,
    index: HashMap<Labels, usize>,
    has_count: Vec<bool>,
}

/// Parses a whole page. Never fails: unusable lines land in [`Exposition::rejected`].
pub fn parse(text: &str) -> Exposition {
    let mut families: Vec<Building> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut rejected = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.trim() == "EOF" {
                break;
            }
            if let Err(reason) = meta(comment, &mut families, &mut by_name) {
                rejected.push(Rejected {
                    line: n + 1,
                    reason,
                });
            }
            continue;
        }
        let outcome = sample(line).and_then(|s| place(s, &mut families, &mut by_name));
        if let Err(reason) = outcome {
            rejected.push(Rejected {
                line: n + 1,
                reason,
            });
        }
    }
    let mut out = Exposition {
        families: Vec::with_capacity(families.len()),
        rejected,
    };
    for b in families {
        out.families.push(finish(b, &mut out.rejected));
    }
    out
}

/// `# HELP`, `# TYPE`, `# UNIT`; other comments are ignored, as the format allows.
fn meta(
    comment: &str,
    families: &mut Vec<Building>,
    by_name: &mut HashMap<String, usize>,
) -> Result<(), String> {
    let comment = comment.trim_start();
    let (keyword, rest) = comment.split_once([' ', '\t']).unwrap_or((comment, ""));
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return Ok(());
    }
    let rest = rest.trim_start();
    let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if !valid_name(name) {
        return Err(format!("# {keyword} names an invalid metric name {name:?}"));
    }
    let i = family_index(name, Kind::Untyped, families, by_name);
    let family = &mut families[i].family;
    match keyword {
        "HELP" => family.help = Some(unescape_help(text)),
        "UNIT" => family.unit = Some(text.trim().to_string()).filter(|u| !u.is_empty()),
        _ => {
            if !family.series.is_empty() {
                return Err(format!(
                    "# TYPE for {name} comes after its samples; the type is ignored"
                ));
            }
            family.kind = Kind::parse(text.trim());
        }
    }
    Ok(())
}

fn family_index(
    name: &str,
    kind: Kind,
    families: &mut Vec<Building>,
    by_name: &mut HashMap<String, usize>,
) -> usize {
    if let Some(&i) = by_name.get(name) {
        return i;
    }
    families.push(Building {
        family: Family {
            name: name.to_string(),
            kind,
            help: None,
            unit: None,
            series: Vec::new(),
        },
        index: HashMap::new(),
        has_count: Vec::new(),
    });
    by_name.insert(name.to_string(), families.len() - 1);
    families.len() - 1
}

/// One sample line, split into its parts.
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_set(after, &mut labels)?;
    }
    // An OpenMetrics exemplar (`# {...} v`) follows the value; it is not kept.
    let rest = rest.split_once(" #").map_or(rest, |(v, _)| v);
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("{name} has no value"))
        .and_then(number)?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("{name} has a timestamp that is not integer ms: {t:?}"))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!(
            "{name} has unexpected text after its value: {extra:?}"
        ));
    }
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!("{name} repeats a label name"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Reads `name="value", ...}` and returns the text after the closing brace.
fn label_set<'a>(mut s: &'a str, labels: &mut Labels) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s
            .find('=')
            .ok_or_else(|| "a label has no `=`".to_string())?;
        let name = s[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        let after_eq = s[eq + 1..].trim_start();
        let quoted = after_eq
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name} has an unquoted value"))?;
        let (value, after) = quoted_value(quoted)
            .ok_or_else(|| format!("label {name} has an unterminated or badly escaped value"))?;
        labels.push((name.to_string(), value));
        s = after.trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(format!("label {name} is not followed by `,` or `}}`"));
        }
    }
}

/// A label value up to its closing quote, escapes (`\\`, `\"`, `\n`) decoded.
fn quoted_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

fn number(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b".+-eE".contains(&b)) =>
        {
            text.parse::<f64>()
                .map_err(|_| format!("value {text:?} is not a number"))
        }
        _ => Err(format!("value {text:?} is not a number")),
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn valid_label_name(name: &str) -> bool {
    !name.contains(':') && valid_name(name)
}

/// The family a sample belongs to and the part it fills: the exact name first, then a
/// typed family whose suffix rules claim it (`_sum`/`_count`/`_bucket`/`_total`/`_created`).
fn owner(
    name: &str,
    by_name: &HashMap<String, usize>,
    families: &[Building],
) -> Option<(usize, Part)> {
    if let Some(&i) = by_name.get(name) {
        let kind = families[i].family.kind;
        if !matches!(kind, Kind::Summary | Kind::Histogram) {
            return Some((i, Part::Plain));
        }
    }
    const SUFFIXES: [(&str, Part); 5] = [
        ("_sum", Part::Sum),
        ("_count", Part::Count),
        ("_bucket", Part::Bucket),
        ("_total", Part::Plain),
        ("_created", Part::Created),
    ];
    for (suffix, part) in SUFFIXES {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        let Some(&i) = by_name.get(base) else {
            continue;
        };
        let kind = families[i].family.kind;
        let fits = match part {
            Part::Sum | Part::Count => matches!(kind, Kind::Summary | Kind::Histogram),
            Part::Bucket => kind == Kind::Histogram,
            Part::Plain => kind == Kind::Counter,
            Part::Created => kind != Kind::Gauge && kind != Kind::Untyped,
        };
        if fits {
            return Some((i, part));
        }
    }
    by_name.get(name).map(|&i| (i, Part::Plain))
}

fn place(
    s: Sample,
    families: &mut Vec<Building>,
    by_name: &mut HashMap<String, usize>,
) -> Result<(), String> {
    let (i, part) = match owner(&s.name, by_name, families) {
        Some(found) => found,
        None => (
            family_index(&s.name, Kind::Untyped, families, by_name),
            Part::Plain,
        ),
    };
    let b = &mut families[i];
    let kind = b.family.kind;
    let Sample {
        name,
        mut labels,
        value,
        timestamp_ms,
    } = s;
    if !matches!(kind, Kind::Summary | Kind::Histogram) {
        if part == Part::Created {
            return set_created(b, labels, value);
        }
        b.family.series.push(Series {
            labels,
            value: Value::Number(value),
            timestamp_ms,
            created: None,
        });
        return Ok(());
    }
    // Composite: the `quantile`/`le` label picks the slot, the rest names the series.
    let slot_label = if kind == Kind::Summary {
        "quantile"
    } else {
        "le"
    };
    let slot = labels
        .iter()
        .position(|(k, _)| k == slot_label)
        .map(|p| labels.remove(p).1);
    let bound = match (&slot, part) {
        (Some(text), Part::Plain | Part::Bucket) => Some(number(text)?),
        (None, Part::Plain | Part::Bucket) => {
            return Err(format!("{name} has no {slot_label} label"));
        }
        _ => None,
    };
    if part == Part::Created {
        return set_created(b, labels, value);
    }
    let j = match b.index.get(&labels) {
        Some(&j) => j,
        None => {
            b.family.series.push(Series {
                labels: labels.clone(),
                value: if kind == Kind::Summary {
                    Value::Summary {
                        count: 0.0,
                        sum: 0.0,
                        quantiles: Vec::new(),
                    }
                } else {
                    Value::Histogram {
                        count: 0.0,
                        sum: None,
                        buckets: Vec::new(),
                    }
                },
                timestamp_ms,
                created: None,
            });
            b.has_count.push(false);
            b.index.insert(labels, b.family.series.len() - 1);
            b.family.series.len() - 1
        }
    };
    if part == Part::Count {
        b.has_count[j] = true;
    }
    match (&mut b.family.series[j].value, part, bound) {
        (Value::Summary { count, .. } | Value::Histogram { count, .. }, Part::Count, _) => {
            *count = value;
        }
        (Value::Summary { sum, .. }, Part::Sum, _) => *sum = value,
        (Value::Histogram { sum, .. }, Part::Sum, _) => *sum = Some(value),
        (Value::Summary { quantiles, .. }, Part::Plain, Some(q)) => quantiles.push((q, value)),
        (Value::Histogram { buckets, .. }, Part::Bucket, Some(le)) => buckets.push((le, value)),
        _ => return Err(format!("{name} does not fit its {kind:?} family")),
    }
    Ok(())
}

fn set_created(b: &mut Building, labels: Labels, value: f64) -> Result<(), String> {
    let found = b.family.series.iter_mut().find(|s| s.labels == labels);
    match found {
        Some(series) => {
            series.created = Some(value);
            Ok(())
        }
        None => Err(format!(
            "{}_created comes before the series it dates",
            b.family.name
        )),
    }
}

/// Drops composite series without `_count` (the spec's rule) and sorts buckets.
fn finish(mut b: Building, rejected: &mut Vec<Rejected>) -> Family {
    if matches!(b.family.kind, Kind::Summary | Kind::Histogram) {
        let name = b.family.name.clone();
        let mut keep = b.has_count.iter();
        b.family.series.retain(|_| *keep.next().unwrap_or(&false));
        let dropped = b.has_count.iter().filter(|c| !**c).count();
        if dropped > 0 {
            rejected.push(Rejected {
                line: 0,
                reason: format!("{dropped} series of {name} have no {name}_count and were dropped"),
            });
        }
        for s in &mut b.family.series {
            if let Value::Histogram { buckets, .. } = &mut s.value {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
    }
    b.family
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Exposition {
        parse(text)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_values_keep_commas_equals_braces_and_decode_escapes() {
        let page = one(concat!(
            "st2_rule_matches{rule=\"pack.rule,with,commas\"} 1\n",
            "st2_rule_matches{rule=\"a=b\"} 2\n",
            "st2_rule_matches{rule=\"quote\\\"inside\"} 3\n",
            "st2_rule_matches{rule=\"brace}inside\"} 4\n",
            "st2_rule_matches{rule=\"back\\\\slash\\nnewline\"} 5\n",
            "st2_rule_matches 6\n",
        ));
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        let f = &page.families[0];
        let got: Vec<(Labels, Value)> = f
            .series
            .iter()
            .map(|s| (s.labels.clone(), s.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    labels(&[("rule", "pack.rule,with,commas")]),
                    Value::Number(1.0)
                ),
                (labels(&[("rule", "a=b")]), Value::Number(2.0)),
                (labels(&[("rule", "quote\"inside")]), Value::Number(3.0)),
                (labels(&[("rule", "brace}inside")]), Value::Number(4.0)),
                (
                    labels(&[("rule", "back\\slash\nnewline")]),
                    Value::Number(5.0)
                ),
                (labels(&[]), Value::Number(6.0)),
            ]
        );
    }

    #[test]
    fn names_with_colons_are_metrics() {
        let page = one("# TYPE recording:rule_name gauge\nrecording:rule_name 1.5\n");
        assert!(page.rejected.is_empty());
        assert_eq!(page.families[0].name, "recording:rule_name");
        assert_eq!(page.families[0].kind, Kind::Gauge);
        assert_eq!(page.families[0].series[0].value, Value::Number(1.5));
    }

    #[test]
    fn summaries_and_histograms_are_joined() {
        let page = one(concat!(
            "# HELP t Timer.\n# TYPE t summary\n",
            "t{quantile=\"0.5\"} 0.1\nt{quantile=\"0.99\"} 0.3\nt_sum 2.5\nt_count 10\n",
            "# TYPE h histogram\n",
            "h_bucket{svc=\"api\",le=\"1\"} 3\nh_bucket{svc=\"api\",le=\"+Inf\"} 4\n",
            "h_bucket{svc=\"api\",le=\"0.5\"} 1\nh_sum{svc=\"api\"} 2\nh_count{svc=\"api\"} 4\n",
        ));
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        assert_eq!(page.families.len(), 2);
        assert_eq!(page.families[0].help.as_deref(), Some("Timer."));
        assert_eq!(
            page.families[0].series[0].value,
            Value::Summary {
                count: 10.0,
                sum: 2.5,
                quantiles: vec![(0.5, 0.1), (0.99, 0.3)]
            }
        );
        assert_eq!(page.families[1].series[0].labels, labels(&[("svc", "api")]));
        assert_eq!(
            page.families[1].series[0].value,
            Value::Histogram {
                count: 4.0,
                sum: Some(2.0),
                buckets: vec![(0.5, 1.0), (1.0, 3.0), (f64::INFINITY, 4.0)]
            }
        );
    }

    #[test]
    fn untyped_sum_and_count_stay_separate_gauges() {
        let page = one("x_sum 1\nx_count 2\n");
        let names: Vec<&str> = page.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["x_sum", "x_count"]);
        assert!(page.families.iter().all(|f| f.kind == Kind::Untyped));
    }

    #[test]
    fn a_summary_without_count_is_dropped_and_reported() {
        let page = one("# TYPE t summary\nt{quantile=\"0.5\"} 1\nt_sum 2\n");
        assert!(page.families[0].series.is_empty());
        assert!(
            page.rejected[0].reason.contains("t_count"),
            "{:?}",
            page.rejected
        );
    }

    #[test]
    fn bad_lines_are_counted_with_their_line_numbers() {
        let page = one(concat!(
            "good 1\n",
            "9bad 1\n",
            "novalue\n",
            "x{a=\"unterminated} 1\n",
            "x{a=unquoted} 1\n",
            "x{a=\"1\",a=\"2\"} 1\n",
            "x 1 notatime\n",
            "x abc\n",
            "x{a=\"bad\\escape\"} 1\n",
            "also_good{a=\"b\",} 2 1700000000000\n",
        ));
        let lines: Vec<usize> = page.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(page.families.len(), 2);
        assert_eq!(
            page.families[1].series[0].timestamp_ms,
            Some(1_700_000_000_000)
        );
    }

    #[test]
    fn openmetrics_counters_total_created_and_exemplars() {
        let page = one(concat!(
            "# TYPE om counter\n# UNIT om seconds\n",
            "om_total 5 # {trace_id=\"abc\"} 1\n",
            "om_created 1700000000.5\n",
            "# EOF\nafter_eof 1\n",
        ));
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        assert_eq!(page.families.len(), 1);
        let s = &page.families[0].series[0];
        assert_eq!(
            (s.value.clone(), s.created),
            (Value::Number(5.0), Some(1_700_000_000.5))
        );
        assert_eq!(page.families[0].unit.as_deref(), Some("seconds"));
    }

    #[test]
    fn special_values_parse() {
        let page = one("a +Inf\nb -Inf\nc NaN\nd 1e-3\n");
        let v: Vec<f64> = page
            .families
            .iter()
            .map(|f| match f.series[0].value {
                Value::Number(n) => n,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(v[0], f64::INFINITY);
        assert_eq!(v[1], f64::NEG_INFINITY);
        assert!(v[2].is_nan());
        assert_eq!(v[3], 0.001);
    }
}
