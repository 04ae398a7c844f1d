//! The Lambda entry point (feature `lambda`): API Gateway WebSocket events through
//! `lambda_runtime`, one [`Backend`] per sandbox.

use crate::backend::{Backend, ChatError, Reply, Settings};
use aws_config::BehaviorVersion;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use lambda_runtime::{LambdaEvent, service_fn};
use std::sync::Arc;
use tower_circuit_breaker::aws::cognito::CognitoVerifier;
use tower_circuit_breaker::fleet::{DynamoDbStore, FleetConfig, RegistryFleet};
use tower_circuit_breaker::{BoxError, CircuitBreakerRegistry};

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

/// Cold start: everything built once, then `lambda_runtime` calls the handler for each
/// event. Circuit state lives as long as the sandbox and is shared by its invocations.
pub(crate) async fn run() -> Result<(), BoxError> {
    let sdk_config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let registry = CircuitBreakerRegistry::new();
    let pool_id = env("COGNITO_USER_POOL_ID")?;
    let region = pool_id.split('_').next().unwrap_or_default().to_owned();
    let mut verifier = CognitoVerifier::builder(region, &pool_id, env("COGNITO_CLIENT_ID")?);
    if let Ok(url) = std::env::var("COGNITO_JWKS_URL") {
        verifier = verifier.jwks_url(url);
    }
    let verifier = verifier.registry(&registry).build()?;
    // Outside the request path: the first connection need not wait for the keys.
    if let Err(e) = verifier.prefetch().await {
        tracing::warn!(error = %e, "JWKS prefetch failed; fetching on demand");
    }
    let settings = Settings {
        connections_table: env("CONNECTIONS_TABLE")?,
        messages_table: env("WEBSOCKET_MESSAGES_TABLE")?,
        websocket_endpoint: env("WEBSOCKET_API_ENDPOINT")?,
        dynamodb_endpoint: None,
    };
    // `FLEET_TABLE` set: every circuit shares its state with the other sandboxes through
    // that DynamoDB table (one batched read per invocation at most once a second). No
    // background task: a frozen sandbox runs none, so each invocation refreshes first.
    let fleet = match std::env::var("FLEET_TABLE") {
        Ok(table) if !table.trim().is_empty() => {
            let store =
                DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&sdk_config), table.trim());
            let template = FleetConfig::builder("chat").build()?;
            Some(
                RegistryFleet::builder(Arc::new(store), template)
                    .manual()
                    .attach(&registry)?,
            )
        }
        _ => None,
    };
    let backend = Arc::new(Backend::new(&sdk_config, &registry, verifier, settings));
    lambda_runtime::run(service_fn(move |event| {
        let (backend, fleet) = (backend.clone(), fleet.clone());
        async move {
            if let Some(fleet) = &fleet {
                fleet.refresh().await;
            }
            handle(&backend, event).await
        }
    }))
    .await
}

async fn handle(
    backend: &Backend,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, lambda_runtime::Error> {
    let request = event.payload;
    let context = &request.request_context;
    let reply = match context.connection_id.as_deref() {
        None => Reply::error(&ChatError::BadRequest("no connection id")),
        Some(id) => match context.route_key.as_deref() {
            Some("$connect") => backend.on_connect(id, token(&request)).await,
            Some("$disconnect") => backend.on_disconnect(id).await,
            _ => {
                backend
                    .on_message(id, request.body.as_deref().unwrap_or_default())
                    .await
            }
        },
    };
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = reply.status.into();
    response.body = Some(Body::Text(reply.body));
    Ok(response)
}

/// `?token=...` on the WebSocket URL, or `Authorization: Bearer ...`.
fn token(request: &ApiGatewayWebsocketProxyRequest) -> Option<&str> {
    request
        .query_string_parameters
        .first("token")
        .or_else(|| {
            let value = request.headers.get("authorization")?.to_str().ok()?;
            Some(value.strip_prefix("Bearer ").unwrap_or(value))
        })
        .filter(|t| !t.is_empty())
}
