//! Detection: the System Log poller and the assignment scanner turn what Okta reports into
//! failure records in the store.

pub mod agents;
pub mod classify;
pub mod connections;
pub mod group_push;
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
    #[error("interrupted by shutdown")]
    Cancelled,
}
