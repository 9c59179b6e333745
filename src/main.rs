//! The `lts` binary: parses the command line and hands off to [`lts::commands`].

use clap::Parser;
use lts::cli::{Cli, Command};
use lts::commands;

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Params(a) => commands::params(a),
        Command::Export(a) => commands::export(a),
        Command::Measure(a) => commands::measure(a),
        Command::Search(a) => commands::search(a),
        Command::Device(a) => commands::device(a),
        Command::Setup(a) => commands::setup(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        // Stopped by Ctrl-C / SIGTERM: the shell's 128 + signal, as if the signal had killed us.
        let code = e
            .chain()
            .find_map(|c| c.downcast_ref::<lts::signals::Interrupted>())
            .map_or(1, |i| i.exit_code());
        std::process::exit(code);
    }
}
