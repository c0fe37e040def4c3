//! A small SCIM 2.0 client (RFC 7643 resources, RFC 7644 protocol) for checking an app's own
//! view of its accounts: look a user up by `userName` (`filter=userName eq "..."`) or by id,
//! page the whole user list (`startIndex`/`count`), and deactivate one (`PatchOp` `replace`
//! `active` `false`; never DELETE). Bearer auth, an optional custom header, a rate limit of its
//! own per app, and 429/`Retry-After` honoured.
//!
//! Only the attributes the daemon needs are modelled ([`types`]); they are tested against the
//! RFC's own examples. No maintained SCIM crate covered the client side with this small a
//! footprint, so the types are kept here.

pub mod client;
pub mod types;

pub use client::{ScimClient, ScimError};
pub use types::{ListResponse, PatchOp, ScimUser};
