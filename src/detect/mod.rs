//! Detection: the System Log poller and the assignment scanner turn what Okta reports into
//! failure records in the store.

pub mod classify;
pub mod poller;
pub mod scanner;

use crate::okta::OktaError;
use crate::store::StoreError;

/// Why a poll or a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Okta(#[from] OktaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("interrupted by shutdown")]
    Cancelled,
}
