//! `aws::SdkErrorClassifier` gives an `SdkError` from a real SDK call the verdict
//! `classify_attempt` gives the attempt behind it, and `registry.execute_with` counts by
//! it: a `ConditionalCheckFailedException` through the registry keeps the circuit closed.

use super::*;
use tower_circuit_breaker::aws::SdkErrorClassifier;
use tower_circuit_breaker::classify::Classify;
use tower_circuit_breaker::registry::FallbackCause;

/// A DynamoDB client straight on `inner`: no breaker, no retries.
fn plain_dynamodb(region: &'static str, inner: SharedHttpClient) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config(region))
        .http_client(inner)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn put(ddb: &aws_sdk_dynamodb::Client) -> PutResult {
    ddb.put_item()
        .table_name("connections")
        .item("connectionId", AttributeValue::S("c1".into()))
        .send()
        .await
}

/// The seed's fallback shape: a rejection as an error the caller can recognise.
async fn reject(cause: FallbackCause<SdkError<PutItemError>>) -> PutResult {
    match cause {
        FallbackCause::Rejected(open) => Err(SdkError::construction_failure(open)),
        FallbackCause::Failed(e) => Err(e),
    }
}

use aws_sdk_dynamodb::operation::put_item::PutItemError;

type PutResult = Result<
    aws_sdk_dynamodb::operation::put_item::PutItemOutput,
    SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError>,
>;

#[tokio::test]
async fn the_sdk_error_verdicts_are_classify_attempts() {
    let replies = [
        (200, None),
        (400, Some("ConditionalCheckFailedException")),
        (400, Some("ValidationException")),
        (400, Some("ResourceNotFoundException")),
        (410, Some("GoneException")),
        (403, Some("AccessDeniedException")),
        (400, Some("ProvisionedThroughputExceededException")),
        (400, Some("ThrottlingException")),
        (429, None),
        (500, Some("InternalServerError")),
        (503, None),
        (400, Some("TransactionInProgressException")),
    ];
    let double = Double::new(ok());
    let ddb = plain_dynamodb("eu-north-1", double.client());
    for (status, code) in replies {
        let reply = match code {
            Some(code) => dynamo_error(status, code),
            None => Reply::status(status, "{}"),
        };
        double.set(reply.clone());
        let result = put(&ddb).await;
        for count_throttling in [true, false] {
            let expected = classify_attempt(
                status,
                &Headers::new(),
                Some(reply.body.as_bytes()),
                count_throttling,
            );
            let classifier = SdkErrorClassifier::new().count_throttling(count_throttling);
            assert_eq!(
                classifier.classify(&result),
                expected,
                "{status} {code:?} count_throttling={count_throttling}: {result:?}"
            );
        }
    }
}

#[tokio::test]
async fn transport_errors_fail_and_rejections_are_ignored() {
    let inner = http_client_fn(|_, _| SharedHttpConnector::new(ResetConnector));
    let result = put(&plain_dynamodb("eu-west-3", inner)).await;
    assert!(matches!(result, Err(SdkError::DispatchFailure(_))));
    assert_eq!(
        SdkErrorClassifier::new().classify(&result),
        Verdict::Failure
    );

    // A rejection by the per-attempt circuit: counted there already.
    let registry = CircuitBreakerRegistry::new();
    registry
        .circuit("dynamodb", "PutItem", &CircuitBreakerConfig::dynamodb())
        .force_open();
    let ddb = dynamodb(
        &sdk_config("eu-west-3"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        Double::new(ok()).client(),
        &Attempts::default(),
    );
    let result = put(&ddb).await;
    assert!(is_circuit_rejection(result.as_ref().unwrap_err()));
    assert_eq!(
        SdkErrorClassifier::new().classify(&result),
        Verdict::Ignored
    );
}

#[derive(Debug)]
struct ResetConnector;

impl HttpConnector for ResetConnector {
    fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )))))
    }
}

#[tokio::test]
async fn execute_with_the_sdk_classifier_keeps_conditional_check_failures_closed() {
    let double = Double::new(dynamo_error(400, "ConditionalCheckFailedException"));
    let ddb = plain_dynamodb("eu-central-2", double.client());
    let registry = CircuitBreakerRegistry::new();
    let config = three_strikes();
    for _ in 0..5 {
        let err = registry
            .execute_with(
                "chat",
                "PutItem",
                &SdkErrorClassifier::new(),
                || put(&ddb),
                reject,
                &config,
            )
            .await
            .unwrap_err();
        // The error comes back as it is.
        assert!(
            err.as_service_error()
                .unwrap()
                .is_conditional_check_failed_exception()
        );
    }
    let stats = registry.stats("chat", "PutItem").unwrap();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.failure_count, stats.success_count), (0, 5));

    // `execute` counts every `Err`: the same five open its circuit.
    for _ in 0..5 {
        let _ = registry
            .execute("chat", "PutItemPlain", || put(&ddb), reject, &config)
            .await;
    }
    assert_eq!(
        registry.stats("chat", "PutItemPlain").unwrap().state,
        CircuitState::Open
    );

    // 5xx through execute_with: failures, and the circuit opens.
    double.set(dynamo_error(500, "InternalServerError"));
    for _ in 0..5 {
        let _ = registry
            .execute_with(
                "chat",
                "PutItem",
                &SdkErrorClassifier::new(),
                || put(&ddb),
                reject,
                &config,
            )
            .await;
    }
    assert_eq!(
        registry.stats("chat", "PutItem").unwrap().state,
        CircuitState::Open
    );
}

#[tokio::test]
async fn a_rejection_after_a_failed_attempt_keeps_that_attempts_error() {
    use tower_circuit_breaker::aws::RejectedAfterAttempt;
    let double = Double::new(dynamo_error(500, "InternalServerError"));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let one_strike = CircuitBreakerConfig::dynamodb()
        .to_builder()
        .failure_threshold(1)
        .minimum_request_count(0)
        .build()
        .unwrap();
    let ddb = dynamodb(
        &sdk_config("sa-east-1"),
        &registry,
        one_strike,
        double.client(),
        &attempts,
    );
    let err = put(&ddb).await.unwrap_err();
    // The first attempt reached the wire, failed and opened the circuit; the retry was
    // rejected.
    assert_eq!((double.hits(), attempts.get()), (1, 2));
    assert!(circuit_rejection(&err).is_some());
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut rejected = None;
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<RejectedAfterAttempt>() {
            rejected = Some(r);
        }
        source = e.source();
    }
    let previous = rejected
        .expect("the rejection names the attempt before it")
        .previous_attempt();
    assert_eq!(previous.status(), Some(500));
    assert_eq!(previous.code(), Some("InternalServerError"));
    assert_eq!(
        SdkErrorClassifier::new().classify(&Err::<(), _>(err)),
        Verdict::Ignored
    );

    // A rejection with no failed attempt before it is a plain `CircuitOpen`.
    let err = put(&ddb).await.unwrap_err();
    assert!(circuit_rejection(&err).is_some());
    assert_eq!(double.hits(), 1);
}
