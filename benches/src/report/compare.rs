//! `--compare old.json`: what got faster or slower since an earlier `results.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::table::{Table, format_ns, format_ratio};

/// Changes beyond this fraction either way are flagged.
pub const THRESHOLD: f64 = 0.10;

/// Reads and checks an earlier `results.json`; the message says what is wrong with it.
pub fn load(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not valid JSON: {error}", path.display()))?;
    if !value.get("groups").is_some_and(Value::is_object) {
        return Err(format!(
            "{} is not a report results.json (no \"groups\" object)",
            path.display()
        ));
    }
    Ok(value)
}

/// Every timed figure of a `results.json`: key → nanoseconds per operation.
pub fn figures(results: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Some(groups) = results.get("groups").and_then(Value::as_object) else {
        return out;
    };
    for group in groups.values() {
        let Some(figures) = group.get("figures").and_then(Value::as_array) else {
            continue;
        };
        for figure in figures {
            let key = figure.get("key").and_then(Value::as_str);
            let ns = figure.get("ns_per_op").and_then(Value::as_f64);
            if let (Some(key), Some(ns)) = (key, ns) {
                out.insert(key.to_owned(), ns);
            }
        }
    }
    out
}

/// The comparison as markdown: a summary line and a table of every figure present in both
/// runs, with the ratio new/old and a flag beyond ±[`THRESHOLD`].
pub fn render(old: &Value, new: &Value) -> String {
    let old_figures = figures(old);
    let new_figures = figures(new);
    let date = |value: &Value| {
        value
            .pointer("/header/date")
            .and_then(Value::as_str)
            .unwrap_or("unknown date")
            .to_owned()
    };
    let mut table = Table::new(["figure", "old ns", "new ns", "new/old", "change"]);
    let (mut faster, mut slower, mut same) = (0, 0, 0);
    for (key, &new_ns) in &new_figures {
        let Some(&old_ns) = old_figures.get(key) else {
            continue;
        };
        let ratio = new_ns / old_ns;
        let change = if !ratio.is_finite() {
            "–"
        } else if ratio < 1.0 - THRESHOLD {
            faster += 1;
            "**faster**"
        } else if ratio > 1.0 + THRESHOLD {
            slower += 1;
            "slower"
        } else {
            same += 1;
            ""
        };
        table.row([
            format!("`{key}`"),
            format_ns(old_ns),
            format_ns(new_ns),
            format_ratio(ratio),
            change.to_owned(),
        ]);
    }
    let only_old = old_figures
        .keys()
        .filter(|key| !new_figures.contains_key(*key))
        .count();
    let only_new = new_figures
        .keys()
        .filter(|key| !old_figures.contains_key(*key))
        .count();
    format!(
        "## Comparison: {} → {}\n\n\
         {faster} faster, {slower} slower, {same} within ±{:.0}%; \
         {only_old} figures only in the old run, {only_new} only in the new one.\n\n{}\n",
        date(old),
        date(new),
        THRESHOLD * 100.0,
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_changes() {
        let old = json!({"header": {"date": "a"}, "groups": {"g": {"figures": [
            {"key": "g/x", "ns_per_op": 10.0},
            {"key": "g/y", "ns_per_op": 10.0},
            {"key": "g/z", "ns_per_op": 10.0},
            {"key": "g/gone", "ns_per_op": 1.0}]}}});
        let new = json!({"header": {"date": "b"}, "groups": {"g": {"figures": [
            {"key": "g/x", "ns_per_op": 5.0},
            {"key": "g/y", "ns_per_op": 20.0},
            {"key": "g/z", "ns_per_op": 10.5}]}}});
        let text = render(&old, &new);
        assert!(text.contains("1 faster, 1 slower, 1 within ±10%"), "{text}");
        assert!(text.contains("1 figures only in the old run"), "{text}");
        assert!(text.contains("| `g/y`"), "{text}");
    }
}
