//! `tcb-advisor`: which circuit breaker config would have served a recorded trace best.
//!
//! * [`generate`]: synthetic traces of the seed's dependencies, with labelled incidents.
//! * [`advise`]: replays a trace against the seed presets, the config in force and a
//!   grid, ranks them by cost, prints the Pareto front, writes the winner as a config
//!   document and an HTML report.
//!
//! The guide is docs/advisor.md.

#![warn(missing_docs)]

pub mod advise;
pub mod args;
pub mod document;
mod error;
pub mod generate;
mod present;
pub mod rank;
pub mod replay;
pub mod report;
pub mod rng;
pub mod search;
pub mod svg;
pub mod traffic;

pub use error::AdvisorError;

use args::GenerateArgs;
use std::fs::File;
use std::io::{self, BufWriter, Write};

/// `tcb-advisor generate`.
///
/// # Errors
///
/// When an output file cannot be written.
pub fn run_generate(args: &GenerateArgs) -> Result<(), AdvisorError> {
    let options = generate::GenerateOptions {
        seed: args.seed,
        rate_scale: args.rate_scale,
    };
    let write = |name: &str, out: &mut dyn Write| -> io::Result<generate::GenerateSummary> {
        let scenario = generate::scenario(name).expect("names are checked when parsed");
        generate::generate(&scenario, options, &mut io::BufWriter::new(out))
    };
    if let Some(dir) = &args.all {
        std::fs::create_dir_all(dir).map_err(AdvisorError::io(dir))?;
        for name in generate::SCENARIOS {
            let path = dir.join(format!("{name}.jsonl"));
            let mut file = File::create(&path).map_err(AdvisorError::io(&path))?;
            let s = write(name, &mut file).map_err(AdvisorError::io(&path))?;
            eprintln!(
                "{}: {} calls, {} failed, {} in incidents",
                path.display(),
                s.calls,
                s.failures,
                s.incident_calls
            );
        }
        return Ok(());
    }
    let name = args.scenario.as_deref().unwrap_or_default();
    match &args.out {
        Some(path) => {
            let mut file = BufWriter::new(File::create(path).map_err(AdvisorError::io(path))?);
            write(name, &mut file).map_err(AdvisorError::io(path))?;
        }
        None => {
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            write(name, &mut lock).map_err(AdvisorError::io("-".as_ref()))?;
        }
    }
    Ok(())
}

/// `tcb-advisor advise`: see [`advise::run`].
///
/// # Errors
///
/// See [`advise::run`].
pub fn run_advise(args: &args::AdviseArgs) -> Result<(), AdvisorError> {
    advise::run(args)
}
