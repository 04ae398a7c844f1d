//! Command-line arguments of `tcb-advisor`, parsed by hand (a few flags do not need a
//! parser crate), and the `--help` text.

use crate::generate::SCENARIOS;
use std::fmt;
use std::path::PathBuf;

/// The `--help` text, also shown in docs/advisor.md.
pub const HELP: &str = "\
tcb-advisor: replay a call trace against circuit breaker configs and recommend one

Usage:
  tcb-advisor generate --scenario NAME [--seed N] [--rate-scale X] [--out FILE]
  tcb-advisor generate --all --dir DIR [--seed N]
  tcb-advisor advise TRACE [--current DOC] [--cost-failed N] [--cost-rejected M]
                           [--top K] [--out BEST.toml] [--report REPORT.html]
  tcb-advisor --help

generate   Writes a synthetic trace of the seed's dependencies (Cognito verifyJWT,
           DynamoDB storeUserMessage, API Gateway postToConnection) as JSON lines.
  --scenario NAME   outage | brownout | throttling | flapping | healthy | mixed
  --all --dir DIR   every scenario, as DIR/NAME.jsonl
  --seed N          seed of every random draw (default 42): same seed, same bytes
  --rate-scale X    multiply every call rate by X (default 1)
  --out FILE        write there instead of standard output

advise     Replays TRACE (JSON lines: t, d, o, svc, op, optional inc) against the
           seed presets, the current config document and a grid of 480 configs in
           one pass, then against the neighbours of each key's best in a second;
           prints per key the Pareto front of failed calls let through vs false
           rejections, and the winner by cost.
  --current DOC       the registry config document in force (TOML or JSON); its
                      config for each key is replayed as `current`, and the written
                      document keeps its other settings
  --cost-failed N     cost of a failing call let through (default 1)
  --cost-rejected M   cost of a rejected call that would have succeeded (default 1)
  --top K             rows of the Pareto front to print per key (default 8)
  --out BEST.toml     write the winners as a config document for
                      CircuitBreakerRegistry::apply_config (.json for JSON)
  --report FILE.html  write a self-contained HTML report (inline SVG, no scripts)
";

/// A parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `--help`, `-h`, `help`, or nothing at all.
    Help,
    /// `generate`.
    Generate(GenerateArgs),
    /// `advise`.
    Advise(AdviseArgs),
}

/// Arguments of `generate`.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateArgs {
    /// One scenario, or `None` with `all`.
    pub scenario: Option<String>,
    /// Every scenario into `dir`.
    pub all: Option<PathBuf>,
    /// Seed of every draw.
    pub seed: u64,
    /// Multiplies the call rates.
    pub rate_scale: f64,
    /// Output file; standard output when `None`.
    pub out: Option<PathBuf>,
}

/// Arguments of `advise`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdviseArgs {
    /// The trace.
    pub trace: PathBuf,
    /// The config document in force.
    pub current: Option<PathBuf>,
    /// Cost of a failing call let through.
    pub cost_failed: f64,
    /// Cost of a false rejection.
    pub cost_rejected: f64,
    /// Rows of the front to print per key.
    pub top: usize,
    /// Where to write the winning document.
    pub out: Option<PathBuf>,
    /// Where to write the HTML report.
    pub report: Option<PathBuf>,
}

/// A command line that does not parse. Its text says what is wrong; `--help` says the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see tcb-advisor --help)", self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program name.
///
/// # Errors
///
/// An unknown command or flag, a missing or malformed value, a missing trace.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    match command.as_str() {
        "--help" | "-h" | "help" => Ok(Command::Help),
        "generate" => parse_generate(rest).map(Command::Generate),
        "advise" => parse_advise(rest).map(Command::Advise),
        other => Err(usage(format!("unknown command `{other}`"))),
    }
}

/// Walks `--flag value` pairs, handing each to `on_flag`; bare words go to `on_word`.
fn walk(
    args: &[String],
    switches: &[&str],
    mut on_flag: impl FnMut(&str, Option<&str>) -> Result<(), UsageError>,
    mut on_word: impl FnMut(&str) -> Result<(), UsageError>,
) -> Result<(), UsageError> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            on_word(arg)?;
        } else if switches.contains(&arg.as_str()) {
            on_flag(arg, None)?;
        } else {
            let value = it
                .next()
                .ok_or_else(|| usage(format!("`{arg}` needs a value")))?;
            on_flag(arg, Some(value))?;
        }
    }
    Ok(())
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<&str>) -> Result<T, UsageError> {
    value
        .unwrap_or_default()
        .parse()
        .map_err(|_| usage(format!("`{flag}` needs a number")))
}

