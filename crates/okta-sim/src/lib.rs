//! okta-sim: fakes of the services okta-provwatch talks to, served over real HTTP/SMTP on
//! loopback, for integration tests, the demo and benchmarks. The Okta org lives in [`okta`]
//! (re-exported at the crate root).
pub mod okta;
pub use okta::*;
pub mod slack;
pub mod smtp;
