//! The Tasks-page kinds beyond assignment errors, read on the scan schedule after the
//! assignment scan: group push errors ([`super::group_push`]), provisioning connections
//! ([`super::connections`]) and on-premises agent pools ([`super::agents`]). Each kind's
//! trouble is logged and skipped so the others still run; only Okta refusing our credentials
//! ends the pass.

use super::DetectError;
use crate::context::Context;
use crate::okta::types::Application;
use crate::okta::OktaError;

/// Totals of one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub opened: usize,
    pub resolved: usize,
}

fn fatal(e: &DetectError) -> bool {
    matches!(
        e,
        DetectError::Cancelled | DetectError::Okta(OktaError::Unauthorized { .. })
    )
}

/// Runs the three kinds over the watched `apps`.
pub async fn scan(ctx: &Context, apps: &[Application]) -> Result<Outcome, DetectError> {
    let mut out = Outcome::default();
    match super::group_push::scan(ctx, apps).await {
        Ok(o) => {
            out.opened += o.opened;
            out.resolved += o.resolved;
        }
        Err(e) if fatal(&e) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "group push scan failed; it runs again at the next scan")
        }
    }
    match super::connections::scan(ctx, apps).await {
        Ok(o) => {
            out.opened += o.opened;
            out.resolved += o.resolved;
        }
        Err(e) if fatal(&e) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "provisioning connection scan failed; it runs again at the next scan")
        }
    }
    match super::agents::scan(ctx).await {
        Ok(o) => {
            out.opened += o.opened;
            out.resolved += o.resolved;
        }
        Err(e) if fatal(&e) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "agent pool scan failed; it runs again at the next scan")
        }
    }
    Ok(out)
}
