//! Detection: the System Log poller and the assignment scanner turn what Okta reports into
//! failure records in the store.

pub mod classify;
pub mod poller;
pub mod scanner;
