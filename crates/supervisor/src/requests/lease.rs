//! `lease`, `refresh`, `release`: bandwidth and a tenant slot for a gateway
//! that streams the data itself; and `quota`, the report.

use streamlet_proto::{ErrorBody, ErrorCode, LeaseRef, LeaseRequest, QuotaRequest, ReplyBody, MAX_QUOTA_TENANTS_PAGE};

use crate::context::Daemon;
use crate::core::LeaseError;

pub fn lease(daemon: &Daemon, request: LeaseRequest) -> Result<ReplyBody, ErrorBody> {
    let request = crate::validate::lease(request)?;
    daemon.core().lease(request).map(ReplyBody::Leased).map_err(lease_error)
}

/// The reply to a lease the core refused.
fn lease_error(error: LeaseError) -> ErrorBody {
    let code = match &error {
        LeaseError::ShuttingDown => ErrorCode::ShuttingDown,
        LeaseError::UnknownPool { .. } => ErrorCode::UnknownPool,
        LeaseError::TooMany => ErrorCode::Overloaded,
        LeaseError::TenantFull(_) => ErrorCode::TenantLimit,
        LeaseError::Refused(refusal) => return crate::core::refusal_error(refusal),
    };
    ErrorBody::new(code, error.to_string())
}

pub fn refresh(daemon: &Daemon, request: LeaseRef) -> Result<ReplyBody, ErrorBody> {
    Ok(ReplyBody::Refreshed(daemon.core().refresh(request.lease)?))
}

pub fn release(daemon: &Daemon, request: LeaseRef) -> Result<ReplyBody, ErrorBody> {
    daemon.core().release_lease(request.lease)?;
    Ok(ReplyBody::Released(request))
}

pub fn quota(daemon: &Daemon, request: QuotaRequest) -> Result<ReplyBody, ErrorBody> {
    let limit = crate::validate::page_limit(request.limit, MAX_QUOTA_TENANTS_PAGE);
    let tenants = crate::core::TenantLines::Page { after: request.after.as_deref(), limit };
    Ok(ReplyBody::Quota(daemon.core().quota_report(tenants)))
}
