//! Any bytes as an input line: the normalizer returns a row, a failure or a skip, never panics,
//! a row always renders as valid JSON in both time layouts, and a line the normalizer read to its
//! end (a row, or a failure of the schema's rules) is JSON for serde_json too. The same bytes as a
//! stored row (`lake ingest`'s reader) give a row or a failure, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use orgtrail_schema::{Normalizer, Outcome, Registry, RowReader, TimeLayout, TreeSink, Verdict, compile};

const CUSTOM: &str = r#"
schema: Custom.Fuzz
fields:
  - name: s
    type: string
    indicators: [url, net_addr, aws_arn, md5, domain]
    validate: { cidr: any }
  - name: n
    type: smallint
  - name: f
    type: float
  - name: b
    type: boolean
  - name: t
    type: timestamp
    timeFormats: [rfc3339, unix, unix_ns, "%Y-%m-%d %H:%M:%S %z"]
    isEventTime: true
  - name: o
    type: object
    isEmbeddedJSON: true
    fields:
      - name: a
        type: array
        element: { type: string, indicators: [ip, email] }
  - name: j
    type: json
    isEmbeddedJSON: true
"#;

fn normalizers() -> &'static [Normalizer; 2] {
    static N: OnceLock<[Normalizer; 2]> = OnceLock::new();
    N.get_or_init(|| {
        let reg = Registry::with_builtins().unwrap();
        [
            Normalizer::new(reg.get("Atlassian.Audit").unwrap()).with_source(Some("s".into()), None),
            Normalizer::new(Arc::new(compile(CUSTOM, "fuzz").unwrap())),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    for n in normalizers() {
        // The normalizer reads the line with its own JSON reader: a line it read to the end (a row,
        // or a failure of the schema's rules) is JSON for serde_json too.
        let read_whole = match n.normalize(data) {
            Outcome::Row(row) => {
                for layout in [TimeLayout::Lake, TimeLayout::Rfc3339] {
                    let json = n.to_json(&row, layout);
                    serde_json::from_str::<serde_json::Value>(&json).expect("rows are valid JSON");
                }
                true
            }
            Outcome::Failure(f) => {
                assert!(!f.errors.is_empty());
                f.payload_base64.is_none() && !f.parse_stopped()
            }
            Outcome::Skip => false,
        };
        if read_whole {
            serde_json::from_slice::<serde::de::IgnoredAny>(data)
                .expect("a line read to its end is JSON");
        }
        let mut tree = TreeSink::default();
        match RowReader::new(n.schema()).read_into(data, &mut tree) {
            Verdict::Row => assert!(tree.take().is_some()),
            Verdict::Failure(f) => assert!(!f.errors.is_empty() && tree.take().is_none()),
            Verdict::Skip => {}
        }
    }
});
