//! Checks a [`SchemaFile`] and compiles it into a [`Schema`], collecting every problem with its
//! field path and YAML line.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Spanned;

use crate::SchemaError;
use crate::indicators::Indicator;
use crate::model::{FieldSchema, SchemaFile};
use crate::schema::{
    EventTime, Field, IntWidth, IpVersion, Problem, Schema, StringRules, StringType, TimestampType,
    Type,
};
use crate::time::TimeFormat;

const TYPES: &str =
    "string, int, smallint, bigint, float, boolean, timestamp, object, array, json, ref";

/// Parses and compiles schema YAML. `origin` names the input in errors (a file path or a built-in).
pub fn compile(yaml: &str, origin: &str) -> Result<Schema, SchemaError> {
    let file: SchemaFile = serde_saphyr::from_str(yaml).map_err(|e| SchemaError::Yaml {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    let mut c = Compiler {
        definitions: &file.definitions,
        problems: Vec::new(),
        warnings: Vec::new(),
        event_times: 0,
        resolving: Vec::new(),
        event_id: None,
        indicator_fields: BTreeSet::new(),
    };
    let name = match &file.schema {
        None => {
            c.problem(
                "",
                Some(1),
                "missing `schema` (the log type name, e.g. `Custom.MyLogs`)",
            );
            String::new()
        }
        Some(n) => {
            if !valid_log_type(&n.value) {
                c.problem(
                    "",
                    Some(n.referenced.line()),
                    format!(
                        "schema name `{}` is not a valid log type: use dot-separated words that start \
                         with a capital letter, e.g. `Custom.MyLogs`",
                        n.value
                    ),
                );
            }
            n.value.clone()
        }
    };
    if let Some(p) = &file.parser {
        let line = Some(p.referenced.line());
        let kinds: Vec<&str> = p.value.keys().map(String::as_str).collect();
        match kinds.as_slice() {
            ["native"] => {}
            [other] => c.problem(
                "",
                line,
                format!(
                    "parser `{other}` is not supported: orgtrail reads JSON lines; remove `parser` \
                     (or use `native` for a built-in log type)"
                ),
            ),
            _ => c.problem(
                "",
                line,
                "`parser` must have exactly one key (e.g. `native`)",
            ),
        }
    }
    if let Some(v) = &file.version
        && v.value != 0
    {
        c.problem(
            "",
            Some(v.referenced.line()),
            format!("`version` must be 0, not {}", v.value),
        );
    }
    if let Some(f) = &file.field_discovery_enabled
        && f.value
    {
        c.warn(
            "",
            Some(f.referenced.line()),
            "`fieldDiscoveryEnabled` is not supported: unknown fields are dropped",
        );
    }
    for key in file.unknown.keys() {
        c.warn("", None, format!("unknown top-level key `{key}` ignored"));
    }
    let fields = match &file.fields {
        None => {
            c.problem(
                "",
                None,
                "missing `fields`: a schema needs at least one field",
            );
            Vec::new()
        }
        Some(list) if list.is_empty() => {
            c.problem(
                "",
                None,
                "`fields` is empty: a schema needs at least one field",
            );
            Vec::new()
        }
        Some(list) => c.fields(list, "", &[], Some(&[])),
    };
    if !c.problems.is_empty() {
        return Err(SchemaError::Invalid {
            origin: origin.to_owned(),
            problems: c.problems,
        });
    }
    Ok(Schema {
        name,
        description: file.description.clone(),
        reference_url: file.reference_url.clone(),
        fields,
        event_id: c.event_id,
        indicator_fields: c.indicator_fields,
        warnings: c.warnings,
        source: yaml.to_owned(),
    })
}

fn valid_log_type(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut b = part.bytes();
            b.next().is_some_and(|c| c.is_ascii_uppercase()) && b.all(|c| c.is_ascii_alphanumeric())
        })
}

struct Compiler<'a> {
    definitions: &'a BTreeMap<String, Spanned<FieldSchema>>,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    event_times: u32,
    resolving: Vec<String>,
    event_id: Option<Vec<usize>>,
    indicator_fields: BTreeSet<crate::indicators::IndicatorField>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

