//! The happy path against a local AWS (moto, started by `scripts/test`): real SDK clients
//! built with `aws_client!`, every attempt through a registry circuit.
//!
//! Without `MOTO_ENDPOINT` these tests print a `SKIPPED` banner and pass; under
//! `scripts/test` (and so in CI) `TCB_AWS_INTEGRATION=1` makes a missing endpoint a failure.
//! Tests run in parallel against one moto, so each uses a table of its own (no global reset).

use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use support::{moto_endpoint, sdk_config, unique_name};
use tower_circuit_breaker::aws::is_circuit_rejection;
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitBreakerStats, CircuitState, aws_client,
};

fn stats(registry: &CircuitBreakerRegistry, service: &str, operation: &str) -> CircuitBreakerStats {
    registry
        .stats(service, operation)
        .unwrap_or_else(|| panic!("no circuit ({service:?}, {operation:?}) in the registry"))
}

/// Closed, `successes` successes, nothing else.
fn assert_healthy(
    registry: &CircuitBreakerRegistry,
    service: &str,
    operation: &str,
    successes: u64,
) {
    let s = stats(registry, service, operation);
    assert_eq!(
        s.state,
        CircuitState::Closed,
        "({service}, {operation}): {s:?}"
    );
    assert_eq!(
        s.success_count, successes,
        "({service}, {operation}) successes: {s:?}"
    );
    assert_eq!(
        s.failure_count, 0,
        "({service}, {operation}) failures: {s:?}"
    );
    assert_eq!(
        s.rejected_count, 0,
        "({service}, {operation}) rejections: {s:?}"
    );
}

