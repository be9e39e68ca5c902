//! Tests of the compiler and the normalizer through the public API.

use super::*;
use serde_json::{Value as Json, json};

const PARSE_TIME: &str = "2025-06-02T08:42:11.406218Z";

fn atlassian() -> Normalizer {
    let reg = Registry::with_builtins().unwrap();
    Normalizer::new(reg.get("Atlassian.Audit").unwrap()).with_source(
        Some("61ffc2df-cac2-420e-8c21-88eb656888e6".into()),
        Some("example-org-audit".into()),
    )
}

fn custom(yaml: &str) -> Normalizer {
    Normalizer::new(Arc::new(compile(yaml, "test.yml").unwrap()))
}

fn run(n: &Normalizer, line: &str) -> Result<Json, Vec<FieldError>> {
    match n.normalize_at(line.as_bytes(), PARSE_TIME.parse().unwrap()) {
        Outcome::Row(row) => Ok(serde_json::from_str(&n.to_json(&row, TimeLayout::Lake)).unwrap()),
        Outcome::Failure(f) => Err(f.errors),
        Outcome::Skip => panic!("skipped"),
    }
}

fn errors(n: &Normalizer, line: &str) -> Vec<String> {
    run(n, line)
        .unwrap_err()
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

/// The worked example of panther-semantics.md §11.
const EXAMPLE: &str = r#"{"type":"events","id":"2a4f0a48-ddeb-4525-be21-1c072b130c9f","attributes":{"time":"2025-06-02T08:42:07Z","processedAt":"2025-06-02T08:42:08.913Z","action":"user_logged_in_as_user","actor":{"id":"712020:e3c463f9-a143-43fa-a9fd-cd88964377c5","name":"Riley Admin","email":"riley.admin@example.com","links":{"self":"https://api.atlassian.com/users/712020:e3c463f9-a143-43fa-a9fd-cd88964377c5/manage/profile"}},"context":[{"id":"557058:be6d4a4a-6abb-44fd-87d0-7c35e0fac5b8","type":"users","attributes":{"email":"sam.member@example.com","name":"Sam Member","accountType":"atlassian"},"links":{"self":"https://api.atlassian.com/users/557058:be6d4a4a-6abb-44fd-87d0-7c35e0fac5b8/manage/profile","alt":"https://admin.atlassian.com/o/2d2790c2-d6c8-49dc-a9fe-3b0a11a28927/users"}}],"container":[{"id":"69f57e5e-b7f1-402f-8df2-eaf0eda7c46d","type":"sites","attributes":{"siteName":"example","siteHostName":"https://example.atlassian.net"},"links":{"alt":"https://example.atlassian.net"}}],"location":{"ip":"203.0.113.77","countryName":"Exampleland","regionName":"North","city":"Sampleton"}},"links":{"self":"https://api.atlassian.com/admin/v1/orgs/2d2790c2-d6c8-49dc-a9fe-3b0a11a28927/events/2a4f0a48-ddeb-4525-be21-1c072b130c9f"},"relations":null,"message":{"content":"Logged in as sam.member@example.com","format":"simple"}}"#;

#[test]
fn worked_example_matches_panther_semantics_doc() {
    let n = atlassian();
    let Outcome::Row(row) = n.normalize_at(EXAMPLE.as_bytes(), PARSE_TIME.parse().unwrap()) else {
        panic!("the example must normalize")
    };
    let text = n.to_json(&row, TimeLayout::Lake);
    // Field order: schema order (message before links; processedAt appended to attributes).
    assert!(text.starts_with(r#"{"type":"events","id":"2a4f0a48-ddeb-4525-be21-1c072b130c9f","attributes":{"time":"2025-06-02T08:42:07Z","action""#), "{text}");
    assert!(text.contains(r#""message":{"content":"Logged in as sam.member@example.com","format":"simple"},"links":{"self""#));
    // json fields verbatim, in input key order.
    assert!(text.contains(r#""attributes":{"email":"sam.member@example.com","name":"Sam Member","accountType":"atlassian"}"#));
    assert!(text.contains(r#""p_log_type":"Atlassian.Audit","p_row_id":"#));
    let v: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(v["p_event_time"], "2025-06-02 08:42:07.000000000");
    assert_eq!(v["p_parse_time"], "2025-06-02 08:42:11.406218000");
    assert_eq!(v["p_source_id"], "61ffc2df-cac2-420e-8c21-88eb656888e6");
    assert_eq!(v["p_source_label"], "example-org-audit");
    assert_eq!(
        v["p_any_domain_names"],
        json!(["admin.atlassian.com", "api.atlassian.com"])
    );
    assert_eq!(v["p_any_emails"], json!(["riley.admin@example.com"]));
    assert_eq!(v["p_any_ip_addresses"], json!(["203.0.113.77"]));
    assert_eq!(v["p_any_usernames"], json!(["Riley Admin"]));
    assert_eq!(
        v["attributes"]["processedAt"],
        "2025-06-02 08:42:08.913000000"
    );
    assert!(v.get("relations").is_none(), "relations: null is omitted");
    // The p_any keys come last, alphabetically.
    let order = [
        "\"p_log_type\"",
        "\"p_row_id\"",
        "\"p_event_time\"",
        "\"p_parse_time\"",
        "\"p_source_id\"",
        "\"p_source_label\"",
        "\"p_any_domain_names\"",
        "\"p_any_emails\"",
        "\"p_any_ip_addresses\"",
        "\"p_any_usernames\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "p_* fields in Panther's order: {text}"
    );
    // p_row_id: first 32 hex digits of SHA-256("source:id").
    assert_eq!(
        v["p_row_id"],
        row_id(
            "61ffc2df-cac2-420e-8c21-88eb656888e6",
            "2a4f0a48-ddeb-4525-be21-1c072b130c9f"
        )
    );
    assert_eq!(v["p_row_id"].as_str().unwrap().len(), 32);
}

#[test]
fn row_id_is_deterministic_and_depends_on_source() {
    let a = run(&atlassian(), EXAMPLE).unwrap();
    let b = run(&atlassian(), EXAMPLE).unwrap();
    assert_eq!(a["p_row_id"], b["p_row_id"]);
    let other = atlassian().with_source(Some("other".into()), None);
    assert_ne!(run(&other, EXAMPLE).unwrap()["p_row_id"], a["p_row_id"]);
}

#[test]
fn atlassian_variations_normalize() {
    let n = atlassian();
    // Ex. 1 event 2: time without ms, context entry without id, no location.
    let ev = r#"{"type":"events","id":"a3a5de4d-4ec4-4499-8034-accfb9aaaccd","attributes":{"time":"2025-06-02T08:14:59Z","processedAt":"2025-06-02T08:15:43.412Z","action":"group_created","actor":{"id":"9c1b33225a0bf3cebed571f8","name":"Riley Admin","email":"riley.admin@example.com"},"context":[{"type":"groups","attributes":{"groupName":"contractors"}}],"container":[{"id":"2d2790c2-d6c8-49dc-a9fe-3b0a11a28927","type":"orgs","attributes":{"name":"Example Org"}}]},"links":{"self":"https://api.atlassian.com/x"},"message":{"content":"Created group contractors","format":"simple"},"unknownTopLevel":{"deep":[1,2,3]}}"#;
    let v = run(&n, ev).unwrap();
    assert_eq!(v["p_event_time"], "2025-06-02 08:14:59.000000000");
    assert_eq!(
        v["attributes"]["context"][0],
        json!({"type":"groups","attributes":{"groupName":"contractors"}})
    );
    assert!(v.get("unknownTopLevel").is_none());
    assert!(v["attributes"].get("location").is_none());

    // Ex. 2 event 1: app actor with a non-email `email`, context [], location with empty ip.
    let app = r#"{"type":"events","id":"2479d2ce-a2f0-4df3-95a7-59393e79114c","attributes":{"time":"2025-06-02T09:00:01.004Z","processedAt":"2025-06-02T09:00:02.310Z","action":"confluence_audit_record_removed_content_restriction","actor":{"id":"confluence","name":"Confluence","email":"Atlassian app","picture":null,"links":{}},"context":[],"location":{"geo":"EU","ip":""}},"links":{"self":"https://api.atlassian.com/y"},"message":{"content":"Content restriction removed","format":"text/plain"}}"#;
    let v = run(&n, app).unwrap();
    assert_eq!(v["p_event_time"], "2025-06-02 09:00:01.004000000");
    assert!(
        v.get("p_any_emails").is_none(),
        "\"Atlassian app\" is not an email"
    );
    assert!(
        v.get("p_any_ip_addresses").is_none(),
        "empty ip is no indicator"
    );
    assert!(v["attributes"].get("context").is_none(), "[] is omitted");
    assert_eq!(v["attributes"]["location"], json!({"ip":"","geo":"EU"}));
    assert_eq!(v["attributes"]["actor"]["links"], json!({}), "{{}} is kept");
    assert_eq!(v["p_any_usernames"], json!(["Confluence"]));

    // Ex. 2 event 2: API token auth, on-behalf-of, IPv6, no context.
    let tok = r#"{"type":"events","id":"7251286d-735b-46f0-b2d7-7d3e6b24e101","attributes":{"time":"2025-06-02T09:03:27.880Z","processedAt":"2025-06-02T09:03:28.015Z","action":"api_token_created","actor":{"id":"712020:e3c463f9","name":"Riley Admin","email":"riley.admin@example.com","auth":{"authType":"auth-token-for-3LO","tokenId":"8b7af36c","tokenLabel":"ci-bot"},"onBehalfOf":{"id":"557058:be6d","email":"sam.member@example.com"}},"location":{"ip":"2001:db8:4f::1a","countryName":"Exampleland","city":"Sampleton"}},"links":{"self":"https://api.atlassian.com/z"},"relations":null,"message":{"content":"Created API token ci-bot","format":"simple"}}"#;
    let v = run(&n, tok).unwrap();
    assert_eq!(v["attributes"]["actor"]["auth"]["tokenLabel"], "ci-bot");
    assert_eq!(
        v["p_any_emails"],
        json!(["riley.admin@example.com", "sam.member@example.com"])
    );
    assert_eq!(v["p_any_ip_addresses"], json!(["2001:db8:4f::1a"]));
}

#[test]
fn missing_seed_required_fields_fail_with_every_path() {
    let n = atlassian();
    let errs = errors(&n, r#"{"attributes":{"time":"2025-06-02T09:00:01Z"}}"#);
    assert_eq!(
        errs,
        [
            "$.type: required field is missing or null",
            "$.id: required field is missing or null",
            "$.links: required field is missing or null",
        ]
    );
    // Panther's own rule-test events lack `type` and `links`: strict semantics keep them failures.
    let errs = errors(
        &n,
        r#"{"id":"x","attributes":{"action":"user_login"},"type":null}"#,
    );
    assert_eq!(
        errs,
        [
            "$.type: required field is missing or null",
            "$.links: required field is missing or null"
        ]
    );
}

#[test]
fn every_type_error_is_reported_with_its_path() {
    let n = atlassian();
    let line = r#"{"type":"events","id":"x","links":{"self":1},"attributes":{"time":"2025-06-02T09:00:01Z","actor":{"name":["a"],"email":{"x":1}},"location":"Berlin","context":[{"id":{}},{"links":{"self":true}}]}}"#;
    let errs = errors(&n, line);
    assert_eq!(
        errs,
        [
            "$.attributes.actor.name: expected a string, got an array",
            "$.attributes.actor.email: expected a string, got an object",
            "$.attributes.location: expected an object, got the string \"Berlin\"",
            "$.attributes.context[0].id: expected a string, got an object",
        ]
    );
}

#[test]
fn event_time_falls_back_to_parse_time_when_missing_or_unparsable() {
    let n = atlassian();
    for time in [
        None,
        Some("\"\""),
        Some("\"2025-06-02 09:00:01\""),
        Some("\"yesterday\""),
    ] {
        let attrs = time.map_or(String::new(), |t| format!(r#""time":{t}"#));
        let line = format!(r#"{{"type":"events","id":"x","links":{{}},"attributes":{{{attrs}}}}}"#);
        let Outcome::Row(row) = n.normalize_at(line.as_bytes(), PARSE_TIME.parse().unwrap()) else {
            panic!("{line}")
        };
        assert_eq!(row.event_time, row.parse_time, "{line}");
        assert_eq!(
            row.event_time_unparsed,
            time.is_some_and(|t| t.len() > 2),
            "{line}"
        );
    }
    // Non-Z offsets are converted to UTC; the original text is kept.
    let v = run(&n, r#"{"type":"events","id":"x","links":{},"attributes":{"time":"2025-06-02T10:00:01.5+02:00"}}"#).unwrap();
    assert_eq!(v["p_event_time"], "2025-06-02 08:00:01.500000000");
    assert_eq!(v["attributes"]["time"], "2025-06-02T10:00:01.5+02:00");
}

const TYPES: &str = r#"
schema: Custom.Types
fields:
  - name: s
    type: string
  - name: i
    type: int
  - name: small
    type: smallint
  - name: big
    type: bigint
  - name: f
    type: float
  - name: b
    type: boolean
  - name: t
    type: timestamp
    timeFormat: unix_ms
  - name: tu
    type: timestamp
    timeFormats: [rfc3339, unix, "%Y-%m-%d %H:%M:%S"]
  - name: j
    type: json
  - name: arr
    type: array
    element:
      type: string
      indicators: [ip]
"#;

#[test]
fn coercions_follow_panther() {
    let n = custom(TYPES);
    let v = run(&n, r#"{"s":1.50,"i":"42","small":-7,"big":"9007199254740993","f":"2.5","b":"T","t":"1748853727343","tu":"2025-06-02 08:42:07","j":{"z":1, "a":[true]},"arr":[" 10.0.0.1 ",null,"x"]}"#).unwrap();
    assert_eq!(v["s"], "1.50", "numbers keep their literal text");
    assert_eq!(v["i"], 42);
    assert_eq!(v["small"], -7);
    assert_eq!(v["big"], 9007199254740993i64);
    assert_eq!(v["f"], 2.5);
    assert_eq!(v["b"], true);
    assert_eq!(v["t"], "2025-06-02 08:42:07.343000000");
    assert_eq!(v["tu"], "2025-06-02 08:42:07.000000000");
    assert_eq!(v["arr"], json!([" 10.0.0.1 ", null, "x"]));
    assert_eq!(v["p_any_ip_addresses"], json!(["10.0.0.1"]));
    let text = {
        let Outcome::Row(row) =
            n.normalize_at(br#"{"j":{"z":1, "a":[true]}}"#, PARSE_TIME.parse().unwrap())
        else {
            panic!()
        };
        n.to_json(&row, TimeLayout::Lake)
    };
    assert!(
        text.starts_with(r#"{"j":{"z":1, "a":[true]},"#),
        "json kept byte for byte: {text}"
    );

    let v = run(
        &n,
        r#"{"s":true,"b":0,"i":"","f":"","t":"","tu":null,"arr":[]}"#,
    )
    .unwrap();
    assert_eq!(v["s"], "true");
    assert_eq!(v["b"], false);
    for absent in ["i", "f", "t", "tu", "arr"] {
        assert!(v.get(absent).is_none(), "{absent} must be absent");
    }
    assert_eq!(
        errors(
            &n,
            r#"{"s":{},"i":1.5,"small":40000,"big":true,"f":"x","b":"yes","t":"1.5","tu":"June 2"}"#
        ),
        [
            "$.s: expected a string, got an object",
            "$.i: expected an integer (int), got a number 1.5",
            "$.small: 40000 is out of range for smallint (-32768..=32767)",
            "$.big: expected an integer (bigint), got a boolean true",
            "$.f: expected a float, got a string \"x\"",
            "$.b: expected a boolean, got a string \"yes\"",
            "$.t: cannot parse \"1.5\" as a timestamp with format unix_ms",
            "$.tu: cannot parse \"June 2\" as a timestamp with format rfc3339 or unix or %Y-%m-%d %H:%M:%S",
        ]
    );
}

#[test]
fn keys_match_in_any_order_and_when_escaped() {
    // Names that JSON writes with escapes (a quote, a backslash) and plain ones.
    let n = custom(
        r#"
schema: Custom.Keys
fields:
  - name: a
    type: string
  - name: 'q"uote'
    type: string
  - name: 'back\slash'
    type: string
  - name: b
    type: string
"#,
    );
    let expected = json!({"a": "1", "q\"uote": "2", "back\\slash": "3", "b": "4"});
    for line in [
        r#"{"a":"1","q\"uote":"2","back\\slash":"3","b":"4"}"#,
        r#"{"b":"4","back\\slash":"3","q\"uote":"2","a":"1"}"#,
        r#"{"\u0061":"1","q\u0022uote":"2","back\u005cslash":"3","\u0062":"4"}"#,
        r#"{"a" : "1" , "x":{"a":"no"}, "q\"uote":"2","back\\slash":"3","ab":"no","b":"4"}"#,
    ] {
        let v = run(&n, line).unwrap();
        for (k, want) in expected.as_object().unwrap() {
            assert_eq!(&v[k], want, "{k} in {line}");
        }
    }
    // The raw text of a name is not its JSON form, also where that field is the one expected next:
    // `"q"uote"` ends at the second quote, and `\s` is no escape.
    for bad in [
        r#"{"a":"1","q"uote":"2"}"#,
        r#"{"a":"1","q\"uote":"2","back\slash":"3"}"#,
        r#"{"a":"1","b"}"#,
        r#"{"a":"1","b":}"#,
        r#"{"a":"1","b""#,
    ] {
        assert!(
            errors(&n, bad)[0].starts_with("$: invalid JSON: "),
            "{bad}: {:?}",
            errors(&n, bad)
        );
    }
    // A key that begins like the expected one is another key.
    let v = run(&n, r#"{"a":"1","q\"uotes":"x","bb":"y"}"#).unwrap();
    assert_eq!((v.get("q\"uote"), v.get("b")), (None, None));
}

#[test]
fn required_and_validate_rules() {
    let n = custom(
        r#"
schema: Custom.Rules
fields:
  - name: s
    required: true
    type: string
    validate:
      allow: [a, ""]
  - name: n
    required: true
    type: int
  - name: ip
    type: string
    validate: { ip: ipv4 }
  - name: net
    type: string
    validate: { cidr: any }
  - name: d
    type: string
    validate: { deny: [root] }
  - name: opt
    type: object
    fields:
      - name: inner
        required: true
        type: string
  - name: items
    type: array
    element:
      type: object
      fields:
        - name: must
          required: true
          type: string
"#,
    );
    // "" satisfies a required string; 0 satisfies a required int; an absent optional object is not
    // checked inside; elements of arrays are not validated.
    assert!(run(&n, r#"{"s":"","n":0,"items":[{}]}"#).is_ok());
    assert_eq!(
        errors(
            &n,
            r#"{"s":"b","n":"","ip":"::1","net":"10.0.0.0/33","d":"root","opt":{}}"#
        ),
        [
            "$.s: \"b\" is not one of the allowed values (a, )",
            "$.ip: \"::1\" is not an IPv4 address",
            "$.net: \"10.0.0.0/33\" is not a CIDR block of an IP address",
            "$.d: \"root\" is a denied value",
            "$.opt.inner: required field is missing or null",
            "$.n: required field is missing, null or \"\"",
        ]
    );
    assert!(
        run(
            &n,
            r#"{"s":"a","n":1,"ip":"10.1.2.3","net":"2001:db8::/32"}"#
        )
        .is_ok()
    );
}

#[test]
fn embedded_json() {
    let n = custom(
        r#"
schema: Custom.Embedded
fields:
  - name: o
    type: object
    isEmbeddedJSON: true
    fields:
      - name: a
        type: int
  - name: l
    type: array
    isEmbeddedJSON: true
    element: { type: string }
  - name: j
    type: json
    isEmbeddedJSON: true
"#,
    );
    let v = run(
        &n,
        r#"{"o":"{\"a\":\"7\",\"b\":1}","l":"[\"x\",\"y\"]","j":"{\"k\": [1]}"}"#,
    )
    .unwrap();
    assert_eq!(v["o"], json!({"a": 7}));
    assert_eq!(v["l"], json!(["x", "y"]));
    assert_eq!(v["j"], json!({"k": [1]}));
    let errs = errors(&n, r#"{"o":"{nope","j":"[1,"}"#);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("$.o: isEmbeddedJSON: the string is not a JSON object"),
        "{errs:?}"
    );
}

#[test]
fn hostile_input_never_panics() {
    let n = atlassian();
    // Empty and blank lines are skipped.
    assert_eq!(n.normalize(b""), Outcome::Skip);
    assert_eq!(n.normalize(b"  \t\r"), Outcome::Skip);
    // Invalid UTF-8 keeps the exact bytes.
    let Outcome::Failure(f) = n.normalize(b"{\"type\":\"\xff\"}") else {
        panic!()
    };
    assert!(f.errors[0].message.contains("not valid UTF-8"));
    assert_eq!(f.payload_base64.as_deref(), Some("eyJ0eXBlIjoi/yJ9"));
    // Not JSON, not an object, trailing garbage.
    for bad in [
        "nope",
        "[1,2]",
        "42",
        "\"s\"",
        r#"{"id":"x"} {}"#,
        r#"{"id":"x""#,
    ] {
        let Outcome::Failure(f) = n.normalize(bad.as_bytes()) else {
            panic!("{bad}")
        };
        assert_eq!(f.payload, bad);
        assert!(!f.errors.is_empty());
    }
    // 1,000-deep nesting, in a known field, an unknown field and a json field.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    for line in [
        format!(r#"{{"attributes":{deep}}}"#),
        format!(r#"{{"unknown":{deep}}}"#),
        format!(
            r#"{{"type":"events","id":"x","links":{{}},"attributes":{{"context":[{{"attributes":{deep}}}]}}}}"#
        ),
    ] {
        let _ = n.normalize(line.as_bytes());
    }
    let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    let _ = n.normalize(deep_obj.as_bytes());
    // A line of several MB.
    let big = format!(
        r#"{{"type":"events","id":"x","links":{{}},"attributes":{{"action":"{}","context":[{{"attributes":{{"blob":"{}"}}}}]}}}}"#,
        "a".repeat(3_000_000),
        "b".repeat(3_000_000)
    );
    let Outcome::Row(row) = n.normalize(big.as_bytes()) else {
        panic!("big line must parse")
    };
    assert!(n.to_json(&row, TimeLayout::Lake).len() > 6_000_000);
}

#[test]
fn schema_problems_name_field_paths_and_lines() {
    let yaml = r#"schema: custom.bad
version: 1
fields:
  - name: a
    type: strng
  - name: b
    type: object
  - name: c
    type: array
    element:
      type: object
      fields:
        - name: d
          type: string
          indicators: [ipaddr]
  - name: a
    type: timestamp
    timeFormat: "rfc1123"
  - type: string
  - name: e
    type: ref
    target: Nope
  - name: f
    type: int
    validate: { allow: [x] }
    colour: blue
"#;
    let err = compile(yaml, "bad.yml").unwrap_err();
    let SchemaError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "line 1: schema name `custom.bad` is not a valid log type: use dot-separated words that start with a capital letter, e.g. `Custom.MyLogs`",
            "line 2: `version` must be 0, not 1",
            "line 4: field `a`: unknown type `strng`; expected one of string, int, smallint, bigint, float, boolean, timestamp, object, array, json, ref",
            "line 6: field `b`: an `object` needs a non-empty `fields` list",
            "line 13: field `c[].d`: unknown indicator `ipaddr`; expected one of ip, domain, hostname, url, net_addr, email, username, trace_id, md5, sha1, sha256, aws_arn, aws_account_id, aws_instance_id, aws_tag",
            "line 16: field `a`: duplicate field name (first declared on line 4)",
            "line 16: field `a`: unknown time format `rfc1123`; use rfc3339, unix, unix_ms, unix_us, unix_ns or a strftime pattern such as `%Y-%m-%d %H:%M:%S`",
            "line 19: field `fields[4]`: field without a `name`",
            "line 20: field `e`: `target: Nope` is not in `definitions` (defined: none)",
            "line 23: field `f`: `validate` does not apply to type `int` (only to string)",
        ]
    );
    assert!(
        err.to_string()
            .starts_with("bad.yml: the schema has 10 problem(s):")
    );
}

#[test]
fn yaml_errors_carry_the_line() {
    let err = compile(
        "schema: Custom.X\nfields:\n  - name: a\n    required: maybe\n    type: string\n",
        "x.yml",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("x.yml: "), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
}

#[test]
fn refs_definitions_and_warnings() {
    let s = compile(
        r#"
schema: Custom.Refs
definitions:
  Addr:
    type: object
    fields:
      - name: ip
        type: string
        indicators: [ip]
  Loop:
    type: ref
    target: Loop
fields:
  - name: src
    type: ref
    target: Addr
  - name: dst
    type: ref
    target: Addr
    someday: maybe
"#,
        "refs.yml",
    )
    .unwrap();
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(
        s.warnings[0].to_string(),
        "line 17: field `dst`: unknown key `someday` ignored"
    );
    let n = Normalizer::new(Arc::new(s));
    let v = run(&n, r#"{"src":{"ip":"10.0.0.1"},"dst":{"ip":"10.0.0.2"}}"#).unwrap();
    assert_eq!(v["p_any_ip_addresses"], json!(["10.0.0.1", "10.0.0.2"]));

    let err = compile("schema: Custom.L\ndefinitions:\n  L:\n    type: ref\n    target: L\nfields:\n  - name: x\n    type: ref\n    target: L\n", "l.yml").unwrap_err();
    assert!(
        err.to_string()
            .contains("`ref` cycle through definition `L`"),
        "{err}"
    );
}

#[test]
fn builtin_schema_has_the_seed_fields_and_extensions() {
    let reg = Registry::with_builtins().unwrap();
    let s = reg.get("Atlassian.Audit").unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["type", "id", "attributes", "message", "relations", "links"]
    );
    let required: Vec<&str> = s
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(required, ["type", "id", "attributes", "links"]);
    let cols: Vec<&str> = s.indicator_fields.iter().map(|f| f.column()).collect();
    assert_eq!(
        cols,
        [
            "p_any_domain_names",
            "p_any_emails",
            "p_any_ip_addresses",
            "p_any_usernames"
        ]
    );
    assert_eq!(s.table_name(), "atlassian_audit");
    assert!(matches!(
        reg.get("Nope"),
        Err(SchemaError::UnknownLogType { .. })
    ));
}

#[test]
fn builtin_schema_tests_pass_and_a_wrong_expectation_fails() {
    let reg = Registry::with_builtins().unwrap();
    let text = include_str!("../schemas/Atlassian.Audit_tests.yml");
    let cases = schematest::parse(text, "Atlassian.Audit_tests.yml").unwrap();
    assert!(cases.len() >= 7);
    for case in &cases {
        let verdict = schematest::run(case, &reg).unwrap();
        assert!(verdict.passed(), "{}: {:?}", case.name, verdict.differences);
    }
    // Each comparison rule can fail.
    let mut case = cases[0].clone();
    let good = case.result.clone().unwrap();
    for (from, to, expect) in [
        (
            "\"Riley Admin\"]",
            "\"riley admin\"]",
            "$.p_any_usernames[0]: expected \"riley admin\", got \"Riley Admin\"",
        ),
        (
            "\"p_event_time\":\"2025-06-02T08:42:07Z\"",
            "\"p_event_time\":\"2025-06-02T08:42:08Z\"",
            "$.p_event_time: expected 2025-06-02T08:42:08Z, got 2025-06-02T08:42:07Z",
        ),
        (
            "\"p_log_type\":\"Atlassian.Audit\"",
            "\"p_log_type\":\"Atlassian.Other\"",
            "$.p_log_type: expected Some(\"Atlassian.Other\"), got Some(\"Atlassian.Audit\")",
        ),
        (
            ",\"p_any_emails\":[\"riley.admin@example.com\"]",
            "",
            "$.p_any_emails: not expected, got [\"riley.admin@example.com\"]",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        case.result = Some(good.replace(from, to));
        let verdict = schematest::run(&case, &reg).unwrap();
        assert_eq!(verdict.differences, [expect]);
    }
    // Without p_event_time in the expected row, the event time must equal the parse time.
    let without = good.replace(",\"p_event_time\":\"2025-06-02T08:42:07Z\"", "");
    case.result = Some(without);
    let verdict = schematest::run(&case, &reg).unwrap();
    assert!(
        verdict.differences[0].starts_with("$.p_event_time: the expected row has none"),
        "{:?}",
        verdict.differences
    );
    // No result: the input must produce no row.
    case.result = None;
    assert_eq!(schematest::run(&case, &reg).unwrap().differences.len(), 1);
    // Unknown keys are rejected (strict decoding).
    assert!(
        schematest::parse(
            "name: x\nlogType: Atlassian.Audit\ninput: '{}'\nresutl: '{}'\n",
            "t.yml"
        )
        .is_err()
    );
}

#[test]
fn text_and_byte_lines_normalize_alike() {
    let n = atlassian();
    let at: jiff::Timestamp = PARSE_TIME.parse().unwrap();
    let missing_links = EXAMPLE.replace(r#","links":{"self""#, r#","linkz":{"self""#);
    for line in [EXAMPLE, missing_links.as_str(), "{not json", "   "] {
        let (mut a, mut b) = (TreeSink::default(), TreeSink::default());
        let va = n.normalize_into(line.as_bytes(), at, &mut a);
        let vb = n.normalize_text_into(line, at, &mut b);
        assert_eq!(va, vb, "{line}");
        assert_eq!(a.take(), b.take(), "{line}");
    }
    // Only bytes can be invalid UTF-8: a failure that keeps them.
    let Verdict::Failure(f) = n.normalize_into(b"{\"id\":\"\xff\"}", at, &mut TreeSink::default())
    else {
        panic!("not a failure")
    };
    assert!(f.payload_base64.is_some());
}

#[test]
fn a_row_keeps_nothing_of_the_rows_before_it() {
    // The normalizer reuses its buffers from row to row (stacks, indicator values, event id): the
    // next row, a failure in between or a row without an event id must not see what they held.
    let n = custom(
        r#"
schema: Test.Reuse
fields:
  - name: id
    type: string
    isEventId: true
  - name: who
    type: string
    indicators: [email]
  - name: n
    type: bigint
"#,
    );
    let first = run(&n, r#"{"id":"e1","who":"a@example.com"}"#).unwrap();
    assert_eq!(first["p_any_emails"], json!(["a@example.com"]));
    assert_eq!(first["p_row_id"], row_id("", "e1"));
    assert_eq!(
        errors(&n, r#"{"id":"e2","who":"b@example.com","n":"x"}"#),
        ["$.n: expected an integer (bigint), got a string \"x\""]
    );
    let line = r#"{"who":"c@example.com"}"#;
    let third = run(&n, line).unwrap();
    assert_eq!(third["p_any_emails"], json!(["c@example.com"]));
    // Without an event id, the line stands in for it (not e1 or e2).
    assert_eq!(third["p_row_id"], row_id("", line));
    let fourth = run(&n, r#"{"n":1}"#).unwrap();
    assert!(fourth.get("p_any_emails").is_none());
}

#[test]
fn a_failure_says_whether_the_parse_stopped_before_the_end_of_the_line() {
    let n = atlassian();
    let failure = |line: &str| match n.normalize_at(line.as_bytes(), PARSE_TIME.parse().unwrap()) {
        Outcome::Failure(f) => f,
        other => panic!("{line}: {other:?}"),
    };
    // Read to the end, valid JSON: a schema failure (a required field missing, a wrong kind).
    assert!(!failure(r#"{"type":"events","id":"a"}"#).parse_stopped());
    assert!(!failure(r#"{"type":"events","id":"a","attributes":[1],"links":{}}"#).parse_stopped());
    // Stopped: a syntax error, a truncated line, text after the value.
    for line in [
        r#"{"type":"events","id":tru}"#,
        r#"{"type":"events","id":"a""#,
        r#"{"type":"events"} {"#,
    ] {
        let f = failure(line);
        assert!(f.parse_stopped(), "{line}: {f:?}");
        assert!(serde_json::from_str::<Json>(line).is_err());
    }
}

proptest::proptest! {
    /// The normalizer reads lines with its own JSON reader: with a byte of a real event removed,
    /// replaced or inserted, the line is a row or a failure of the schema's rules exactly when
    /// serde_json takes it as JSON, and otherwise a failure whose parse stopped.
    #[test]
    fn a_damaged_event_is_json_to_the_normalizer_exactly_when_it_is_to_serde(
        at in proptest::prelude::any::<proptest::sample::Index>(),
        edit in 0..3u8,
        byte in proptest::sample::select(b"\"\\{}[]:,0-.eE tfnu\x01a".to_vec()),
    ) {
        let mut line = EXAMPLE.as_bytes().to_vec();
        let at = at.index(line.len() + 1);
        match edit {
            0 if at < line.len() => {
                line.remove(at);
            }
            1 if at < line.len() => line[at] = byte,
            _ => line.insert(at, byte),
        }
        let serde = serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok();
        let read_whole = match atlassian().normalize(&line) {
            Outcome::Row(_) => true,
            Outcome::Failure(f) => !f.parse_stopped(),
            Outcome::Skip => false,
        };
        proptest::prop_assert_eq!(read_whole, serde, "{}", String::from_utf8_lossy(&line));
    }
}
