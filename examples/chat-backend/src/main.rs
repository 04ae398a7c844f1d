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
//! cargo run --example chat_backend --features aws,cognito
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
//! moto never answers `GoneException` (it creates unknown connections on the fly), so the
//! stale-connection path does not show here; `tests/aws_faults` drives a 410 through the
//! per-attempt circuit with a fault server.
//!
//! # Run it as a Lambda function
//!
//! ```text
//! cargo build --release --example chat_backend --features aws,cognito,lambda
//! ```
//!
//! With feature `lambda`, inside Lambda (`AWS_LAMBDA_RUNTIME_API` set) `main` serves
//! `ApiGatewayWebsocketProxyRequest` events with `lambda_runtime`; the SDK clients, the
//! registry and the verifier are built once per sandbox and captured by the handler.
//! Settings from the environment: `CONNECTIONS_TABLE`, `WEBSOCKET_MESSAGES_TABLE`,
//! `WEBSOCKET_API_ENDPOINT` (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`),
//! `COGNITO_USER_POOL_ID`, `COGNITO_CLIENT_ID`, and optionally `COGNITO_JWKS_URL` (default:
//! the pool's). The client sends its token as
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

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use tower_circuit_breaker::aws::cognito::{CognitoClaims, CognitoVerifier, VerifyError};
use tower_circuit_breaker::aws::rejection_in;
use tower_circuit_breaker::error::CircuitOpen;
use tower_circuit_breaker::registry::FallbackCause;
use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerRegistry, aws_client};

// ===== the seed's fallback answers =====

const DB_UNAVAILABLE: &str = "Database temporarily unavailable";
const WS_UNAVAILABLE: &str = "WebSocket service temporarily unavailable";
const AUTH_UNAVAILABLE: &str = "Authentication service temporarily unavailable";

/// Messages longer than this are refused (API Gateway's WebSocket frame limit is 32 KiB).
const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Stored items expire after a day, as in the seed.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a route failed.
#[derive(Debug)]
enum ChatError {
    /// No token, or one not accepted (bad, expired, another pool or client): 401.
    Unauthorized(Option<VerifyError>),
    /// A fallback's answer: the circuit is open, the dependency was not called. For
    /// Cognito also a key fetch that failed: authentication fails closed. 503.
    Unavailable {
        message: &'static str,
        cause: String,
    },
    /// The dependency call failed and its circuit counted it. `message` is what the user
    /// is told. 503 when a per-attempt circuit rejected it, 500 otherwise.
    Failed {
        message: &'static str,
        source: BoxError,
    },
    /// The request itself is unusable: 400.
    BadRequest(&'static str),
}

impl ChatError {
    fn failed<E: std::error::Error + Send + Sync + 'static>(message: &'static str, e: E) -> Self {
        ChatError::Failed {
            message,
            source: Box::new(e),
        }
    }

    fn status(&self) -> u16 {
        match self {
            ChatError::Unauthorized(_) => 401,
            ChatError::Unavailable { .. } => 503,
            ChatError::Failed { source, .. } if rejection_in(source.as_ref()).is_some() => 503,
            ChatError::Failed { .. } => 500,
            ChatError::BadRequest(_) => 400,
        }
    }

    /// Whether posting to the WebSocket is what failed.
    fn is_websocket(&self) -> bool {
        match self {
            ChatError::Unavailable { message, .. } | ChatError::Failed { message, .. } => {
                *message == WS_UNAVAILABLE
            }
            _ => false,
        }
    }

    /// What the client is told.
    fn user_message(&self) -> &'static str {
        match self {
            ChatError::Unauthorized(_) => "Unauthorized",
            ChatError::Unavailable { message, .. } | ChatError::Failed { message, .. } => message,
            ChatError::BadRequest(why) => why,
        }
    }

    /// What went wrong, for logs: error texts of the SDK, the verifier and the breaker,
    /// which carry no token and no message body.
    fn detail(&self) -> String {
        match self {
            ChatError::Unauthorized(Some(e)) => e.to_string(),
            ChatError::Unauthorized(None) => "no token".to_owned(),
            ChatError::Unavailable { cause, .. } => format!("fallback: {cause}"),
            ChatError::Failed { source, .. } => match rejection_in(source.as_ref()) {
                Some(open) => format!("failed fast: {}, no request sent", describe_open(open)),
                None => format!("failed: {}", root_cause(source.as_ref())),
            },
            ChatError::BadRequest(why) => (*why).to_owned(),
        }
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.user_message(), self.detail())
    }
}

impl std::error::Error for ChatError {}

