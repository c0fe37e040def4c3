//! The lenient System Log page splitter: finds the byte range of each element of a page's
//! top-level JSON array without parsing the elements, so each event is parsed on its own and
//! one bad event (nesting past serde's recursion limit, a lone surrogate, `1e400`, `NaN`,
//! invalid UTF-8, a syntax error) is quarantined instead of failing the whole page.
//!
//! The scanner is hand-written and iterative: it tracks only whether it is inside a string (and
//! after a backslash there) and the bracket depth, in a plain counter, so no input can make it
//! recurse or allocate per byte. It delimits; it does not validate. Each element's bytes are then
//! handed to serde on their own ([`parse_page`]). Only a page whose array structure itself is
//! broken (not an array, cut short, bytes after the closing bracket) fails as a whole: then
//! nothing on it can be trusted to be complete, and the poller retries it with backoff.

use serde_json::Value;
use std::ops::Range;

/// Longest raw element the quarantine keeps, in bytes. A poison event is evidence, not data:
/// its first 64 KiB show what Okta sent; the length of the rest is recorded.
pub const MAX_QUARANTINED_BYTES: usize = 64 * 1024;

/// Why a page could not be split into elements.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The body is not a JSON array (an error object, HTML from a proxy, an empty body).
    #[error("the page is not a JSON array (found {found} at byte {at})")]
    NotArray { at: usize, found: String },
    /// The body ends inside the array: a cut connection or a truncated body.
    #[error("the page ends before its array closes (after {elements} elements, {len} bytes)")]
    Truncated { elements: usize, len: usize },
    /// Something other than whitespace follows the array's closing bracket.
    #[error("unexpected data after the page's array at byte {at}")]
    TrailingData { at: usize },
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn describe(bytes: &[u8], at: usize) -> String {
    match bytes.get(at) {
        None => "end of input".to_string(),
        Some(b) if b.is_ascii_graphic() => format!("'{}'", *b as char),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

/// The byte ranges of the top-level array's elements, whitespace trimmed. An empty element
/// (`[1,,2]`, a trailing comma) is returned as an empty range: it is a syntax error of that
/// element, quarantined like any other, not of the page.
pub fn split_array(bytes: &[u8]) -> Result<Vec<Range<usize>>, SplitError> {
    let mut i = 0;
    // A UTF-8 byte order mark is not JSON, but it says nothing about the events either.
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        i = 3;
    }
    while i < bytes.len() && is_ws(bytes[i]) {
        i += 1;
    }
    if bytes.get(i) != Some(&b'[') {
        return Err(SplitError::NotArray {
            at: i,
            found: describe(bytes, i),
        });
    }
    i += 1;
    let mut out = Vec::new();
    // `[]` and `[ ]`: no elements at all (as opposed to one empty element).
    let mut j = i;
    while j < bytes.len() && is_ws(bytes[j]) {
        j += 1;
    }
    if bytes.get(j) == Some(&b']') {
        return finish(bytes, j + 1, out);
    }
    let mut start = i;
    let mut depth: u64 = 0;
    let mut in_string = false;
    let mut escaped = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            // A closer with nothing open inside an element is that element's syntax error; a
            // `]` at depth 0 closes the page's array.
            b'}' => depth = depth.saturating_sub(1),
            b']' if depth > 0 => depth -= 1,
            b']' | b',' if depth == 0 => {
                out.push(trim(bytes, start, i));
                if b == b']' {
                    return finish(bytes, i + 1, out);
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    Err(SplitError::Truncated {
        elements: out.len(),
        len: bytes.len(),
    })
}

fn trim(bytes: &[u8], mut start: usize, mut end: usize) -> Range<usize> {
    while start < end && is_ws(bytes[start]) {
        start += 1;
    }
    while end > start && is_ws(bytes[end - 1]) {
        end -= 1;
    }
    start..end
}

fn finish(
    bytes: &[u8],
    mut i: usize,
    out: Vec<Range<usize>>,
) -> Result<Vec<Range<usize>>, SplitError> {
    while i < bytes.len() && is_ws(bytes[i]) {
        i += 1;
    }
    if i < bytes.len() {
        return Err(SplitError::TrailingData { at: i });
    }
    Ok(out)
}

/// One element of a page that JSON parsing refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadElement {
    /// Its index in the page's array.
    pub position: usize,
    /// Its raw bytes, cut to [`MAX_QUARANTINED_BYTES`].
    pub raw: Vec<u8>,
    /// Its full length in bytes.
    pub len: usize,
    /// serde's error, with line and column inside the element.
    pub error: String,
}

/// A page split and parsed element by element.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedPage {
    /// The elements that are JSON, in page order.
    pub items: Vec<Value>,
    /// The elements that are not.
    pub bad: Vec<BadElement>,
}

/// Splits `bytes` with [`split_array`] and parses each element on its own.
pub fn parse_page(bytes: &[u8]) -> Result<ParsedPage, SplitError> {
    let ranges = split_array(bytes)?;
    let mut page = ParsedPage {
        items: Vec::with_capacity(ranges.len()),
        bad: Vec::new(),
    };
    for (position, r) in ranges.into_iter().enumerate() {
        let raw = &bytes[r];
        match serde_json::from_slice::<Value>(raw) {
            Ok(v) => page.items.push(v),
            Err(e) => page.bad.push(BadElement {
                position,
                raw: raw[..raw.len().min(MAX_QUARANTINED_BYTES)].to_vec(),
                len: raw.len(),
                error: if raw.is_empty() {
                    "empty element (two commas in a row, or a trailing comma)".to_string()
                } else {
                    e.to_string()
                },
            }),
        }
    }
    Ok(page)
}

/// The poison kinds the hardening tests serve (issue 10): an otherwise valid event carrying
/// each. Kept here, beside the parser they attack, so the unit tests, the integration test over
/// real sockets and the fuzz corpus use the same list.
pub fn poison_kinds() -> Vec<(&'static str, Vec<u8>)> {
    let ev = |inner: &str| -> Vec<u8> {
        format!(
            r#"{{"uuid":"poison","published":"2026-01-01T00:00:00.000Z","eventType":"application.provision.user.push","displayMessage":{inner}}}"#
        )
        .into_bytes()
    };
    let with_bytes = |bytes: &[u8]| -> Vec<u8> {
        let mut v =
            br#"{"uuid":"poison","eventType":"application.provision.user.push","displayMessage":""#
                .to_vec();
        v.extend_from_slice(bytes);
        v.extend_from_slice(br#""}"#);
        v
    };
    vec![
        (
            "deep arrays",
            ev(&format!("{}1{}", "[".repeat(200), "]".repeat(200))),
        ),
        (
            "deep objects",
            ev(&format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200))),
        ),
        ("lone leading surrogate", ev(r#""\ud800""#)),
        ("lone trailing surrogate", ev(r#""\udc00x""#)),
        ("number out of range", ev("1e400")),
        ("negative number out of range", ev("-1e400")),
        ("NaN", ev("NaN")),
        ("Infinity", ev("Infinity")),
        ("invalid UTF-8 byte", with_bytes(b"\xff\xfe")),
        ("overlong UTF-8", with_bytes(b"\xc0\xaf")),
        ("truncated UTF-8 sequence", with_bytes(b"\xe2\x82")),
        ("control character in a string", with_bytes(b"a\x01b")),
        ("bad escape", ev(r#""\x41""#)),
        ("missing colon", b"{\"uuid\" \"poison\"}".to_vec()),
        ("single-quoted key", b"{'uuid':'poison'}".to_vec()),
        (
            "trailing comma in an object",
            b"{\"uuid\":\"poison\",}".to_vec(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(bytes: &[u8]) -> Vec<String> {
        split_array(bytes)
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8_lossy(&bytes[r]).into_owned())
            .collect()
    }

    #[test]
    fn splits_top_level_elements_only() {
        assert_eq!(texts(b"[]"), Vec::<String>::new());
        assert_eq!(texts(b" [ \n ] \n"), Vec::<String>::new());
        assert_eq!(
            texts(br#"[ {"a":[1,2],"b":"x,]}\"y"} , 3,"s" ]"#),
            vec![r#"{"a":[1,2],"b":"x,]}\"y"}"#, "3", r#""s""#]
        );
        // Empty elements are elements (quarantined as syntax errors), not page errors.
        assert_eq!(texts(b"[1,,2,]"), vec!["1", "", "2", ""]);
        // A stray closer is the element's problem.
        assert_eq!(texts(b"[{}}, 2]"), vec!["{}}", "2"]);
    }

    #[test]
    fn page_level_errors_name_their_cause() {
        assert!(matches!(
            split_array(br#"{"errorCode":"E0000009"}"#),
            Err(SplitError::NotArray { at: 0, .. })
        ));
        assert!(matches!(split_array(b""), Err(SplitError::NotArray { .. })));
        let e = split_array(br#"[{"uuid":"#).unwrap_err();
        assert!(
            matches!(e, SplitError::Truncated { elements: 0, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("ends before"), "{e}");
        assert!(matches!(
            split_array(b"[1,2] x"),
            Err(SplitError::TrailingData { at: 6 })
        ));
        // An unterminated string swallows the rest: truncated, not an element.
        assert!(matches!(
            split_array(br#"[1,"abc]"#),
            Err(SplitError::Truncated { elements: 1, .. })
        ));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut deep = b"[".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 1_000_000));
        deep.extend(std::iter::repeat_n(b']', 1_000_000));
        deep.extend_from_slice(b",1]");
        let page = parse_page(&deep).unwrap();
        assert_eq!(page.items, vec![serde_json::json!(1)]);
        assert_eq!(page.bad.len(), 1);
        assert_eq!(page.bad[0].len, 2_000_000);
        assert_eq!(page.bad[0].raw.len(), MAX_QUARANTINED_BYTES);
        assert!(
            page.bad[0].error.contains("recursion"),
            "{}",
            page.bad[0].error
        );
    }

    #[test]
    fn every_poison_kind_is_isolated_and_its_neighbours_kept() {
        let good = br#"{"uuid":"ok","published":"2026-01-01T00:00:00.000Z","eventType":"x"}"#;
        let kinds = poison_kinds();
        assert_eq!(kinds.len(), 16);
        for (name, poison) in kinds {
            // serde alone refuses the whole page: this is the defect.
            let mut body = b"[".to_vec();
            body.extend_from_slice(good);
            body.push(b',');
            body.extend_from_slice(&poison);
            body.push(b',');
            body.extend_from_slice(good);
            body.push(b']');
            assert!(
                serde_json::from_slice::<Vec<Value>>(&body).is_err(),
                "{name}: serde accepts it, not a poison"
            );
            let page = parse_page(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(page.items.len(), 2, "{name}");
            assert_eq!(page.bad.len(), 1, "{name}");
            assert_eq!(page.bad[0].position, 1, "{name}");
            assert_eq!(page.bad[0].raw, poison, "{name}");
            assert!(!page.bad[0].error.is_empty(), "{name}");
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                ".{0,12}".prop_map(Value::String),
                // Strings with the characters the scanner must treat specially.
                prop::collection::vec(
                    prop_oneof![
                        Just('"'),
                        Just('\\'),
                        Just(','),
                        Just(']'),
                        Just('['),
                        Just('{'),
                        Just('}'),
                        any::<char>()
                    ],
                    0..8
                )
                .prop_map(|cs| Value::String(cs.into_iter().collect())),
            ];
            leaf.prop_recursive(6, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,6}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Splitting then parsing each element equals serde's parse of the whole array,
            /// compact or pretty-printed.
            #[test]
            fn split_then_parse_equals_serde(items in prop::collection::vec(json_value(), 0..8), pretty in any::<bool>()) {
                let body = if pretty {
                    serde_json::to_vec_pretty(&items).unwrap()
                } else {
                    serde_json::to_vec(&items).unwrap()
                };
                let whole: Vec<Value> = serde_json::from_slice(&body).unwrap();
                let page = parse_page(&body).unwrap();
                prop_assert!(page.bad.is_empty(), "{:?}", page.bad);
                prop_assert_eq!(page.items, whole);
            }

            /// Arbitrary bytes never panic, and every range lies within the input.
            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(ranges) = split_array(&bytes) {
                    for r in ranges {
                        prop_assert!(r.start <= r.end && r.end <= bytes.len());
                    }
                }
                let _ = parse_page(&bytes);
            }

            /// Bytes made of JSON's structural characters (the scanner's hard cases) never
            /// panic either, and a page serde accepts is split into serde's elements.
            #[test]
            fn structural_noise(bytes in prop::collection::vec(prop::sample::select(b"[]{}\",:\\ 1a".to_vec()), 0..64)) {
                let mut body = b"[".to_vec();
                body.extend_from_slice(&bytes);
                if let Ok(whole) = serde_json::from_slice::<Vec<Value>>(&body) {
                    let page = parse_page(&body).unwrap();
                    prop_assert_eq!(page.items, whole);
                } else {
                    let _ = parse_page(&body);
                }
            }
        }
    }
}
