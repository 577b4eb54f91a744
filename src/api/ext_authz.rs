//! The edge check over Envoy's gRPC `ext_authz` protocol
//! (`envoy.service.auth.v3.Authorization/Check`), for Envoy (and Istio,
//! Gloo, Emissary) set up with a `grpc_service`. The verdict is the one
//! `/v1/check` gives (`check.rs`), from the same `Authorization` header
//! values: Envoy passes them in `attributes.request.http.headers` (repeated
//! headers joined with ","), or in `header_map` when it sends raw headers.
//!
//! The answer is always a `CheckResponse`, never a failed call: Envoy turns
//! a failed call into its `failure_mode_allow` choice, and the denylist
//! loading must mean "closed" (503) whatever that setting says. The header
//! forms and hostile calls are tested over the wire in `tests/edge_role.rs`.

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HttpStatus, HttpStatusCode,
    OkHttpResponse,
};
use envoy_types::ext_authz::v3::{CheckResponseExt, DeniedHttpResponseBuilder};

use super::check::{EdgeCheck, Verdict};
use crate::metrics::Metrics;

pub use envoy_types::ext_authz::v3::pb::AuthorizationServer;

/// Largest `CheckRequest` decoded: headers only (a body forwarded by
/// `with_request_body` is not read), so a few hundred kB is generous.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

pub struct ExtAuthz {
    pub edge: Arc<EdgeCheck>,
    pub metrics: Arc<Metrics>,
}

/// The `Authorization` values of the request Envoy asks about. A value that
/// is not text is read as a bare "Bearer" scheme, so it is unreadable (403),
/// as the HTTP check reads a header that is not visible ASCII.
fn authorization(req: &CheckRequest) -> Vec<&str> {
    let Some(http) = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Vec::new();
    };
    let is_authz = |k: &str| k.eq_ignore_ascii_case("authorization");
    let mut values: Vec<&str> = http
        .headers
        .iter()
        .filter(|(k, _)| is_authz(k))
        .map(|(_, v)| v.as_str())
        .collect();
    if let Some(map) = &http.header_map {
        values.extend(map.headers.iter().filter(|h| is_authz(&h.key)).map(|h| {
            if h.raw_value.is_empty() {
                h.value.as_str()
            } else {
                std::str::from_utf8(&h.raw_value).unwrap_or("Bearer")
            }
        }));
    }
    values
        .into_iter()
        .map(|v| {
            if v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                v
            } else {
                "Bearer"
            }
        })
        .collect()
}

fn denied(
    code: tonic::Code,
    http: HttpStatusCode,
    challenge: Option<&str>,
    body: &str,
) -> CheckResponse {
    let mut d = DeniedHttpResponseBuilder::new();
    d.set_http_status(http).set_body(body);
    if let Some(c) = challenge {
        d.add_header("www-authenticate", c, None, false);
    }
    let mut r = CheckResponse::with_status(tonic::Status::new(code, body.trim_end()));
    r.set_http_response(d);
    r
}

/// The `CheckResponse` for a verdict.
pub fn response(verdict: Verdict) -> CheckResponse {
    match verdict {
        Verdict::Allowed => {
            let mut r = CheckResponse::with_status(tonic::Status::ok(""));
            r.set_http_response(OkHttpResponse::default());
            r
        }
        Verdict::Denied => denied(
            tonic::Code::PermissionDenied,
            HttpStatusCode::Forbidden,
            Some(r#"Bearer error="invalid_token", error_description="token revoked""#),
            "revoked\n",
        ),
        Verdict::Unreadable => denied(
            tonic::Code::PermissionDenied,
            HttpStatusCode::Forbidden,
            Some(
                r#"Bearer error="invalid_request", error_description="ambiguous Authorization header""#,
            ),
            "unreadable credential\n",
        ),
        Verdict::NotReady => denied(
            tonic::Code::Unavailable,
            HttpStatusCode::ServiceUnavailable,
            None,
            "denylist still loading\n",
        ),
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let verdict = self
            .edge
            .judge(authorization(request.get_ref()), &self.metrics);
        Ok(tonic::Response::new(response(verdict)))
    }
}

/// The HTTP status a response carries to the client (200 when allowed),
/// for tests and logs.
pub fn http_status(r: &CheckResponse) -> u16 {
    use envoy_types::ext_authz::v3::pb::HttpResponse;
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code }),
            ..
        })) => u16::try_from(*code).unwrap_or(403),
        Some(HttpResponse::DeniedResponse(_)) => 403,
        _ if r.status.as_ref().is_some_and(|s| s.code == 0) => 200,
        _ => 403,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verdict_maps_to_the_status_envoy_acts_on() {
        assert_eq!(http_status(&response(Verdict::Allowed)), 200);
        assert_eq!(http_status(&response(Verdict::Denied)), 403);
        assert_eq!(http_status(&response(Verdict::Unreadable)), 403);
        assert_eq!(http_status(&response(Verdict::NotReady)), 503);
        let denied = response(Verdict::Denied);
        assert_eq!(
            denied.status.unwrap().code,
            tonic::Code::PermissionDenied as i32
        );
    }
}