/// "circuit `dynamodb/PutItem` is open, retry after 2.9 s".
fn describe_open(open: &CircuitOpen) -> String {
    match open.retry_after() {
        Some(d) => format!(
            "circuit `{}` is open, retry after {:.1} s",
            open.circuit(),
            d.as_secs_f64()
        ),
        None => open.to_string(),
    }
}

/// The innermost error of a chain: "Connection refused (os error 111)" rather than
/// "dispatch failure".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A route's answer: the status and body API Gateway gets back, and a line for the logs.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    detail: String,
}

impl Reply {
    fn ok(body: impl Into<String>) -> Self {
        Reply {
            status: 200,
            body: body.into(),
            detail: String::new(),
        }
    }

    fn error(e: &ChatError) -> Self {
        Reply {
            status: e.status(),
            body: e.user_message().to_owned(),
            detail: e.detail(),
        }
    }
}

/// What became of a post to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Sent,
    /// `GoneException`: the client has disconnected; its row was removed.
    Gone,
}

// ===== the backend =====

/// The clients, the registry and the verifier: built once per process (per Lambda
/// sandbox), shared by every invocation. Cheap to clone.
#[derive(Clone, Debug)]
struct Backend {
    registry: CircuitBreakerRegistry,
    verifier: CognitoVerifier,
    dynamodb: aws_sdk_dynamodb::Client,
    apigw: aws_sdk_apigatewaymanagement::Client,
    connections_table: String,
    messages_table: String,
}

/// Where the backend's resources are.
struct Settings {
    connections_table: String,
    messages_table: String,
    /// The API Gateway Management API endpoint: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`
    /// (moto wants it without the stage).
    websocket_endpoint: String,
    /// DynamoDB's endpoint when not the `SdkConfig`'s (locally: the outage proxy).
    dynamodb_endpoint: Option<String>,
}

/// The SDK's timeouts. None is set by default (only a 3.1 s connect timeout), so a
/// black-holed endpoint would hang each attempt until the Lambda times out, and the
/// breaker would never hear of it. An attempt that times out is dropped by the SDK, which
/// the per-attempt circuit counts as a failure.
fn sdk_timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(attempt)
        .operation_timeout(Duration::from_secs(3))
        .build()
}

impl Backend {
    fn new(
        sdk_config: &SdkConfig,
        registry: &CircuitBreakerRegistry,
        verifier: CognitoVerifier,
        settings: Settings,
    ) -> Self {
        let dynamodb_endpoint = settings.dynamodb_endpoint;
        let dynamodb = aws_client!(
            aws_sdk_dynamodb,
            sdk_config,
            registry,
            CircuitBreakerConfig::dynamodb(),
            configure = |mut b| {
                if let Some(url) = dynamodb_endpoint {
                    b = b.endpoint_url(url);
                }
                b.timeout_config(sdk_timeouts(Duration::from_millis(800)))
            },
        );
        let websocket_endpoint = settings.websocket_endpoint;
        let apigw = aws_client!(
            aws_sdk_apigatewaymanagement,
            sdk_config,
            registry,
            CircuitBreakerConfig::api_gateway_management(),
            configure = |b| b
                .endpoint_url(websocket_endpoint)
                .timeout_config(sdk_timeouts(Duration::from_secs(1))),
        );
        Backend {
            registry: registry.clone(),
            verifier,
            dynamodb,
            apigw,
            connections_table: settings.connections_table,
            messages_table: settings.messages_table,
        }
    }

    // ----- routes -----

    /// `$connect`: verify the token, then store the connection.
    async fn on_connect(&self, connection_id: &str, token: Option<&str>) -> Reply {
        let reply = match self.connect(connection_id, token).await {
            Ok(claims) => Reply::ok(format!(
                "connected as {}",
                claims.username.as_deref().unwrap_or("user")
            )),
            Err(e) => self.refuse("$connect", connection_id, &e),
        };
        // The seed's conversation handler logs the Cognito circuit's stats.
        self.log_stats(&[("cognito", "verifyJWT"), ("dynamodb", "storeConnection")]);
        reply
    }

