//! `tcb-advisor advise`: read the trace twice (its span, then the replay), rank, print,
//! write.

use crate::args::AdviseArgs;
use crate::document;
use crate::error::AdvisorError;
pub use crate::present::{html, key_table, printed, rows};
use crate::rank::{self, Costs, Score};
use crate::replay::{self, KeyResult};
use crate::search::{self, Candidate, Origin};
use crate::traffic::Traffic;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use tower_circuit_breaker::trace::{TraceReader, TraceRecord};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry, RegistryConfig};

/// Keys (`service`/`operation`) an advice replays at most: each costs a circuit per
/// candidate (about 500) and a row of the report's buckets. A trace with more is refused;
/// split it by key.
pub const MAX_KEYS: usize = 50;

/// Buckets of the report's time axis.
const REPORT_BUCKETS: u64 = 150;

/// One key's outcome.
#[derive(Clone, Debug)]
pub struct KeyAdvice {
    /// `(service, operation)`.
    pub key: (String, String),
    /// The candidates that ran on this key (the grid, the presets, its `current`).
    pub candidates: Vec<Candidate>,
    /// Their scores, by candidate.
    pub scores: Vec<Score>,
    /// Candidate indices, best first.
    pub order: Vec<usize>,
    /// The Pareto front, in rank order.
    pub front: Vec<usize>,
    /// The replay's per-candidate timelines, for the report.
    pub(crate) results: Vec<KeyResult>,
}

impl KeyAdvice {
    /// The winning candidate.
    pub fn winner(&self) -> &Candidate {
        &self.candidates[self.order[0]]
    }

    /// The score of the candidate named `name`.
    pub fn score_of(&self, name: &str) -> Option<&Score> {
        let i = self.candidates.iter().position(|c| c.name == name)?;
        Some(&self.scores[i])
    }

    /// The name of the seed preset for this key, when the service has one.
    pub fn seed_name(&self) -> Option<&'static str> {
        seed_name(&self.key.0)
    }
}

/// Everything an advice found.
#[derive(Clone, Debug)]
pub struct Advice {
    /// Per key, in key order.
    pub keys: Vec<KeyAdvice>,
    /// The trace's traffic.
    pub traffic: Traffic,
    /// The weights used.
    pub costs: Costs,
    /// The winners as a config document.
    pub document: RegistryConfig,
    /// Records the replay left out: they started more than its reorder window (60 s)
    /// before a record already replayed.
    pub late_records: u64,
}

/// The name of the seed preset the chat backend uses for `service`, if any.
fn seed_name(service: &str) -> Option<&'static str> {
    match service {
        "cognito" => Some("preset:cognito"),
        "dynamodb" => Some("preset:dynamodb"),
        "apigateway-management" => Some("preset:api_gateway"),
        _ => None,
    }
}

fn open(path: &Path) -> Result<TraceReader<BufReader<File>>, AdvisorError> {
    let file = File::open(path).map_err(AdvisorError::io(path))?;
    Ok(TraceReader::new(BufReader::new(file)))
}

/// Calls starting after this (ms since the epoch, 2286-11-20) are refused: a replay keeps
/// time in nanoseconds, and no trace of a real service starts later.
pub const MAX_START_MS: u64 = 10_000_000_000_000;

/// Calls longer than this (24 h, in µs) are refused: no client waits that long, and the
/// replay would hold them in flight for the whole trace.
pub const MAX_DURATION_US: u64 = 86_400_000_000;

/// Every record of the trace at `path`, streamed; a malformed line, a time or duration
/// past the limits above, or an error from `f`, stops it.
fn for_each_record(
    path: &Path,
    mut f: impl FnMut(&TraceRecord) -> Result<(), AdvisorError>,
) -> Result<(), AdvisorError> {
    let mut reader = open(path)?;
    while let Some(record) = reader.next() {
        let record = record.map_err(|e| AdvisorError::Trace(path.to_owned(), e.to_string()))?;
        if record.start_ms > MAX_START_MS || record.duration_us > MAX_DURATION_US {
            return Err(AdvisorError::Trace(
                path.to_owned(),
                format!(
                    "line {}: `t` must be at most {MAX_START_MS} and `d` at most {MAX_DURATION_US}",
                    reader.line_number()
                ),
            ));
        }
        f(&record)?;
    }
    Ok(())
}

