//! Panther's schema tests (`*_tests.yml`): several YAML documents, each with `name`, `logType`, one
//! raw `input` event and the expected `result` row (or `results`, or neither for "no row").
//!
//! Comparison rules (Panther's `logtesting`): `p_log_type` must match; `p_row_id` and `p_parse_time`
//! must be present (their expected values are ignored); `p_event_time` must equal the expected one,
//! or equal `p_parse_time` when the expected row has none; then the rows must be equal as JSON.
//! Times are rendered as RFC 3339.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::normalize::Outcome;
use crate::time::TimeLayout;
use crate::{Normalizer, Registry, SchemaError};

/// One test document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestCase {
    pub name: String,
    pub log_type: String,
    pub input: String,
    pub result: Option<String>,
    pub results: Option<Vec<String>>,
}

/// Parses a `*_tests.yml` file.
pub fn parse(yaml: &str, origin: &str) -> Result<Vec<TestCase>, SchemaError> {
    let cases: Vec<TestCase> =
        serde_saphyr::from_multiple(yaml).map_err(|e| SchemaError::Test {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
    if cases.is_empty() {
        return Err(SchemaError::Test {
            origin: origin.to_owned(),
            message: "no test documents found (expected `name`, `logType`, `input`, `result`)"
                .into(),
        });
    }
    Ok(cases)
}

/// The verdict on one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub name: String,
    /// Empty when the test passed; otherwise one line per difference.
    pub differences: Vec<String>,
    /// The row orgtrail produced (pretty JSON), to help fix a failing test.
    pub actual: Option<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Runs one test case against the registry's schema for its `logType`.
pub fn run(case: &TestCase, registry: &Registry) -> Result<Verdict, SchemaError> {
    let schema = registry.get(&case.log_type)?;
    let normalizer = Normalizer::new(schema);
    let mut differences = Vec::new();
    let mut actual_rows = Vec::new();
    match normalizer.normalize(case.input.as_bytes()) {
        Outcome::Row(row) => {
            let text = normalizer.to_json(&row, TimeLayout::Rfc3339);
            // Our own output is always valid JSON.
            actual_rows.push(serde_json::from_str::<Json>(&text).unwrap_or(Json::Null));
        }
        Outcome::Failure(f) => {
            for e in &f.errors {
                differences.push(format!("the input did not normalize: {e}"));
            }
        }
        Outcome::Skip => {}
    }
    let expected: Vec<&String> = match (&case.result, &case.results) {
        (Some(r), None) => vec![r],
        (None, Some(rs)) => rs.iter().collect(),
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => {
            return Err(SchemaError::Test {
                origin: case.name.clone(),
                message: "give either `result` or `results`, not both".into(),
            });
        }
    };
    if expected.is_empty() && !actual_rows.is_empty() {
        differences.clear();
        differences.push("expected no row (no `result`), but the input produced one".into());
    }
    if !expected.is_empty() && differences.is_empty() && actual_rows.len() != expected.len() {
        differences.push(format!(
            "expected {} row(s), got {}",
            expected.len(),
            actual_rows.len()
        ));
    }
    for (i, (exp_text, actual)) in expected.iter().zip(&actual_rows).enumerate() {
        let prefix = if expected.len() > 1 {
            format!("results[{i}]")
        } else {
            String::new()
        };
        let exp: Json = match serde_json::from_str(exp_text) {
            Ok(v) => v,
            Err(e) => {
                differences.push(format!(
                    "{prefix}the expected result is not valid JSON: {e}"
                ));
                continue;
            }
        };
        compare_rows(&exp, actual, &prefix, &mut differences);
    }
    Ok(Verdict {
        name: case.name.clone(),
        differences,
        actual: actual_rows
            .first()
            .and_then(|r| serde_json::to_string_pretty(r).ok()),
    })
}

fn compare_rows(expected: &Json, actual: &Json, prefix: &str, out: &mut Vec<String>) {
    let (Json::Object(exp), Json::Object(act)) = (expected, actual) else {
        out.push(format!("{prefix}the expected result must be a JSON object"));
        return;
    };
    let get = |m: &Map<String, Json>, k: &str| m.get(k).and_then(Json::as_str).map(str::to_owned);
    if get(exp, "p_log_type") != get(act, "p_log_type") {
        out.push(format!(
            "{prefix}$.p_log_type: expected {:?}, got {:?}",
            get(exp, "p_log_type"),
            get(act, "p_log_type")
        ));
    }
    if get(act, "p_row_id").is_none_or(|s| s.is_empty()) {
        out.push(format!("{prefix}$.p_row_id: empty"));
    }
    let act_parse = get(act, "p_parse_time");
    if act_parse.is_none() {
        out.push(format!("{prefix}$.p_parse_time: missing"));
    }
    let instant = |s: &Option<String>| s.as_deref().and_then(crate::time::parse_rfc3339);
    let act_event = get(act, "p_event_time");
    match exp.get("p_event_time") {
        None => {
            if instant(&act_event) != instant(&act_parse) {
                out.push(format!(
                    "{prefix}$.p_event_time: the expected row has none, so it must equal p_parse_time, but it is {}",
                    act_event.as_deref().unwrap_or("missing")
                ));
            }
        }
        Some(e) => {
            let e = e.as_str().map(str::to_owned);
            if instant(&e).is_none() || instant(&e) != instant(&act_event) {
                out.push(format!(
                    "{prefix}$.p_event_time: expected {}, got {}",
                    e.as_deref().unwrap_or("a non-string"),
                    act_event.as_deref().unwrap_or("missing")
                ));
            }
        }
    }
    let strip = |m: &Map<String, Json>| {
        let mut m = m.clone();
        for k in ["p_log_type", "p_row_id", "p_parse_time", "p_event_time"] {
            m.remove(k);
        }
        Json::Object(m)
    };
    diff(&strip(exp), &strip(act), &format!("{prefix}$"), out);
}

/// Lists the differences between two JSON values, one line per differing path.
pub fn diff(expected: &Json, actual: &Json, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => diff(ev, av, &p, out),
                    None => out.push(format!("{p}: expected {ev}, but it is missing")),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("{path}.{k}: not expected, got {av}"));
                }
            }
        }
        (Json::Array(e), Json::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(ev, av, &format!("{path}[{i}]"), out);
            }
        }
        (e, a) if e != a => out.push(format!("{path}: expected {e}, got {a}")),
        _ => {}
    }
}