    /// A message (`$default`): store it and a bot reply, post the reply.
    async fn on_message(&self, connection_id: &str, body: &str) -> Reply {
        let reply = match self.converse(connection_id, body).await {
            Ok(Delivery::Sent) => Reply::ok("stored; bot reply posted"),
            Ok(Delivery::Gone) => Reply::ok("stored; the client has gone, connection removed"),
            Err(e) => {
                // The WebSocket still works when only DynamoDB is down: tell the client.
                let mut notified = false;
                if !e.is_websocket() {
                    let notice = json!({ "type": "error", "message": e.user_message() });
                    match self.post(connection_id, notice.to_string()).await {
                        Ok(delivery) => notified = delivery == Delivery::Sent,
                        Err(e) => {
                            tracing::warn!(connection_id, error = %e.detail(), "error notice not sent");
                        }
                    }
                }
                let mut reply = self.refuse("message", connection_id, &e);
                if notified {
                    reply.detail.push_str("; error notice posted to the client");
                }
                reply
            }
        };
        self.log_stats(&[
            ("dynamodb", "storeUserMessage"),
            ("dynamodb", "storeBotMessage"),
            ("apigateway-management", "postToConnection"),
        ]);
        reply
    }

    /// `$disconnect`: remove the connection.
    async fn on_disconnect(&self, connection_id: &str) -> Reply {
        let reply = match self.remove_connection(connection_id).await {
            Ok(()) => Reply::ok("disconnected"),
            Err(e) => self.refuse("$disconnect", connection_id, &e),
        };
        self.log_stats(&[("dynamodb", "removeConnection")]);
        reply
    }

    fn refuse(&self, route: &str, connection_id: &str, e: &ChatError) -> Reply {
        let reply = Reply::error(e);
        tracing::warn!(route, connection_id, status = reply.status, error = %reply.detail, "request refused");
        reply
    }

    /// The stats of the circuits a route used, one line each, as the seed logs them.
    fn log_stats(&self, keys: &[(&str, &str)]) {
        for &(service, operation) in keys {
            if let Some(stats) = self.registry.stats(service, operation) {
                tracing::info!(
                    service,
                    operation,
                    state = %stats.state,
                    failure_rate = %format_args!("{:.2}", stats.failure_rate),
                    total_requests = stats.total_requests,
                    "Circuit breaker status"
                );
            }
        }
    }

    // ----- the work -----

    async fn connect(
        &self,
        connection_id: &str,
        token: Option<&str>,
    ) -> Result<CognitoClaims, ChatError> {
        let token = token.ok_or(ChatError::Unauthorized(None))?;
        let claims = self.authenticate(token).await?;
        self.store_connection(connection_id, &claims).await?;
        Ok(claims)
    }

    /// `("cognito", "verifyJWT")`. The verifier was built with `.registry(&registry)`: its
    /// JWKS fetch runs through this very circuit with the cognito preset, so it *is* the
    /// seed's `execute('cognito', 'verifyJWT', ...)`. It is not wrapped in `execute` again:
    /// a second pass through the same circuit would count every fetch twice, and a
    /// half-open probe would be rejected by its own inner call. Unlike the seed, a bad
    /// token is not a failure (anyone could open the circuit with garbage tokens), and
    /// tokens signed by a cached key verify while Cognito is down.
    async fn authenticate(&self, token: &str) -> Result<CognitoClaims, ChatError> {
        match self.verifier.verify(token).await {
            Ok(claims) => Ok(claims),
            // The seed's fallback: fail closed. Cognito unavailable never lets anyone in.
            Err(VerifyError::Unavailable(why)) => {
                tracing::warn!(reason = %why, "Cognito service unavailable: rejecting the connection");
                Err(ChatError::Unavailable {
                    message: AUTH_UNAVAILABLE,
                    cause: why.to_string(),
                })
            }
            Err(e) => Err(ChatError::Unauthorized(Some(e))),
        }
    }

