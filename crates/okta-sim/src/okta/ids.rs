//! Okta-style identifiers (`0oa…`, `00u…`, `0ua…`, `oae…`) and random tokens.
//!
//! Ids are 20 characters like Okta's. The part after the prefix starts with a base62 counter
//! (in ASCII order), so sorting ids by string sorts them by creation: list endpoints page by
//! "id greater than the cursor" and stay stable when entries are removed.

use rand::distr::Alphanumeric;
use rand::RngExt;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(crate) fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// `prefix` (3 chars) + 6-char base62 counter + random filler up to 20 chars.
pub(crate) fn okta_id(prefix: &str, counter: u64) -> String {
    let mut digits = [b'0'; 6];
    let mut c = counter;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(c % 62) as usize];
        c /= 62;
    }
    let mut id = String::with_capacity(20);
    id.push_str(prefix);
    id.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    let fill = 20usize.saturating_sub(id.len());
    id.push_str(&random_alnum(fill));
    id
}

/// Okta's `errorId` values look like `oae` + 22 random characters.
pub(crate) fn error_id() -> String {
    format!("oae{}", random_alnum(22))
}
