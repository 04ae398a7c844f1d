//! `tcb-advisor`: see `tcb-advisor --help` and docs/advisor.md.

use std::process::ExitCode;
use tcb_advisor::args::{self, Command};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tcb-advisor: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{}", args::HELP);
            Ok(())
        }
        Command::Generate(g) => tcb_advisor::run_generate(&g),
        Command::Advise(a) => tcb_advisor::run_advise(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcb-advisor: {e}");
            ExitCode::FAILURE
        }
    }
}