    /// `("dynamodb", "storeConnection")`.
    async fn store_connection(
        &self,
        connection_id: &str,
        claims: &CognitoClaims,
    ) -> Result<(), ChatError> {
        let now = epoch_secs(SystemTime::now());
        self.registry
            .execute(
                "dynamodb",
                "storeConnection",
                || async {
                    self.dynamodb
                        .put_item()
                        .table_name(&self.connections_table)
                        .item("connectionId", s(connection_id))
                        .item("userId", s(&claims.sub))
                        .item("username", s(claims.username.as_deref().unwrap_or("")))
                        .item("connectedAt", n(now))
                        .item("ttl", n(now + TTL.as_secs()))
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| ChatError::failed(DB_UNAVAILABLE, e))
                },
                db_fallback,
                &CircuitBreakerConfig::dynamodb(),
            )
            .await
    }

    /// `("dynamodb", "removeConnection")`.
    async fn remove_connection(&self, connection_id: &str) -> Result<(), ChatError> {
        self.registry
            .execute(
                "dynamodb",
                "removeConnection",
                || async {
                    self.dynamodb
                        .delete_item()
                        .table_name(&self.connections_table)
                        .key("connectionId", s(connection_id))
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| ChatError::failed(DB_UNAVAILABLE, e))
                },
                db_fallback,
                &CircuitBreakerConfig::dynamodb(),
            )
            .await
    }

    async fn converse(&self, connection_id: &str, body: &str) -> Result<Delivery, ChatError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(ChatError::BadRequest("message too long"));
        }
        // `{"action": "sendMessage", "message": "..."}`, or plain text.
        let text = match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) => match v.get("message").and_then(|m| m.as_str()) {
                Some(m) => m.to_owned(),
                None => return Err(ChatError::BadRequest("no `message` field")),
            },
            Err(_) => body.to_owned(),
        };
        if text.trim().is_empty() {
            return Err(ChatError::BadRequest("empty message"));
        }
        let now = SystemTime::now();
        self.store_message("storeUserMessage", connection_id, "user", &text, now)
            .await?;
        let reply = bot_reply(&text);
        let reply_id = self
            .store_message("storeBotMessage", connection_id, "bot", &reply, now)
            .await?;
        let payload = json!({ "type": "bot", "messageId": reply_id, "message": reply });
        self.post(connection_id, payload.to_string()).await
    }

    /// `("dynamodb", "storeUserMessage")` / `("dynamodb", "storeBotMessage")`: one message
    /// item. Returns its id. The seed also writes the user id into each message; here the
    /// connection row (written at `$connect` with the user id) links the two, which spares
    /// a lookup per message.
    async fn store_message(
        &self,
        operation: &'static str,
        connection_id: &str,
        kind: &str,
        content: &str,
        now: SystemTime,
    ) -> Result<String, ChatError> {
        let id = message_id(kind);
        let secs = epoch_secs(now);
        self.registry
            .execute(
                "dynamodb",
                operation,
                || async {
                    self.dynamodb
                        .put_item()
                        .table_name(&self.messages_table)
                        .item("messageId", s(&id))
                        .item("connectionId", s(connection_id))
                        .item("type", s(kind))
                        .item("content", s(content))
                        .item("timestamp", n(secs))
                        .item("ttl", n(secs + TTL.as_secs()))
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| ChatError::failed(DB_UNAVAILABLE, e))
                },
                db_fallback,
                &CircuitBreakerConfig::dynamodb(),
            )
            .await?;
        Ok(id)
    }

    /// `("apigateway-management", "postToConnection")`. A `GoneException` is the client
    /// having left, not an outage: the operation succeeds (the circuit counts a success;
    /// the per-attempt circuit also counts a 410 as one) and the stale connection is
    /// removed.
    async fn post(&self, connection_id: &str, payload: String) -> Result<Delivery, ChatError> {
        let delivery = self
            .registry
            .execute(
                "apigateway-management",
                "postToConnection",
                || async {
                    let sent = self
                        .apigw
                        .post_to_connection()
                        .connection_id(connection_id)
                        .data(Blob::new(payload))
                        .send()
                        .await;
                    match sent {
                        Ok(_) => Ok(Delivery::Sent),
                        Err(e)
                            if matches!(
                                e.as_service_error(),
                                Some(PostToConnectionError::GoneException(_))
                            ) =>
                        {
                            Ok(Delivery::Gone)
                        }
                        Err(e) => Err(ChatError::failed(WS_UNAVAILABLE, e)),
                    }
                },
                |cause| async move {
                    // The seed's fallback: log, message not sent.
                    tracing::warn!(
                        connection_id,
                        "API Gateway Management API unavailable, message not sent"
                    );
                    Err(ChatError::Unavailable {
                        message: WS_UNAVAILABLE,
                        cause: rejection_text(cause, "API Gateway"),
                    })
                },
                &CircuitBreakerConfig::api_gateway_management(),
            )
            .await?;
        if delivery == Delivery::Gone {
            tracing::info!(connection_id, "client gone: removing the stale connection");
            self.remove_connection(connection_id).await?;
        }
        Ok(delivery)
    }
}

/// The DynamoDB calls' fallback, the seed's `throw new Error('Database temporarily unavailable')`.
async fn db_fallback<T>(cause: FallbackCause<ChatError>) -> Result<T, ChatError> {
    Err(ChatError::Unavailable {
        message: DB_UNAVAILABLE,
        cause: rejection_text(cause, "DynamoDB"),
    })
}

/// Why a fallback ran, for the logs.
fn rejection_text(cause: FallbackCause<ChatError>, dependency: &str) -> String {
    match cause {
        FallbackCause::Rejected(open) => {
            format!("{}, {dependency} not called", describe_open(&open))
        }
        FallbackCause::Failed(e) => e.detail(),
    }
}

