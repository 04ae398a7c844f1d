//! The local entry point: the backend against moto, a scripted conversation with a
//! DynamoDB outage in the middle, and a transcript on stdout.

use crate::backend::{Backend, Reply, Settings};
use serde_json::json;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};
use tower_circuit_breaker::aws::cognito::CognitoVerifier;
use tower_circuit_breaker::config::ConfigPatch;
use tower_circuit_breaker::registry::{RegistryConfig, ServiceOverrides};
use tower_circuit_breaker::{BoxError, CircuitBreakerRegistry, CircuitState};

mod fleet;
mod moto;
mod outage_proxy;

use moto::{MotoCognito, create_table, moto_addr, sdk_config};
use outage_proxy::OutageProxy;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:5055";
const REGION: &str = "us-east-1";
const CONNECTIONS_TABLE: &str = "chat-connections";
const MESSAGES_TABLE: &str = "chat-messages";
const USER: &str = "alice";
const PASSWORD: &str = "Correct-Horse-9!";

/// The backend's logs on stderr, each line marked `log`, under the transcript's lines
/// on stdout (`2>/dev/null` leaves the transcript alone). The crate's own transition
/// events are left out: the transcript prints every transition.
pub(crate) fn init_tracing() {
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

pub(crate) async fn run() -> Result<(), BoxError> {
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
    let fleet = fleet::share(&registry, &endpoint).await?;
    match &fleet {
        Some((_, store)) => println!(
            "  fleet sharing on (CHAT_FLEET): every circuit shares its state through {store}, one round a second"
        ),
        None => {
            println!("  fleet sharing off (CHAT_FLEET=dynamodb or CHAT_FLEET=redis switches it on)")
        }
    }

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
    if let Some((fleet, store)) = &fleet {
        let status = fleet.sync_now().await;
        println!(
            "fleet through {store}: {} circuits shared, {} rounds (one batched read each), mode {:?}",
            status.circuits, status.rounds, status.mode
        );
        if status.mode != tower_circuit_breaker::fleet::FleetMode::Shared {
            return Err("the fleet store did not answer".into());
        }
    }
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