/// The config `key` runs with under `current` (the document in force), given that its
/// call site passes the seed preset of its service (the chat backend does), or the
/// document's default for other services.
fn current_for(
    current: &RegistryConfig,
    key: &(String, String),
) -> Result<CircuitBreakerConfig, String> {
    let base = search::preset_for(&key.0).unwrap_or_else(|| current.default.clone());
    current
        .resolve(&key.0, &key.1, &base)
        .map_err(|e| e.to_string())
}

/// One streamed replay of `candidates` over the trace; with `count`, the traffic too.
fn replay_pass(
    path: &Path,
    candidates: &[Candidate],
    traffic: &mut Traffic,
    count: bool,
) -> Result<(replay::Results, u64), AdvisorError> {
    let mut run = replay::Run::new(candidates);
    for_each_record(path, |r| {
        if count {
            traffic.add(r);
        }
        run.feed(r);
        Ok(())
    })?;
    Ok(run.finish(traffic))
}

/// The candidates that ran on `key` (every one but other keys' `current`), scored and
/// ranked.
fn key_advice(
    key: &(String, String),
    candidates: &[Candidate],
    results: &replay::Results,
    costs: Costs,
) -> KeyAdvice {
    let all = results.get(key).map(Vec::as_slice).unwrap_or_default();
    let mine: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].key.as_ref().is_none_or(|k| k == key))
        .collect();
    let cands: Vec<Candidate> = mine.iter().map(|&i| candidates[i].clone()).collect();
    let key_results: Vec<KeyResult> = mine
        .iter()
        .map(|&i| all.get(i).cloned().unwrap_or_default())
        .collect();
    let scores: Vec<Score> = key_results.iter().map(|r| r.score.clone()).collect();
    let seed = seed_name(&key.0);
    let priority: Vec<u8> = cands
        .iter()
        .map(|c| match c.origin {
            Origin::Current => 0,
            Origin::Preset if Some(c.name.as_str()) == seed => 1,
            _ => 2,
        })
        .collect();
    let order = rank::rank(&scores, &priority, costs);
    let front = rank::pareto_front(&scores, &order);
    KeyAdvice {
        key: key.clone(),
        candidates: cands,
        scores,
        order,
        front,
        results: key_results,
    }
}

/// The best `n` candidates of a key that behaved differently from each other (many
/// configs tie: a field that never mattered on the trace), best first.
pub fn distinct_best(k: &KeyAdvice, n: usize) -> Vec<usize> {
    let behaviour = |i: usize| {
        let s = &k.scores[i];
        (
            s.failed_let_through,
            s.failed_outside,
            s.false_rejections,
            s.opens,
        )
    };
    let mut picks: Vec<usize> = Vec::new();
    for &i in &k.order {
        if picks.len() == n {
            break;
        }
        if !picks.iter().any(|&j| behaviour(j) == behaviour(i)) {
            picks.push(i);
        }
    }
    picks
}

