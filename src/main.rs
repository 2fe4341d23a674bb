//! The `talforge` binary: parse the command line, run one library call, map the outcome to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // A rootless lab runs this binary inside its namespaces to bind its servers' sockets there.
    let mut raw = std::env::args_os().skip(1);
    if raw.next().is_some_and(|a| talforge_testbed::net::userns::is_bind_helper(&a)) {
        return talforge_testbed::net::userns::bind_helper_main(&raw.collect::<Vec<_>>());
    }
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
