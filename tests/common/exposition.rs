//! A small parser and checker of the Prometheus text exposition format (0.0.4), so that
//! tests read what a scraper would, not substrings.

use std::collections::BTreeMap;

/// One parsed exposition: every sample by its series (`name{k="v",...}`, labels sorted), and
/// every family's type.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: BTreeMap<String, f64>,
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// The family a sample belongs to: its name, less a histogram's or summary's suffix.
    pub fn family_of<'a>(&self, name: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if matches!(
                    self.types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                ) {
                    return base;
                }
            }
        }
        name
    }

    /// True for a series that must never decrease: counters, and a histogram's or summary's
    /// buckets, sum and count.
    pub fn is_monotonic(&self, series: &str) -> bool {
        let name = series.split('{').next().unwrap_or(series);
        let family = self.family_of(name);
        match self.types.get(family).map(String::as_str) {
            Some("counter") => true,
            Some("histogram") => true,
            Some("summary") => name != family, // _sum and _count, not the quantiles
            _ => false,
        }
    }
}

/// Splits `name{labels} value` into the name, the labels (unescaped) and the value.
fn sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_owned(), Vec::new(), value);
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} unquoted in {line:?}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated label in {line:?}"),
            }
        }
        labels.push((key, value));
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("unexpected {other:?} in {line:?}"),
        }
    }
    assert!(chars.next().is_none(), "text after the labels in {line:?}");
    (name.to_owned(), labels, value)
}

/// One histogram series (its labels less `le`): its buckets `(le, count)` in order, its
/// sum, its count.
type Histogram = (Vec<(f64, f64)>, Option<f64>, Option<f64>);

fn key(name: &str, labels: &[(String, String)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Parses `text`, failing the test if it is not valid exposition: each family's `# HELP` and
/// then `# TYPE` once, before its samples, which are all together; known types only;
/// counters named `_total`; every series once; and each histogram's buckets ascending in
/// `le`, cumulative, ending in `+Inf`, with `_count` equal to the `+Inf` bucket and a `_sum`.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut helped: Option<String> = None;
    let mut current: Option<String> = None;
    let mut histograms: BTreeMap<String, Histogram> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(!help.is_empty(), "empty help for {name}");
            assert!(!out.types.contains_key(name), "{name} described twice");
            helped = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE has a type");
            assert_eq!(
                helped.as_deref(),
                Some(name),
                "TYPE {name} without its HELP first"
            );
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&ty),
                "unknown type {ty}"
            );
            assert_eq!(ty == "counter", name.ends_with("_total"), "{name}: {ty}");
            assert!(out.types.insert(name.to_owned(), ty.to_owned()).is_none());
            current = Some(name.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let (name, labels, value) = sample(line);
        let family = out.family_of(&name).to_owned();
        assert_eq!(
            current.as_deref(),
            Some(family.as_str()),
            "sample outside its family: {line:?}"
        );
        if out.types[&family] == "histogram" {
            let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            let entry = histograms.entry(key(&family, &rest)).or_default();
            if name.ends_with("_bucket") {
                let le = &labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .expect("a bucket has le")
                    .1;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le is a number")
                };
                entry.0.push((le, value));
            } else if name.ends_with("_sum") {
                entry.1 = Some(value);
            } else {
                entry.2 = Some(value);
            }
        }
        assert!(
            out.samples.insert(key(&name, &labels), value).is_none(),
            "series twice: {line:?}"
        );
    }
    for (series, (buckets, sum, count)) in &histograms {
        assert!(!buckets.is_empty(), "{series}: no buckets");
        for pair in buckets.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{series}: le not ascending: {buckets:?}"
            );
            assert!(
                pair[0].1 <= pair[1].1,
                "{series}: buckets not cumulative: {buckets:?}"
            );
        }
        let (last_le, inf) = *buckets.last().unwrap();
        assert_eq!(last_le, f64::INFINITY, "{series}: no +Inf bucket");
        assert_eq!(*count, Some(inf), "{series}: _count is not the +Inf bucket");
        assert!(sum.is_some_and(|s| s >= 0.0), "{series}: no _sum");
    }
    out
}