/// Replays the trace at `path` and ranks the candidates per key.
///
/// # Errors
///
/// An unreadable or malformed trace, an empty one, a refused `--current` document.
pub fn advise(
    path: &Path,
    current: Option<&RegistryConfig>,
    costs: Costs,
) -> Result<Advice, AdvisorError> {
    // Pass 1: the span and the keys.
    let mut span: Option<(u64, u64)> = None;
    let mut services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut key_count = 0;
    for_each_record(path, |r| {
        let end = r.start_ms.saturating_add(r.duration_us.div_ceil(1_000));
        span = Some(match span {
            None => (r.start_ms, end),
            Some((a, b)) => (a.min(r.start_ms), b.max(end)),
        });
        // Look up by borrowed names: no allocation per record for a key already seen.
        match services.get_mut(&r.service) {
            Some(ops) if ops.contains(&r.operation) => return Ok(()),
            Some(ops) => {
                ops.insert(r.operation.clone());
            }
            None => {
                services.insert(r.service.clone(), BTreeSet::from([r.operation.clone()]));
            }
        }
        key_count += 1;
        if key_count > MAX_KEYS {
            return Err(AdvisorError::TooManyKeys(path.to_owned()));
        }
        Ok(())
    })?;
    let keys: Vec<(String, String)> = services
        .into_iter()
        .flat_map(|(s, ops)| ops.into_iter().map(move |o| (s.clone(), o)))
        .collect();
    let (start_ms, end_ms) = span.ok_or_else(|| AdvisorError::EmptyTrace(path.to_owned()))?;

    // The candidates: presets, then each key's current config, then the grid.
    let mut candidates = search::presets();
    if let Some(doc) = current {
        for key in &keys {
            let config =
                current_for(doc, key).map_err(|e| AdvisorError::Config("--current".into(), e))?;
            candidates.push(Candidate {
                name: "current".to_owned(),
                origin: Origin::Current,
                key: Some(key.clone()),
                config,
            });
        }
    }
    candidates.extend(search::grid());

    // Pass 2: the replay of the grid, and the traffic.
    let mut traffic = Traffic::new(start_ms, end_ms, REPORT_BUCKETS, replay::REPLAY_BUCKET_MS);
    let (mut results, late_records) = replay_pass(path, &candidates, &mut traffic, true)?;

    // Pass 3: around each key's best three (of distinct behaviour).
    let first: Vec<KeyAdvice> = keys
        .iter()
        .map(|key| key_advice(key, &candidates, &results, costs))
        .collect();
    let best: Vec<&CircuitBreakerConfig> = first
        .iter()
        .flat_map(|k| {
            distinct_best(k, 3)
                .into_iter()
                .map(|i| &k.candidates[i].config)
        })
        .collect();
    let refined = search::refine(&best, &candidates);
    drop(first);
    if !refined.is_empty() {
        let (more, _) = replay_pass(path, &refined, &mut traffic, false)?;
        for (key, extra) in more {
            results.entry(key).or_default().extend(extra);
        }
        candidates.extend(refined);
    }
    let out: Vec<KeyAdvice> = keys
        .iter()
        .map(|key| key_advice(key, &candidates, &results, costs))
        .collect();
    let document =
        document::with_winners(current, out.iter().map(|k| (&k.key, &k.winner().config)));
    Ok(Advice {
        keys: out,
        traffic,
        costs,
        document,
        late_records,
    })
}

/// Checks that `text` loads into a registry and gives each key its winner.
///
/// # Errors
///
/// The registry's error, or the first key whose resolved config differs.
pub fn check_document(text: &str, json: bool, advice: &Advice) -> Result<(), String> {
    let doc = if json {
        RegistryConfig::from_json(text)
    } else {
        RegistryConfig::from_toml(text)
    }
    .map_err(|e| e.to_string())?;
    let registry = CircuitBreakerRegistry::new();
    registry
        .apply_config(doc.clone())
        .map_err(|e| e.to_string())?;
    for k in &advice.keys {
        let got = current_for(&doc, &k.key)?;
        if got != k.winner().config {
            return Err(format!(
                "{}/{} resolves to {} instead of the winner {}",
                k.key.0,
                k.key.1,
                search::describe(&got),
                k.winner().name
            ));
        }
    }
    Ok(())
}

/// `tcb-advisor advise`.
///
/// # Errors
///
/// See [`advise`]; writing `--out` or `--report`; a written document that does not load.
pub fn run(args: &AdviseArgs) -> Result<(), AdvisorError> {
    let current = match &args.current {
        Some(p) => Some(
            RegistryConfig::from_file(p)
                .map_err(|e| AdvisorError::Config(p.clone(), e.to_string()))?,
        ),
        None => None,
    };
    let costs = Costs {
        failed: args.cost_failed,
        rejected: args.cost_rejected,
    };
    let advice = advise(&args.trace, current.as_ref(), costs)?;
    print!("{}", printed(&advice, args.top));
    if advice.late_records > 0 {
        println!(
            "\nnote: {} records started more than 60 s before one already replayed and were left out (sort the trace by `t`)",
            advice.late_records
        );
    }
    if let Some(out) = &args.out {
        let json = out.extension().is_some_and(|e| e == "json");
        let text = if json {
            advice.document.to_json()
        } else {
            advice.document.to_toml()
        }
        .map_err(|e| AdvisorError::Config(out.clone(), e.to_string()))?;
        check_document(&text, json, &advice).map_err(|e| AdvisorError::Config(out.clone(), e))?;
        std::fs::write(out, text).map_err(AdvisorError::io(out))?;
        println!(
            "\nwrote {} (loads with CircuitBreakerRegistry::apply_config)",
            out.display()
        );
    }
    if let Some(path) = &args.report {
        let name = args
            .trace
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        std::fs::write(path, html(&advice, &name, args.top)).map_err(AdvisorError::io(path))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
