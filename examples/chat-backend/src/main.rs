//! The seed's chat backend — an API Gateway WebSocket API served by a Lambda function —
//! in Rust, with every AWS call under the seed's circuit breaker keys and presets.
//!
//! | route | what it does | circuit (seed key) | preset |
//! |---|---|---|---|
//! | `$connect` | verify the Cognito JWT, fail closed | `cognito` / `verifyJWT` | `cognito()` |
//! | | store the connection (PutItem) | `dynamodb` / `storeConnection` | `dynamodb()` |
//! | `$default` | store the user message (PutItem) | `dynamodb` / `storeUserMessage` | `dynamodb()` |
//! | | store the bot reply (PutItem) | `dynamodb` / `storeBotMessage` | `dynamodb()` |
//! | | post the reply (PostToConnection) | `apigateway-management` / `postToConnection` | `api_gateway_management()` |
//! | | on `GoneException`: remove the stale connection (DeleteItem) | `dynamodb` / `removeConnection` | `dynamodb()` |
//! | `$disconnect` | remove the connection (DeleteItem) | `dynamodb` / `removeConnection` | `dynamodb()` |
//!
//! Each call goes through `registry.execute(service, operation, op, fallback, &preset)` as in
//! the seed, with the seed's fallbacks as typed errors ("Database temporarily unavailable",
//! "WebSocket service temporarily unavailable", "Authentication service temporarily
//! unavailable"). After each route the handler logs the stats of the circuits it used
//! (state, failure rate, total requests), as the seed's conversation handler does; nothing
//! here logs a token or a message body.
//!
//! # Run it locally (the default)
//!
//! ```text
//! scripts/moto-server &                                     # moto on http://127.0.0.1:5055
//! cargo run -p chat-backend
//! ```
//!
//! It creates the tables and a Cognito user pool, user and token in moto (`MOTO_ENDPOINT`,
//! default `http://127.0.0.1:5055`), then plays a scripted conversation: connect, two
//! messages, a DynamoDB outage (a small TCP proxy between the DynamoDB client and moto stops
//! listening), the circuits opening, the fallback answer, DynamoDB coming back, the recovery
//! probe closing the circuits, and the disconnect. The DynamoDB circuits wait 3 s instead of
//! the preset's 20 s before probing (a registry override, printed at the start);
//! `CHAT_DEMO_RECOVERY_SECS=20` plays it with the seed's value. The transcript is on stdout,
//! the backend's logs on stderr.
//!
//! `CHAT_FLEET=dynamodb` (a table in moto) or `CHAT_FLEET=redis` (`REDIS_URL`) switches
//! fleet sharing on with one registry setting,
//! `registry.share_with_fleet(store, FleetConfig::builder("chat/local").build()?)`: every
//! circuit then shares its state through the store, as a Lambda fleet's sandboxes would.
//!
//! moto never answers `GoneException` (it creates unknown connections on the fly), so the
//! stale-connection path does not show here; `integration/tests/aws_faults` drives a 410 through the
//! per-attempt circuit with a fault server.
//!
//! # Run it as a Lambda function
//!
//! ```text
//! cargo build --release -p chat-backend --features lambda
//! ```
//!
//! With this package's feature `lambda`, inside Lambda (`AWS_LAMBDA_RUNTIME_API` set) `main` serves
//! `ApiGatewayWebsocketProxyRequest` events with `lambda_runtime`; the SDK clients, the
//! registry and the verifier are built once per sandbox and captured by the handler.
//! Settings from the environment: `CONNECTIONS_TABLE`, `WEBSOCKET_MESSAGES_TABLE`,
//! `WEBSOCKET_API_ENDPOINT` (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`),
//! `COGNITO_USER_POOL_ID`, `COGNITO_CLIENT_ID`, and optionally `COGNITO_JWKS_URL` (default:
//! the pool's) and `FLEET_TABLE` (a DynamoDB table made by `DynamoDbStore::create_table`:
//! every circuit then shares its state with the other sandboxes, refreshed at the start of
//! each invocation). The client sends its token as
//! `?token=...` on the WebSocket URL (browsers cannot set headers) or as
//! `Authorization: Bearer ...`.
//!
//! # Two layers of circuits
//!
//! The SDK clients are built with [`aws_client!`], so every HTTP *attempt* also goes through
//! a circuit per SDK operation (`dynamodb` / `PutItem`, …) below the SDK's retry loop: an
//! open one fails the next attempt at once, with no backoff sleep and no retry against it.
//! The seed's circuits, around whole operations with their fallbacks, sit on top. Both use
//! the same presets; the transcript marks the per-attempt ones. One layer alone works too:
//! the seed's keys are the `execute` ones, the per-attempt layer is what stops the SDK
//! from retrying into an outage.

mod backend;
#[cfg(feature = "lambda")]
mod lambda;
mod local;

use tower_circuit_breaker::BoxError;

// ===== main =====

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    #[cfg(feature = "lambda")]
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // One line per event on stdout, which Lambda sends to CloudWatch Logs.
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .without_time()
            .init();
        return runtime.block_on(lambda::run());
    }
    local::init_tracing();
    runtime.block_on(local::run())
}
