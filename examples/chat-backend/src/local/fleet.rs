//! Fleet sharing for the local run, switched on by `CHAT_FLEET`: every circuit of the
//! registry shares its state through DynamoDB (a table in moto) or Redis (`REDIS_URL`),
//! as the sandboxes of a Lambda fleet would.

use super::moto::sdk_config;
use std::sync::Arc;
use std::time::Duration;
use tower_circuit_breaker::fleet::{
    DynamoDbStore, FleetConfig, RedisStore, RegistryFleet, SharedState,
};
use tower_circuit_breaker::{BoxError, CircuitBreakerRegistry};

const FLEET_TABLE: &str = "chat-fleet";

/// `CHAT_FLEET`: unset, empty or `off` (no sharing), `dynamodb` (a table in moto at
/// `endpoint`, reached directly: the outage proxy is for the backend's own DynamoDB
/// calls) or `redis` (`REDIS_URL`, default `redis://127.0.0.1:6379`).
pub(super) async fn share(
    registry: &CircuitBreakerRegistry,
    endpoint: &str,
) -> Result<Option<(RegistryFleet, String)>, BoxError> {
    let choice = std::env::var("CHAT_FLEET").unwrap_or_default();
    let (store, label): (Arc<dyn SharedState>, String) = match choice.trim() {
        "" | "off" => return Ok(None),
        "dynamodb" => {
            let client = aws_sdk_dynamodb::Client::new(&sdk_config(endpoint));
            DynamoDbStore::create_table(&client, FLEET_TABLE).await?;
            (
                Arc::new(DynamoDbStore::new(client, FLEET_TABLE)),
                format!("DynamoDB table {FLEET_TABLE} in moto"),
            )
        }
        "redis" => {
            let url = std::env::var("REDIS_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
            // The URL may carry a password: it is not printed.
            (
                Arc::new(RedisStore::connect(url.trim()).await?),
                "Redis".to_owned(),
            )
        }
        _ => return Err("CHAT_FLEET must be off, dynamodb or redis".into()),
    };
    let template = FleetConfig::builder("chat/local")
        .cache_period(Duration::from_secs(1))
        .build()?;
    // The one registry setting: every circuit, present and future, shares its state.
    let fleet = registry.share_with_fleet(store, template)?;
    Ok(Some((fleet, label)))
}
