//! Writes the example's EMF lines to stdout: see the library's docs (`src/lib.rs`).

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    cloudwatch_emf::run(&mut std::io::stdout().lock())
}