/// The demo bot. It does not repeat the message: message bodies stay out of replies and logs.
fn bot_reply(text: &str) -> String {
    let words = text.split_whitespace().count();
    format!("Thanks! I got your message ({words} words). I'm a demo bot, so that's all I can say.")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A unique message id: time, process-wide sequence number, kind.
fn message_id(kind: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{seq}-{kind}")
}

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

// ===== Lambda mode =====

#[cfg(feature = "lambda")]
mod lambda {
    use super::{Backend, Settings};
    use aws_config::BehaviorVersion;
    use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
    use aws_lambda_events::encodings::Body;
    use lambda_runtime::{LambdaEvent, service_fn};
    use std::sync::Arc;
    use tower_circuit_breaker::aws::cognito::CognitoVerifier;
    use tower_circuit_breaker::{BoxError, CircuitBreakerRegistry};

    fn env(name: &str) -> Result<String, BoxError> {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
    }

    /// Cold start: everything built once, then `lambda_runtime` calls the handler for each
    /// event. Circuit state lives as long as the sandbox and is shared by its invocations.
    pub(super) async fn run() -> Result<(), BoxError> {
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
        let backend = Arc::new(Backend::new(&sdk_config, &registry, verifier, settings));
        lambda_runtime::run(service_fn(move |event| {
            let backend = backend.clone();
            async move { handle(&backend, event).await }
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
            None => super::Reply::error(&super::ChatError::BadRequest("no connection id")),
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
}

// ===== local mode: moto, an outage, a transcript =====

mod local {
    use super::{Backend, Reply, Settings};
    use aws_config::retry::RetryConfig;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_sdk_dynamodb::operation::create_table::CreateTableError;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use serde_json::{Value, json};
    use std::io::Write;
    use std::net::SocketAddr;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant, SystemTime};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;
    use tower_circuit_breaker::aws::cognito::CognitoVerifier;
    use tower_circuit_breaker::config::ConfigPatch;
    use tower_circuit_breaker::registry::{RegistryConfig, ServiceOverrides};
    use tower_circuit_breaker::{BoxError, CircuitBreakerRegistry, CircuitState};

    const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:5055";
    const REGION: &str = "us-east-1";
    const CONNECTIONS_TABLE: &str = "chat-connections";
    const MESSAGES_TABLE: &str = "chat-messages";
    const USER: &str = "alice";
    const PASSWORD: &str = "Correct-Horse-9!";

    /// The backend's logs on stderr, each line marked `log`, under the transcript's lines
    /// on stdout (`2>/dev/null` leaves the transcript alone). The crate's own transition
    /// events are left out: the transcript prints every transition.
    pub(super) fn init_tracing() {
        use tracing_subscriber::filter::{LevelFilter, Targets};
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let targets = Targets::new()
            .with_target("chat_backend", LevelFilter::INFO)
            .with_target("tower_circuit_breaker", LevelFilter::ERROR)
            .with_default(LevelFilter::WARN);
        tracing_subscriber::fmt()
            .with_max_level(LevelFilter::INFO)
            .with_target(false)
            .without_time()
            .with_ansi(false)
            .compact()
            .with_writer(|| LogLine)
            .finish()
            .with(targets)
            .init();
    }

    /// Writes each log event to stderr behind a margin and a `log` mark.
    struct LogLine;

    impl Write for LogLine {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut err = std::io::stderr().lock();
            err.write_all(b"               log")?;
            err.write_all(buf)?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            std::io::stderr().flush()
        }
    }

    /// When the script started: the transcript's clock.
    static START: OnceLock<Instant> = OnceLock::new();

    fn stamp() -> String {
        let start = START.get_or_init(Instant::now);
        format!("{:>6.2}s", start.elapsed().as_secs_f64())
    }

    pub(super) async fn run() -> Result<(), BoxError> {
        let endpoint = std::env::var("MOTO_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
            .trim()
            .trim_end_matches('/')
            .to_owned();
        let recovery = match std::env::var("CHAT_DEMO_RECOVERY_SECS") {
            Ok(v) => Duration::try_from_secs_f64(v.trim().parse()?)
                .map_err(|_| "CHAT_DEMO_RECOVERY_SECS must be a positive number of seconds")?,
            Err(_) => Duration::from_secs(3),
        };
        if recovery.is_zero() {
            return Err("CHAT_DEMO_RECOVERY_SECS must be greater than zero".into());
        }
        let moto = moto_addr(&endpoint).await?;

        println!("chat_backend: the seed's WebSocket chat backend against moto at {endpoint}");
        // DynamoDB goes through a proxy that can be switched off: the outage.
        let proxy = OutageProxy::start(moto).await?;
        println!(
            "  DynamoDB is reached through a TCP proxy on {} that the script switches off for the outage",
            proxy.addr
        );
        println!(
            "  demo setting: the DynamoDB circuits wait {:.1} s before probing (seed preset: 20 s; \
             set CHAT_DEMO_RECOVERY_SECS=20 for it), SDK retry backoff 50 ms (default 1 s)",
            recovery.as_secs_f64()
        );

        let registry = CircuitBreakerRegistry::new();
        registry.on_transition(|e| {
            // SDK operation names (`PutItem`) are the per-attempt circuits of `aws_client!`;
            // the seed's keys (`storeUserMessage`) are the `execute` ones.
            let layer = if e.operation.starts_with(|c: char| c.is_ascii_uppercase()) {
                "per SDK attempt"
            } else {
                "seed key"
            };
            println!(
                "{}        ⚡ circuit {}/{} ({layer}): {} → {} ({}; {} calls in window, failure rate {:.2})",
                stamp(),
                e.service,
                e.operation,
                e.from,
                e.to,
                e.reason.as_str(),
                e.stats.window.requests,
                e.stats.failure_rate,
            );
        });
        // The demo's shorter break: a registry override over the presets passed at the
        // call sites, for every DynamoDB circuit (seed keys and per-attempt ones).
        let mut patch = ConfigPatch::default();
        patch.recovery_timeout = Some(recovery);
        let mut overrides = RegistryConfig::default();
        overrides.services.insert(
            "dynamodb".to_owned(),
            ServiceOverrides {
                all: patch,
                operations: Default::default(),
            },
        );
        registry.apply_config(overrides)?;

        // Cognito: a pool, an app client, a user and a real RS256 ID token from moto.
        let cognito = MotoCognito::create(&endpoint).await?;
        let token = cognito.id_token().await?;
        let verifier = CognitoVerifier::builder(REGION, &cognito.pool_id, &cognito.client_id)
            .jwks_url(format!(
                "{endpoint}/{}/.well-known/jwks.json",
                cognito.pool_id
            ))
            .registry(&registry)
            .build()?;

        let sdk_config = sdk_config(&endpoint);
        let backend = Backend::new(
            &sdk_config,
            &registry,
            verifier,
            Settings {
                connections_table: CONNECTIONS_TABLE.to_owned(),
                messages_table: MESSAGES_TABLE.to_owned(),
                // moto serves the Management API without the stage in the path.
                websocket_endpoint: endpoint.clone(),
                dynamodb_endpoint: Some(format!("http://{}", proxy.addr)),
            },
        );
        create_table(&backend, CONNECTIONS_TABLE, "connectionId").await?;
        create_table(&backend, MESSAGES_TABLE, "messageId").await?;
        println!(
            "  setup: tables {CONNECTIONS_TABLE} and {MESSAGES_TABLE}; Cognito pool {} with user {USER}, ID token issued",
            cognito.pool_id
        );
        println!();

        START.set(Instant::now()).ok();
        let chat = Chat {
            backend: &backend,
            connection_id: format!("conn-{:x}", epoch_nanos() & 0xffff_ffff),
        };

        chat.section("alice connects and chats");
        let forged = tamper(&token);
        chat.connect(Some(&forged), "with a tampered token").await;
        chat.connect(Some(&token), "with her ID token").await;
        chat.message("Hello! Is anybody there?").await;
        chat.message("What can you do?").await;

        chat.section("DynamoDB outage: the proxy stops listening (connection refused)");
        proxy.set_up(false);
        let texts = [
            "Did you get that?",
            "Hello?",
            "Still there?",
            "Anyone?",
            "Testing, testing",
            "One more try",
            "Last one",
            "Really the last one",
        ];
        let mut fallback_seen = false;
        for text in texts {
            let reply = chat.message(text).await;
            if reply.status == 503 && reply.detail.starts_with("fallback:") {
                fallback_seen = true;
                break;
            }
        }
        if !fallback_seen {
            return Err("the storeUserMessage circuit did not open during the outage".into());
        }

        chat.section("DynamoDB is back: the proxy listens again");
        proxy.set_up(true);
        chat.message("Are you back?").await;
        let wait = registry
            .stats("dynamodb", "storeUserMessage")
            .and_then(|s| s.next_attempt_time)
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or_default()
            + Duration::from_millis(100);
        chat.note(&format!(
            "waiting {:.1} s for the recovery timeout; the next call is the half-open probe",
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        chat.message("How about now?").await;
        chat.message("Great, thanks!").await;

        chat.section("alice leaves");
        chat.disconnect().await;

        println!();
        println!("circuits at the end:");
        println!(
            "  {:<42} {:<16} {:<9} {:>5} {:>8} {:>8}",
            "circuit", "layer", "state", "calls", "failures", "rejected"
        );
        for keyed in registry.all_stats() {
            let s = &keyed.stats;
            let layer = if keyed
                .operation
                .starts_with(|c: char| c.is_ascii_uppercase())
            {
                "per SDK attempt"
            } else {
                "seed key"
            };
            println!(
                "  {:<42} {layer:<16} {:<9} {:>5} {:>8} {:>8}",
                format!("{}/{}", keyed.service, keyed.operation),
                s.state,
                s.total_requests,
                s.failure_count,
                s.rejected_count,
            );
        }
        println!(
            "  (cognito/verifyJWT counts JWKS fetches: the key is cached, so one fetch served both tokens)"
        );
        let closed = registry
            .all_stats()
            .iter()
            .all(|k| k.stats.state == CircuitState::Closed);
        if !closed {
            return Err("a circuit is still not closed at the end".into());
        }
        Ok(())
    }

    fn epoch_nanos() -> u128 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    }

    /// The scripted client: calls the same route functions the Lambda handler calls and
    /// prints what happens.
    struct Chat<'a> {
        backend: &'a Backend,
        connection_id: String,
    }

    impl Chat<'_> {
        fn section(&self, title: &str) {
            println!("{}  ── {title} ──", stamp());
        }

        fn note(&self, text: &str) {
            println!("{}  … {text}", stamp());
        }

        fn answer(&self, reply: &Reply, took: Duration) {
            let detail = if reply.detail.is_empty() {
                String::new()
            } else {
                format!(" [{}]", reply.detail)
            };
            println!(
                "{}     ← {} {}{detail} in {:.1} ms",
                stamp(),
                reply.status,
                reply.body,
                took.as_secs_f64() * 1000.0
            );
        }

        async fn connect(&self, token: Option<&str>, how: &str) {
            println!("{}  → $connect {} {how}", stamp(), self.connection_id);
            let t = Instant::now();
            let reply = self.backend.on_connect(&self.connection_id, token).await;
            self.answer(&reply, t.elapsed());
        }

        async fn message(&self, text: &str) -> Reply {
            // The scripted client's own words; the backend never logs them.
            println!("{}  → message {text:?}", stamp());
            let body = json!({ "action": "sendMessage", "message": text }).to_string();
            let t = Instant::now();
            let reply = self.backend.on_message(&self.connection_id, &body).await;
            self.answer(&reply, t.elapsed());
            reply
        }

        async fn disconnect(&self) {
            println!("{}  → $disconnect {}", stamp(), self.connection_id);
            let t = Instant::now();
            let reply = self.backend.on_disconnect(&self.connection_id).await;
            self.answer(&reply, t.elapsed());
        }
    }

    /// The token with its signature's first character changed: well formed, signed by a
    /// pool key, and invalid.
    fn tamper(token: &str) -> String {
        let (head, sig) = token.rsplit_once('.').unwrap_or((token, ""));
        let mut sig = sig.to_owned();
        if let Some(first) = sig.chars().next() {
            let other = if first == 'A' { "B" } else { "A" };
            sig.replace_range(..first.len_utf8(), other);
        }
        format!("{head}.{sig}")
    }

    /// moto's address, or advice on starting it.
    async fn moto_addr(endpoint: &str) -> Result<SocketAddr, BoxError> {
        let uri: http::Uri = endpoint.parse()?;
        let host = uri.host().ok_or("MOTO_ENDPOINT has no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or("MOTO_ENDPOINT does not resolve")?;
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(addr),
            _ => Err(format!(
                "moto is not reachable at {endpoint}. Start it with `scripts/moto-server &` \
                 (or set MOTO_ENDPOINT), then run this example again."
            )
            .into()),
        }
    }

    /// Test credentials, the moto endpoint, quick retries, no environment or `~/.aws`.
    fn sdk_config(endpoint: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "chat_backend example",
            )))
            .endpoint_url(endpoint)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_millis(200)),
            )
            .build()
    }

    async fn create_table(backend: &Backend, name: &str, key: &str) -> Result<(), BoxError> {
        let created = backend
            .dynamodb
            .create_table()
            .table_name(name)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key)
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Left from an earlier run against the same moto.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(CreateTableError::ResourceInUseException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    // ----- Cognito in moto, through its JSON API -----

    struct MotoCognito {
        endpoint: String,
        pool_id: String,
        client_id: String,
    }

    impl MotoCognito {
        async fn create(endpoint: &str) -> Result<Self, BoxError> {
            let name = format!("chat-backend-{:x}", epoch_nanos());
            let pool = cognito(endpoint, "CreateUserPool", json!({ "PoolName": name })).await?;
            let pool_id = string(&pool["UserPool"]["Id"])?;
            let client = cognito(
                endpoint,
                "CreateUserPoolClient",
                json!({
                    "UserPoolId": pool_id,
                    "ClientName": "chat-web",
                    "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                }),
            )
            .await?;
            let client_id = string(&client["UserPoolClient"]["ClientId"])?;
            cognito(
                endpoint,
                "AdminCreateUser",
                json!({
                    "UserPoolId": pool_id,
                    "Username": USER,
                    "TemporaryPassword": "Temp-Passw0rd!",
                    "MessageAction": "SUPPRESS",
                    "UserAttributes": [{ "Name": "email", "Value": "alice@example.com" }],
                }),
            )
            .await?;
            cognito(
                endpoint,
                "AdminSetUserPassword",
                json!({
                    "UserPoolId": pool_id,
                    "Username": USER,
                    "Password": PASSWORD,
                    "Permanent": true,
                }),
            )
            .await?;
            Ok(MotoCognito {
                endpoint: endpoint.to_owned(),
                pool_id,
                client_id,
            })
        }

        /// The user's ID token (RS256, signed by the pool's key).
        async fn id_token(&self) -> Result<String, BoxError> {
            let auth = cognito(
                &self.endpoint,
                "AdminInitiateAuth",
                json!({
                    "UserPoolId": self.pool_id,
                    "ClientId": self.client_id,
                    "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                    "AuthParameters": { "USERNAME": USER, "PASSWORD": PASSWORD },
                }),
            )
            .await?;
            string(&auth["AuthenticationResult"]["IdToken"])
        }
    }

    fn string(v: &Value) -> Result<String, BoxError> {
        v.as_str()
            .map(String::from)
            .ok_or_else(|| "unexpected answer from moto's Cognito API".into())
    }

    /// One Cognito Identity Provider API call: JSON 1.1 with a fake SigV4 `Authorization`
    /// whose credential scope names `cognito-idp` (moto routes by it).
    async fn cognito(endpoint: &str, action: &str, body: Value) -> Result<Value, BoxError> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let request = http::Request::post(format!("{endpoint}/"))
            .header(
                "x-amz-target",
                format!("AWSCognitoIdentityProviderService.{action}"),
            )
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/cognito-idp/aws4_request, \
                     SignedHeaders=host, Signature=0000"
                ),
            )
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = client.request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(format!("moto Cognito {action}: HTTP {status}").into());
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    // ----- the outage: a TCP proxy that stops listening -----

    /// A TCP proxy on `127.0.0.1` in front of moto. Switched off, it closes its listening
    /// socket (new connections are refused) and cuts the open ones; switched on, it
    /// listens on the same address again.
    struct OutageProxy {
        addr: SocketAddr,
        up: watch::Sender<bool>,
    }

    impl OutageProxy {
        async fn start(upstream: SocketAddr) -> Result<Self, BoxError> {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let (up, rx) = watch::channel(true);
            tokio::spawn(serve(Some(listener), addr, upstream, rx));
            Ok(OutageProxy { addr, up })
        }

        fn set_up(&self, up: bool) {
            self.up.send_replace(up);
        }
    }

    async fn serve(
        mut listener: Option<TcpListener>,
        addr: SocketAddr,
        upstream: SocketAddr,
        mut up: watch::Receiver<bool>,
    ) {
        loop {
            match &listener {
                Some(l) => tokio::select! {
                    accepted = l.accept() => {
                        if let Ok((client, _)) = accepted {
                            tokio::spawn(pipe(client, upstream, up.clone()));
                        }
                    }
                    changed = up.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !*up.borrow_and_update() {
                            listener = None; // closed: connection refused
                        }
                    }
                },
                None => {
                    if up.changed().await.is_err() {
                        return;
                    }
                    if *up.borrow_and_update() {
                        match TcpListener::bind(addr).await {
                            Ok(l) => listener = Some(l),
                            Err(e) => {
                                eprintln!("outage proxy: cannot listen on {addr} again: {e}");
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return;
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            // The outage cuts open (pooled keep-alive) connections too.
            _ = up.wait_for(|up| !*up) => {}
        }
    }
}
