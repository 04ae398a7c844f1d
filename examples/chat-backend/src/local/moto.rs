//! moto for the local run: its address, an SDK configuration for it, the chat tables, and a
//! Cognito user pool through moto's JSON API.

use super::{PASSWORD, REGION, USER, epoch_nanos};
use crate::backend::Backend;
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
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tower_circuit_breaker::BoxError;

/// moto's address, or advice on starting it.
pub(super) async fn moto_addr(endpoint: &str) -> Result<SocketAddr, BoxError> {
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
pub(super) fn sdk_config(endpoint: &str) -> SdkConfig {
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

pub(super) async fn create_table(backend: &Backend, name: &str, key: &str) -> Result<(), BoxError> {
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

pub(super) struct MotoCognito {
    endpoint: String,
    pub(super) pool_id: String,
    pub(super) client_id: String,
}

impl MotoCognito {
    pub(super) async fn create(endpoint: &str) -> Result<Self, BoxError> {
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
    pub(super) async fn id_token(&self) -> Result<String, BoxError> {
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
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
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