fn cost(flag: &str, value: Option<&str>) -> Result<f64, UsageError> {
    let v: f64 = number(flag, value)?;
    if v.is_finite() && (0.0..=1e6).contains(&v) {
        Ok(v)
    } else {
        Err(usage(format!("`{flag}` must be between 0 and 1000000")))
    }
}

fn parse_generate(args: &[String]) -> Result<GenerateArgs, UsageError> {
    let mut g = GenerateArgs {
        scenario: None,
        all: None,
        seed: 42,
        rate_scale: 1.0,
        out: None,
    };
    let mut all = false;
    let mut dir = None;
    walk(
        args,
        &["--all"],
        |flag, value| {
            let path = || PathBuf::from(value.unwrap_or_default());
            match flag {
                "--all" => all = true,
                "--dir" => dir = Some(path()),
                "--scenario" => g.scenario = value.map(str::to_owned),
                "--seed" => g.seed = number(flag, value)?,
                "--rate-scale" => {
                    g.rate_scale = number(flag, value)?;
                    if !(g.rate_scale > 0.0 && g.rate_scale <= 1_000.0) {
                        return Err(usage("`--rate-scale` must be in (0, 1000]"));
                    }
                }
                "--out" => g.out = Some(path()),
                _ => return Err(usage(format!("unknown flag `{flag}` for generate"))),
            }
            Ok(())
        },
        |word| Err(usage(format!("unexpected `{word}`"))),
    )?;
    match (all, dir, &g.scenario) {
        (true, Some(dir), None) => g.all = Some(dir),
        (true, None, _) => return Err(usage("`--all` needs `--dir DIR`")),
        (false, None, Some(name)) if !SCENARIOS.contains(&name.as_str()) => {
            return Err(usage(format!(
                "unknown scenario `{name}` (one of {})",
                SCENARIOS.join(", ")
            )));
        }
        (false, None, Some(_)) => {}
        _ => return Err(usage("give `--scenario NAME` or `--all --dir DIR`")),
    }
    Ok(g)
}

fn parse_advise(args: &[String]) -> Result<AdviseArgs, UsageError> {
    let mut trace = None;
    let mut a = AdviseArgs {
        trace: PathBuf::new(),
        current: None,
        cost_failed: 1.0,
        cost_rejected: 1.0,
        top: 8,
        out: None,
        report: None,
    };
    walk(
        args,
        &[],
        |flag, value| {
            let path = || PathBuf::from(value.unwrap_or_default());
            match flag {
                "--current" => a.current = Some(path()),
                "--cost-failed" => a.cost_failed = cost(flag, value)?,
                "--cost-rejected" => a.cost_rejected = cost(flag, value)?,
                "--top" => a.top = number(flag, value)?,
                "--out" => a.out = Some(path()),
                "--report" => a.report = Some(path()),
                _ => return Err(usage(format!("unknown flag `{flag}` for advise"))),
            }
            Ok(())
        },
        |word| match trace.replace(PathBuf::from(word)) {
            None => Ok(()),
            Some(_) => Err(usage("advise takes one TRACE")),
        },
    )?;
    a.trace = trace.ok_or_else(|| usage("advise needs a TRACE file"))?;
    if a.cost_failed == 0.0 && a.cost_rejected == 0.0 {
        return Err(usage("the two costs cannot both be 0"));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_advise() {
        let Command::Advise(a) =
            parse(&args("advise t.jsonl --cost-failed 2 --out b.toml")).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.trace, PathBuf::from("t.jsonl"));
        assert_eq!((a.cost_failed, a.cost_rejected), (2.0, 1.0));
        assert_eq!(a.out, Some(PathBuf::from("b.toml")));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "advise",
            "advise a b",
            "advise a --cost-failed -1",
            "advise a --cost-failed NaN",
            "advise a --cost-failed 0 --cost-rejected 0",
            "advise a --top",
            "advise a --nope 1",
            "generate",
            "generate --scenario nope",
            "generate --all",
            "generate --scenario outage --rate-scale 0",
            "frobnicate",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        assert_eq!(parse(&args("advise x --help")).unwrap(), Command::Help);
        assert_eq!(parse(&[]).unwrap(), Command::Help);
    }
}
