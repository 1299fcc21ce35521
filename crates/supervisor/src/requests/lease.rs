//! `lease`, `refresh`, `release`: bandwidth and a tenant slot for a gateway
//! that streams the data itself; and `quota`, the report.

use streamlet_proto::{ErrorBody, LeaseRef, LeaseRequest, QuotaRequest, ReplyBody, MAX_QUOTA_TENANTS_PAGE};

use crate::context::Daemon;

pub fn lease(daemon: &Daemon, request: LeaseRequest) -> Result<ReplyBody, ErrorBody> {
    Ok(ReplyBody::Leased(daemon.core().lease(request)?))
}

pub fn refresh(daemon: &Daemon, request: LeaseRef) -> Result<ReplyBody, ErrorBody> {
    Ok(ReplyBody::Refreshed(daemon.core().refresh(request.lease)?))
}

pub fn release(daemon: &Daemon, request: LeaseRef) -> Result<ReplyBody, ErrorBody> {
    daemon.core().release_lease(request.lease)?;
    Ok(ReplyBody::Released(request))
}

pub fn quota(daemon: &Daemon, request: QuotaRequest) -> Result<ReplyBody, ErrorBody> {
    let limit = request.limit.unwrap_or(MAX_QUOTA_TENANTS_PAGE).clamp(1, MAX_QUOTA_TENANTS_PAGE) as usize;
    let tenants = crate::core::TenantLines::Page { after: request.after.as_deref(), limit };
    Ok(ReplyBody::Quota(daemon.core().quota_report(tenants)))
}
