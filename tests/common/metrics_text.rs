//! The OpenMetrics text floyd and raftis serve, parsed and checked.

use std::collections::HashMap;

/// The samples of an OpenMetrics text, by name with labels
/// (`floyd_term{group="1"}`), checking the format on the way: every
/// family announced by `# TYPE` (and `# HELP`) before its samples, once;
/// sample names of their family (`_total`, `_bucket`, `_sum`, `_count`);
/// numeric values; histogram buckets cumulative up to `+Inf` = `_count`;
/// `# EOF` last.
pub fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut families: HashMap<String, String> = HashMap::new();
    let mut current: Option<(String, String)> = None;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                families.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} announced twice"
            );
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "an unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {line}")),
        };
        let name = series.split('{').next().unwrap();
        let (family, kind) = current
            .as_ref()
            .unwrap_or_else(|| panic!("a sample before any # TYPE: {line}"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        assert!(
            allowed.iter().any(|s| name == format!("{family}{s}")),
            "{name} is not a sample of {kind} {family}"
        );
        samples.insert(series.to_string(), value);
    }
    for (family, kind) in &families {
        if kind == "histogram" {
            let buckets: Vec<f64> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{family}_bucket")))
                .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
                .collect();
            assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{family}: cumulative");
            assert_eq!(
                buckets.last(),
                samples.get(&format!("{family}_count")),
                "{family}: +Inf = count"
            );
        }
    }
    samples
}

/// One sample's value (`name{labels}` as written), or a panic naming it.
pub fn sample(text: &str, series: &str) -> f64 {
    *parse(text)
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}
