//! An AWS SDK client behind the tower breaker, moved into `tokio::spawn` on a
//! multi-thread runtime (issue #13, item 1): a DynamoDB client from `aws_client!`, called
//! through a `service_fn` under `CircuitBreakerLayer` in typed-error mode and in the
//! default `BoxError` mode. The SDK's `infallible_client_fn` answers underneath: no
//! sockets.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_http_client::test_util::infallible_client_fn;
use aws_smithy_types::body::SdkBody;
use std::future::Future;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_circuit_breaker::error::{CircuitBreakerError, CircuitOpen};
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerRegistry, aws_client,
};

fn spawn_checked<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut)
}

/// A DynamoDB client from `aws_client!` whose connector answers every request with an
/// empty `GetItem` response.
fn dynamodb(region: &'static str) -> aws_sdk_dynamodb::Client {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "SECRET", None, None, "test",
        )))
        .build();
    let inner = infallible_client_fn(|_req: http::Request<SdkBody>| {
        http::Response::builder()
            .status(200)
            .body(SdkBody::from("{}"))
            .unwrap()
    });
    let registry = CircuitBreakerRegistry::new();
    aws_client!(
        aws_sdk_dynamodb,
        &sdk,
        &registry,
        CircuitBreakerConfig::dynamodb(),
        inner = inner
    )
}

/// `GetItem` of `key`, as a tower service.
fn get_item(
    client: aws_sdk_dynamodb::Client,
) -> impl tower::Service<
    String,
    Response = bool,
    Error = aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::get_item::GetItemError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
    Future = impl Future + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |key: String| {
        let client = client.clone();
        async move {
            let out = client
                .get_item()
                .table_name("items")
                .key("pk", AttributeValue::S(key))
                .send()
                .await?;
            Ok(out.item.is_some())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_mode_over_an_sdk_client_spawns() {
    let breaker =
        CircuitBreakerLayer::named("items", CircuitBreakerConfig::dynamodb()).typed_errors();
    let circuit = breaker.circuit().clone();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .service(get_item(dynamodb("eu-west-1")));
    let s = svc.clone();
    let found = spawn_checked(async move { s.oneshot("a".to_string()).await })
        .await
        .unwrap();
    assert!(!found.unwrap());
    circuit.force_open();
    let s = svc.clone();
    match spawn_checked(async move { s.oneshot("a".to_string()).await })
        .await
        .unwrap()
    {
        Err(CircuitBreakerError::Rejected(open)) => assert_eq!(open.circuit(), "items"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_error_mode_over_an_sdk_client_with_timeout_spawns() {
    let breaker = CircuitBreakerLayer::named("items", CircuitBreakerConfig::dynamodb());
    let circuit = breaker.circuit().clone();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .timeout(Duration::from_secs(5))
        .service(get_item(dynamodb("eu-west-2")));
    let s = svc.clone();
    let found = spawn_checked(async move { s.oneshot("a".to_string()).await })
        .await
        .unwrap();
    assert!(!found.unwrap());
    circuit.force_open();
    let s = svc.clone();
    let err = spawn_checked(async move { s.oneshot("a".to_string()).await })
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
}
