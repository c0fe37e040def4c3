//! Fuzzes what the System Log poller does with a page body: the lenient splitter, each
//! element's parse, the event's deserialization and the classifier. Nothing may panic, and a
//! body serde accepts as an array must split into exactly serde's elements.
#![no_main]

use libfuzzer_sys::fuzz_target;
use okta_provwatch::detect::classify::classify;
use okta_provwatch::detect::page::parse_page;
use okta_provwatch::okta::types::LogEvent;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = parse_page(data) else {
        return;
    };
    if let Ok(whole) = serde_json::from_slice::<Vec<Value>>(data) {
        assert!(page.bad.is_empty(), "serde accepts what the splitter quarantined");
        assert_eq!(page.items, whole, "the split disagrees with serde");
    }
    for item in page.items {
        if let Ok(ev) = serde_json::from_value::<LogEvent>(item) {
            let _ = classify(&ev);
        }
    }
});
