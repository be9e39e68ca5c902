//! Any text as schema YAML: the compiler returns a schema or errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(schema) = orgtrail_schema::compile(text, "fuzz") {
            let n = orgtrail_schema::Normalizer::new(std::sync::Arc::new(schema));
            let _ = n.normalize(b"{\"a\":1,\"b\":[\"x\"],\"c\":{\"d\":null}}");
        }
    }
});
