//! The chat backend: the routes (`$connect`, `$default`, `$disconnect`), each AWS call under
//! its circuit with the seed's fallback. Used by both entry points.

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

pub(crate) const DB_UNAVAILABLE: &str = "Database temporarily unavailable";
pub(crate) const WS_UNAVAILABLE: &str = "WebSocket service temporarily unavailable";
pub(crate) const AUTH_UNAVAILABLE: &str = "Authentication service temporarily unavailable";

/// Messages longer than this are refused (API Gateway's WebSocket frame limit is 32 KiB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Stored items expire after a day, as in the seed.
pub(crate) const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a route failed.
#[derive(Debug)]
pub(crate) enum ChatError {
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
    pub(crate) fn failed<E: std::error::Error + Send + Sync + 'static>(
        message: &'static str,
        e: E,
    ) -> Self {
        ChatError::Failed {
            message,
            source: Box::new(e),
        }
    }

    pub(crate) fn status(&self) -> u16 {
        match self {
            ChatError::Unauthorized(_) => 401,
            ChatError::Unavailable { .. } => 503,
            ChatError::Failed { source, .. } if rejection_in(source.as_ref()).is_some() => 503,
            ChatError::Failed { .. } => 500,
            ChatError::BadRequest(_) => 400,
        }
    }

    /// Whether posting to the WebSocket is what failed.
    pub(crate) fn is_websocket(&self) -> bool {
        match self {
            ChatError::Unavailable { message, .. } | ChatError::Failed { message, .. } => {
                *message == WS_UNAVAILABLE
            }
            _ => false,
        }
    }

    /// What the client is told.
    pub(crate) fn user_message(&self) -> &'static str {
        match self {
            ChatError::Unauthorized(_) => "Unauthorized",
            ChatError::Unavailable { message, .. } | ChatError::Failed { message, .. } => message,
            ChatError::BadRequest(why) => why,
        }
    }

    /// What went wrong, for logs: error texts of the SDK, the verifier and the breaker,
    /// which carry no token and no message body.
    pub(crate) fn detail(&self) -> String {
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
pub(crate) fn describe_open(open: &CircuitOpen) -> String {
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
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A route's answer: the status and body API Gateway gets back, and a line for the logs.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) detail: String,
}

impl Reply {
    pub(crate) fn ok(body: impl Into<String>) -> Self {
        Reply {
            status: 200,
            body: body.into(),
            detail: String::new(),
        }
    }

    pub(crate) fn error(e: &ChatError) -> Self {
        Reply {
            status: e.status(),
            body: e.user_message().to_owned(),
            detail: e.detail(),
        }
    }
}

/// What became of a post to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Sent,
    /// `GoneException`: the client has disconnected; its row was removed.
    Gone,
}

// ===== the backend =====

/// The clients, the registry and the verifier: built once per process (per Lambda
/// sandbox), shared by every invocation. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    registry: CircuitBreakerRegistry,
    verifier: CognitoVerifier,
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    apigw: aws_sdk_apigatewaymanagement::Client,
    connections_table: String,
    messages_table: String,
}

/// Where the backend's resources are.
pub(crate) struct Settings {
    pub(crate) connections_table: String,
    pub(crate) messages_table: String,
    /// The API Gateway Management API endpoint: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`
    /// (moto wants it without the stage).
    pub(crate) websocket_endpoint: String,
    /// DynamoDB's endpoint when not the `SdkConfig`'s (locally: the outage proxy).
    pub(crate) dynamodb_endpoint: Option<String>,
}

/// The SDK's timeouts. None is set by default (only a 3.1 s connect timeout), so a
/// black-holed endpoint would hang each attempt until the Lambda times out, and the
/// breaker would never hear of it. An attempt that times out is dropped by the SDK, which
/// the per-attempt circuit counts as a failure.
pub(crate) fn sdk_timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(attempt)
        .operation_timeout(Duration::from_secs(3))
        .build()
}

impl Backend {
    pub(crate) fn new(
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
    pub(crate) async fn on_connect(&self, connection_id: &str, token: Option<&str>) -> Reply {
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
    pub(crate) async fn on_message(&self, connection_id: &str, body: &str) -> Reply {
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
    pub(crate) async fn on_disconnect(&self, connection_id: &str) -> Reply {
        let reply = match self.remove_connection(connection_id).await {
            Ok(()) => Reply::ok("disconnected"),
            Err(e) => self.refuse("$disconnect", connection_id, &e),
        };
        self.log_stats(&[("dynamodb", "removeConnection")]);
        reply
    }

    pub(crate) fn refuse(&self, route: &str, connection_id: &str, e: &ChatError) -> Reply {
        let reply = Reply::error(e);
        tracing::warn!(route, connection_id, status = reply.status, error = %reply.detail, "request refused");
        reply
    }

    /// The stats of the circuits a route used, one line each, as the seed logs them.
    pub(crate) fn log_stats(&self, keys: &[(&str, &str)]) {
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

    pub(crate) async fn connect(
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
    pub(crate) async fn authenticate(&self, token: &str) -> Result<CognitoClaims, ChatError> {
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
    pub(crate) async fn store_connection(
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
    pub(crate) async fn remove_connection(&self, connection_id: &str) -> Result<(), ChatError> {
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

    pub(crate) async fn converse(
        &self,
        connection_id: &str,
        body: &str,
    ) -> Result<Delivery, ChatError> {
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
    pub(crate) async fn store_message(
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
    pub(crate) async fn post(
        &self,
        connection_id: &str,
        payload: String,
    ) -> Result<Delivery, ChatError> {
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
pub(crate) async fn db_fallback<T>(cause: FallbackCause<ChatError>) -> Result<T, ChatError> {
    Err(ChatError::Unavailable {
        message: DB_UNAVAILABLE,
        cause: rejection_text(cause, "DynamoDB"),
    })
}

/// Why a fallback ran, for the logs.
pub(crate) fn rejection_text(cause: FallbackCause<ChatError>, dependency: &str) -> String {
    match cause {
        FallbackCause::Rejected(open) => {
            format!("{}, {dependency} not called", describe_open(&open))
        }
        FallbackCause::Failed(e) => e.detail(),
    }
}

/// The demo bot. It does not repeat the message: message bodies stay out of replies and logs.
pub(crate) fn bot_reply(text: &str) -> String {
    let words = text.split_whitespace().count();
    format!("Thanks! I got your message ({words} words). I'm a demo bot, so that's all I can say.")
}

pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A unique message id: time, process-wide sequence number, kind.
pub(crate) fn message_id(kind: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{seq}-{kind}")
}