fn dynamodb(endpoint: &str, registry: &CircuitBreakerRegistry) -> aws_sdk_dynamodb::Client {
    aws_client!(
        aws_sdk_dynamodb,
        &sdk_config(endpoint, None),
        registry,
        CircuitBreakerConfig::dynamodb()
    )
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, table: &str) {
    ddb.create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("connectionId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("connectionId")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

#[tokio::test]
async fn dynamodb_create_put_get_delete_through_the_breaker() {
    let Some(endpoint) = moto_endpoint("dynamodb_create_put_get_delete_through_the_breaker") else {
        return;
    };
    let registry = CircuitBreakerRegistry::new();
    let ddb = dynamodb(&endpoint, &registry);
    let table = unique_name("connections");

    create_table(&ddb, &table).await;
    ddb.put_item()
        .table_name(&table)
        .item("connectionId", s("conn-1"))
        .item("userId", s("alice"))
        .send()
        .await
        .expect("PutItem");
    let got = ddb
        .get_item()
        .table_name(&table)
        .key("connectionId", s("conn-1"))
        .send()
        .await
        .expect("GetItem");
    assert_eq!(got.item().and_then(|i| i.get("userId")), Some(&s("alice")));

    ddb.delete_item()
        .table_name(&table)
        .key("connectionId", s("conn-1"))
        .send()
        .await
        .expect("DeleteItem");
    let gone = ddb
        .get_item()
        .table_name(&table)
        .key("connectionId", s("conn-1"))
        .send()
        .await
        .expect("GetItem after delete");
    assert!(gone.item().is_none(), "item still there: {gone:?}");

    // One circuit per operation, keyed as the seed keys them, each with its successes.
    assert_healthy(&registry, "dynamodb", "CreateTable", 1);
    assert_healthy(&registry, "dynamodb", "PutItem", 1);
    assert_healthy(&registry, "dynamodb", "GetItem", 2);
    assert_healthy(&registry, "dynamodb", "DeleteItem", 1);
    let keys: Vec<(String, String)> = registry
        .all_stats()
        .into_iter()
        .map(|k| (k.service, k.operation))
        .collect();
    assert_eq!(
        keys,
        [
            ("dynamodb", "CreateTable"),
            ("dynamodb", "DeleteItem"),
            ("dynamodb", "GetItem"),
            ("dynamodb", "PutItem"),
        ]
        .map(|(s, o)| (s.to_owned(), o.to_owned()))
    );
}

#[tokio::test]
async fn conditional_check_failures_do_not_trip_the_circuit() {
    let Some(endpoint) = moto_endpoint("conditional_check_failures_do_not_trip_the_circuit") else {
        return;
    };
    let registry = CircuitBreakerRegistry::new();
    let ddb = dynamodb(&endpoint, &registry);
    let table = unique_name("messages");
    create_table(&ddb, &table).await;
    ddb.put_item()
        .table_name(&table)
        .item("connectionId", s("conn-1"))
        .send()
        .await
        .expect("PutItem");

    // Twice the preset's minimum request count of "insert only if absent", all refused: the
    // dependency answered every time, so the circuit counts successes and stays closed.
    let preset = CircuitBreakerConfig::dynamodb();
    let refused = 2 * preset
        .minimum_request_count()
        .max(preset.failure_threshold());
    for i in 0..refused {
        let err = ddb
            .put_item()
            .table_name(&table)
            .item("connectionId", s("conn-1"))
            .condition_expression("attribute_not_exists(connectionId)")
            .send()
            .await
            .expect_err("the conditional put must fail");
        assert!(
            matches!(
                err.as_service_error(),
                Some(PutItemError::ConditionalCheckFailedException(_))
            ),
            "put {i}: {err:?}"
        );
        assert_eq!(err.code(), Some("ConditionalCheckFailedException"));
        assert!(!is_circuit_rejection(&err), "put {i} was rejected: {err:?}");
    }
    // No retries either: one attempt per operation.
    assert_healthy(&registry, "dynamodb", "PutItem", 1 + u64::from(refused));
}

#[tokio::test]
async fn post_to_connection_through_the_breaker() {
    let Some(endpoint) = moto_endpoint("post_to_connection_through_the_breaker") else {
        return;
    };
    let registry = CircuitBreakerRegistry::new();
    // moto serves the API Gateway Management API only at the stage-less endpoint, i.e. the
    // moto endpoint itself (in AWS it is https://{api-id}.execute-api.{region}.amazonaws.com/{stage}).
    let apigw = aws_client!(
        aws_sdk_apigatewaymanagement,
        &sdk_config(&endpoint, None),
        &registry,
        CircuitBreakerConfig::api_gateway_management()
    );
    let connection = unique_name("conn");
    for message in ["hello", "how are you?"] {
        apigw
            .post_to_connection()
            .connection_id(&connection)
            .data(Blob::new(message))
            .send()
            .await
            .expect("PostToConnection");
    }
    apigw
        .delete_connection()
        .connection_id(&connection)
        .send()
        .await
        .expect("DeleteConnection");

    assert_healthy(&registry, "apigateway-management", "PostToConnection", 2);
    assert_healthy(&registry, "apigateway-management", "DeleteConnection", 1);
    assert_eq!(registry.len(), 2);
}

#[tokio::test]
async fn clients_on_one_registry_share_circuits() {
    let Some(endpoint) = moto_endpoint("clients_on_one_registry_share_circuits") else {
        return;
    };
    let registry = CircuitBreakerRegistry::new();
    let first = dynamodb(&endpoint, &registry);
    let second = dynamodb(&endpoint, &registry);
    let table = unique_name("shared");
    create_table(&first, &table).await;
    for (i, ddb) in [&first, &second, &first].into_iter().enumerate() {
        ddb.put_item()
            .table_name(&table)
            .item("connectionId", s(&format!("conn-{i}")))
            .send()
            .await
            .expect("PutItem");
    }
    assert_healthy(&registry, "dynamodb", "PutItem", 3);

    // A circuit forced open rejects the other client's calls too, without a request.
    assert!(registry.force_open("dynamodb", "PutItem"));
    let err = second
        .put_item()
        .table_name(&table)
        .item("connectionId", s("conn-x"))
        .send()
        .await
        .expect_err("forced open");
    assert!(is_circuit_rejection(&err), "{err:?}");
    let scan = first.scan().table_name(&table).send().await.expect("Scan");
    assert_eq!(scan.count(), 3, "the rejected put reached moto");
    assert_eq!(stats(&registry, "dynamodb", "PutItem").rejected_count, 1);
}
