//! Detection: the System Log poller and the assignment scanner turn what Okta reports into
//! failure records in the store.

pub mod agents;
pub mod classify;
pub mod connections;
pub mod group_push;
pub mod page;
pub mod poller;
pub mod scanner;
pub mod tasks;

use crate::okta::OktaError;
use crate::store::StoreError;

/// Why a poll or a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Okta(#[from] OktaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The page's array itself is broken (not an array, cut short, data after it): nothing on
    /// it can be trusted to be complete, so the cursor stays and the page is read again later
    /// with backoff.
    #[error("the System Log page at {url} is malformed and cannot be split into events: {source}; keeping the cursor and reading it again with backoff")]
    Page {
        url: String,
        #[source]
        source: page::SplitError,
    },
    #[error("interrupted by shutdown")]
    Cancelled,
}