impl Compiler<'_> {
    fn problem(&mut self, path: &str, line: Option<u64>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &str, line: Option<u64>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }

    /// `index_path` is the path of field indices from the top, while no array has been crossed
    /// (an event id must be a single value per event).
    fn fields(
        &mut self,
        list: &[Spanned<FieldSchema>],
        path: &str,
        inherited: &[Indicator],
        index_path: Option<&[usize]>,
    ) -> Vec<Field> {
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        let mut out = Vec::with_capacity(list.len());
        for (i, node) in list.iter().enumerate() {
            let line = node.referenced.line();
            let f = &node.value;
            let Some(name) = f.name.as_deref() else {
                self.problem(
                    &join(path, &format!("fields[{i}]")),
                    Some(line),
                    "field without a `name`",
                );
                continue;
            };
            let fpath = join(path, name);
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                self.problem(
                    &fpath,
                    Some(line),
                    "a field name must be non-empty and must not start with a digit",
                );
            }
            if let Some(first) = seen.insert(name, line) {
                self.problem(
                    &fpath,
                    Some(line),
                    format!("duplicate field name (first declared on line {first})"),
                );
            }
            let child_index: Option<Vec<usize>> = index_path.map(|p| [p, &[i]].concat());
            let Some(ty) = self.node(node, &fpath, inherited, child_index.as_deref()) else {
                continue;
            };
            out.push(Field::new(
                name.to_owned(),
                f.required,
                f.description.clone(),
                ty,
            ));
        }
        out
    }

    fn node(
        &mut self,
        node: &Spanned<FieldSchema>,
        path: &str,
        inherited: &[Indicator],
        index_path: Option<&[usize]>,
    ) -> Option<Type> {
        let line = Some(node.referenced.line());
        let f = &node.value;
        for key in f.unknown.keys() {
            self.warn(path, line, format!("unknown key `{key}` ignored"));
        }
        if f.is_expiration {
            self.warn(
                path,
                line,
                "`isExpiration` only applies to lookup tables; ignored",
            );
        }
        let Some(kind) = f.kind.as_deref() else {
            self.problem(
                path,
                line,
                format!("missing `type`; expected one of {TYPES}"),
            );
            return None;
        };

        // Keys that only some types accept.
        let is = |k: &[&str]| k.contains(&kind);
        let misplaced = [
            (f.fields.is_some() && !is(&["object"]), "fields", "object"),
            (f.element.is_some() && !is(&["array"]), "element", "array"),
            (f.target.is_some() && !is(&["ref"]), "target", "ref"),
            (
                f.validate.is_some() && !is(&["string"]),
                "validate",
                "string",
            ),
            (
                f.is_embedded_json && !is(&["object", "array", "json"]),
                "isEmbeddedJSON",
                "object, array and json",
            ),
            (
                f.indicators.is_some() && !is(&["string", "array", "object"]),
                "indicators",
                "string, array and object",
            ),
            (
                (f.time_format.is_some() || f.time_formats.is_some())
                    && !is(&["timestamp", "string"]),
                "timeFormat",
                "timestamp",
            ),
            (
                f.is_event_time && !is(&["timestamp", "string"]),
                "isEventTime",
                "timestamp",
            ),
            (f.is_event_id && !is(&["string"]), "isEventId", "string"),
        ];
        for (bad, key, applies) in misplaced {
            if bad {
                self.problem(
                    path,
                    line,
                    format!("`{key}` does not apply to type `{kind}` (only to {applies})"),
                );
            }
        }

        let mut indicators = inherited.to_vec();
        for name in f.indicators.iter().flatten() {
            match Indicator::parse(name) {
                Some(i) => {
                    if !indicators.contains(&i) {
                        indicators.push(i);
                    }
                }
                None => {
                    let valid: Vec<&str> = Indicator::ALL.iter().map(|i| i.name()).collect();
                    self.problem(
                        path,
                        line,
                        format!(
                            "unknown indicator `{name}`; expected one of {}",
                            valid.join(", ")
                        ),
                    );
                }
            }
        }

        let ty = match kind {
            "string" => {
                let validate = f.validate.as_ref().map(|v| {
                    let mut ip_rule = |value: &Option<String>, key: &str| {
                        value.as_deref().and_then(|s| {
                            let parsed = IpVersion::parse(s);
                            if parsed.is_none() {
                                self.problem(
                                    path,
                                    line,
                                    format!(
                                        "`validate.{key}` must be ipv4, ipv6 or any, not `{s}`"
                                    ),
                                );
                            }
                            parsed
                        })
                    };
                    StringRules {
                        ip: ip_rule(&v.ip, "ip"),
                        cidr: ip_rule(&v.cidr, "cidr"),
                        allow: v.allow.clone(),
                        deny: v.deny.clone(),
                    }
                });
                let has_formats = f.time_format.is_some() || f.time_formats.is_some();
                if has_formats && !f.is_event_time {
                    self.warn(
                        path,
                        line,
                        "`timeFormat` on a string without `isEventTime` has no effect",
                    );
                }
                let event_time = f.is_event_time.then(|| {
                    let formats = self.time_formats(f, path, line);
                    self.event_time(formats)
                });
                if f.is_event_id {
                    match index_path {
                        Some(p) if self.event_id.is_none() => self.event_id = Some(p.to_vec()),
                        Some(_) => self.problem(path, line, "only one field can be `isEventId`"),
                        None => self.problem(path, line, "`isEventId` cannot be inside an array"),
                    }
                }
                self.note_indicators(&indicators);
                Type::String(StringType {
                    indicators,
                    validate,
                    event_time,
                    is_event_id: f.is_event_id,
                })
            }
            "int" => Type::Int(IntWidth::Int),
            "smallint" => Type::Int(IntWidth::Small),
            "bigint" => Type::Int(IntWidth::Big),
            "float" => Type::Float,
            "boolean" => Type::Boolean,
            "timestamp" => {
                let formats = self.time_formats(f, path, line);
                let event_time = f.is_event_time.then(|| self.event_time(formats.clone()));
                Type::Timestamp(TimestampType {
                    formats,
                    event_time,
                })
            }
            "json" => Type::Json {
                embedded_json: f.is_embedded_json,
            },
            "object" => match &f.fields {
                Some(list) if !list.is_empty() => Type::Object {
                    fields: self.fields(list, path, &indicators, index_path),
                    embedded_json: f.is_embedded_json,
                },
                _ => {
                    self.problem(path, line, "an `object` needs a non-empty `fields` list");
                    return None;
                }
            },
            "array" => match &f.element {
                Some(el) => {
                    let element = self.node(el, &format!("{path}[]"), &indicators, None)?;
                    Type::Array {
                        element: Box::new(element),
                        embedded_json: f.is_embedded_json,
                    }
                }
                None => {
                    self.problem(
                        path,
                        line,
                        "an `array` needs an `element` (the type of its items)",
                    );
                    return None;
                }
            },
            "ref" => {
                let Some(target) = f.target.as_deref() else {
                    self.problem(
                        path,
                        line,
                        "a `ref` needs a `target` naming one of `definitions`",
                    );
                    return None;
                };
                let Some(def) = self.definitions.get(target) else {
                    let known: Vec<&str> = self.definitions.keys().map(String::as_str).collect();
                    self.problem(
                        path,
                        line,
                        format!(
                            "`target: {target}` is not in `definitions` (defined: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    return None;
                };
                if self.resolving.iter().any(|t| t == target) {
                    self.problem(path, line, format!("`ref` cycle through definition `{target}`: recursive types are not supported"));
                    return None;
                }
                self.resolving.push(target.to_owned());
                let ty = self.node(def, path, &indicators, index_path);
                self.resolving.pop();
                ty?
            }
            other => {
                self.problem(
                    path,
                    line,
                    format!("unknown type `{other}`; expected one of {TYPES}"),
                );
                return None;
            }
        };
        Some(ty)
    }

    fn note_indicators(&mut self, indicators: &[Indicator]) {
        for i in indicators {
            self.indicator_fields.extend(i.fields().iter().copied());
        }
    }

    fn event_time(&mut self, formats: Vec<TimeFormat>) -> EventTime {
        self.event_times += 1;
        EventTime {
            priority: self.event_times,
            formats,
        }
    }

    fn time_formats(&mut self, f: &FieldSchema, path: &str, line: Option<u64>) -> Vec<TimeFormat> {
        let names: Vec<&str> = match (&f.time_format, &f.time_formats) {
            (Some(_), Some(_)) => {
                self.problem(
                    path,
                    line,
                    "use either `timeFormat` or `timeFormats`, not both",
                );
                return Vec::new();
            }
            (Some(one), None) => vec![one.as_str()],
            (None, Some(list)) if list.is_empty() => {
                self.problem(path, line, "`timeFormats` is empty");
                return Vec::new();
            }
            (None, Some(list)) => list.iter().map(String::as_str).collect(),
            (None, None) => vec!["rfc3339"],
        };
        names
            .into_iter()
            .filter_map(|n| {
                let parsed = TimeFormat::parse(n);
                if parsed.is_none() {
                    self.problem(
                        path,
                        line,
                        format!("unknown time format `{n}`; use rfc3339, unix, unix_ms, unix_us, unix_ns or a strftime pattern such as `%Y-%m-%d %H:%M:%S`"),
                    );
                }
                parsed
            })
            .collect()
    }
}
