//! [`Receipts`]: the SDK interceptor every client of the provider carries, recording each HTTP
//! attempt (the SDK's own retries included) as a [`ProviderCall`]: `service:Operation` from
//! the operation's metadata, the response's status, and the request id AWS sends in
//! `x-amzn-RequestId` (or `x-amz-request-id`). No attempt is recorded outside an action's
//! receipt scope (see [`closeout_contract::receipt`]).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use closeout_contract::receipt::{self, ProviderCall};

/// Records every attempt of every operation of a client (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct Receipts;

/// `iam:DeleteAccessKey` from the SDK's `Metadata::new("DeleteAccessKey", "IAM")`: the
/// service as IAM actions name it (`Secrets Manager` is `secretsmanager`).
pub fn operation_name(metadata: Option<&Metadata>) -> String {
    match metadata {
        Some(m) => {
            let service: String = m.service().chars().filter(|c| !c.is_whitespace()).collect();
            format!("{}:{}", service.to_ascii_lowercase(), m.name())
        }
        None => "aws:unknown-operation".to_string(),
    }
}

/// The request id of an answer's headers, as the SDK itself reads it.
pub fn request_id(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    get("x-amzn-requestid").or_else(|| get("x-amz-request-id"))
}

impl Intercept for Receipts {
    fn name(&self) -> &'static str {
        "closeout-receipts"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !receipt::is_collecting() {
            return Ok(());
        }
        let response = context.response();
        let status = response.map(|r| r.status().as_u16());
        let id =
            response.and_then(|r| request_id(|name| r.headers().get(name).map(str::to_string)));
        receipt::record(ProviderCall::new(
            operation_name(cfg.load::<Metadata>()),
            status,
            id,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_request_ids_are_read_as_aws_sends_them() {
        let m = Metadata::new("DeleteAccessKey", "IAM");
        assert_eq!(operation_name(Some(&m)), "iam:DeleteAccessKey");
        assert_eq!(operation_name(None), "aws:unknown-operation");
        let m = Metadata::new("PutSecretValue", "Secrets Manager");
        assert_eq!(operation_name(Some(&m)), "secretsmanager:PutSecretValue");
        let headers = |name: &str| (name == "x-amz-request-id").then(|| "S3ID".to_string());
        assert_eq!(request_id(headers).as_deref(), Some("S3ID"));
        assert_eq!(request_id(|_| None), None);
    }
}
