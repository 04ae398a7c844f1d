//! The operation tag: which SDK operation an HTTP attempt belongs to.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use std::borrow::Cow;
use std::sync::Arc;

/// The operation an HTTP attempt belongs to, carried in the request's extensions by
/// [`OperationTagInterceptor`] and read by [`BreakerHttpClient`](super::BreakerHttpClient)
/// to pick the circuit `(service, operation)`.
///
/// ```
/// use tower_circuit_breaker::aws::OperationTag;
///
/// let tag = OperationTag::new("dynamodb", "PutItem", 2);
/// assert_eq!((tag.service(), tag.operation(), tag.attempt()), ("dynamodb", "PutItem", 2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperationTag {
    service: Arc<str>,
    operation: Arc<str>,
    attempt: u32,
}

impl OperationTag {
    /// A tag for attempt `attempt` (1-based) of `operation` of `service` (a registry key,
    /// e.g. `"dynamodb"`, see [`service_key`]).
    pub fn new(service: impl Into<Arc<str>>, operation: impl Into<Arc<str>>, attempt: u32) -> Self {
        OperationTag {
            service: service.into(),
            operation: operation.into(),
            attempt,
        }
    }

    /// The registry's service key, e.g. `"dynamodb"`, `"apigateway-management"`.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The SDK's operation name, e.g. `"PutItem"`, `"PostToConnection"`.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The attempt number within the operation, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// The registry key of an SDK service name (the `service()` of the operation metadata):
/// `"DynamoDB"` → `"dynamodb"`, `"ApiGatewayManagementApi"` → `"apigateway-management"`,
/// `"CognitoIdentityProvider"` → `"cognito"` (the keys of the seed's chat backend), any
/// other name in lowercase (`"S3"` → `"s3"`).
///
/// ```
/// use tower_circuit_breaker::aws::service_key;
///
/// assert_eq!(service_key("DynamoDB"), "dynamodb");
/// assert_eq!(service_key("ApiGatewayManagementApi"), "apigateway-management");
/// assert_eq!(service_key("SQS"), "sqs");
/// ```
pub fn service_key(sdk_service: &str) -> Cow<'static, str> {
    match sdk_service {
        "DynamoDB" => Cow::Borrowed("dynamodb"),
        "ApiGatewayManagementApi" => Cow::Borrowed("apigateway-management"),
        "CognitoIdentityProvider" => Cow::Borrowed("cognito"),
        other => Cow::Owned(other.to_ascii_lowercase()),
    }
}

/// An SDK interceptor that puts an [`OperationTag`] into every attempt's request, from the
/// operation metadata (`"DynamoDB"`, `"PutItem"`) and the attempt counter the SDK keeps in
/// its config bag. Without it, [`BreakerHttpClient`](super::BreakerHttpClient) puts every
/// attempt of the client through the circuit `("aws", "unknown")`.
///
/// Install it per service client with `config::Builder::interceptor(OperationTagInterceptor)`
/// (the [`aws_client!`](crate::aws_client) macro does).
#[derive(Clone, Copy, Debug, Default)]
pub struct OperationTagInterceptor;

impl Intercept for OperationTagInterceptor {
    fn name(&self) -> &'static str {
        "OperationTagInterceptor"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(md) = cfg.load::<Metadata>() {
            let attempt = cfg
                .load::<RequestAttempts>()
                .map_or(1, RequestAttempts::attempts);
            let tag = OperationTag::new(service_key(md.service()), md.name(), attempt);
            context.request_mut().add_extension(tag);
        }
        if let Some(previous) = cfg.load::<super::PreviousAttempt>() {
            let previous = previous.clone();
            context.request_mut().add_extension(previous);
        }
        Ok(())
    }

    /// Keeps a failed attempt's error for the next attempt of the operation: if the circuit
    /// rejects that one, the rejection carries it (see
    /// [`RejectedAfterAttempt`](super::RejectedAfterAttempt)).
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(error)) = context.output_or_error() {
            if super::rejection_in(error).is_none() {
                let status = context.response().map(|r| r.status().as_u16());
                let code = context
                    .response()
                    .and_then(|r| super::error_code(r.headers(), r.body().bytes()));
                let previous = super::PreviousAttempt::new(status, code, error.to_string());
                cfg.interceptor_state().store_put(previous);
            }
        }
        Ok(())
    }
}

impl Storable for super::PreviousAttempt {
    type Storer = StoreReplace<Self>;
}
