//! The `lts` binary: parses the command line and hands off to [`lts::commands`].

use clap::Parser;
use lts::cli::{Cli, Command};
use lts::commands;

fn main() {
    // Die quietly of SIGPIPE when the reader of stdout goes away (`lts params | head -1`), as
    // coreutils and ripgrep do, instead of panicking in `println!` (Rust ignores SIGPIPE, so
    // every print would need its own BrokenPipe handling). A search and `measure --out` write
    // their files before printing, so only the printout nobody reads is lost.
    // SAFETY: restoring a default signal disposition, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if cli.uses_gpu() {
        // SAFETY: still single-threaded (clap starts no thread), so no other thread reads the
        // environment while it changes.
        unsafe { lts::backend::wgpu::quiet_display_probe() };
    }
    let result = match &cli.command {
        Command::Params(a) => commands::params(a),
        Command::Export(a) => commands::export::export(a),
        Command::Measure(a) => commands::measure::measure(a),
        Command::Search(a) => commands::search::search(a),
        Command::Device(a) => commands::device(a),
        Command::Setup(a) => commands::setup(a),
        Command::Fetch(a) => commands::fetch(a),
        Command::Eval(a) => commands::eval::eval(a),
        Command::Quantize(a) => commands::quantize::quantize(a),
        Command::QuantBench(a) => commands::quantize::quant_bench(a),
        Command::Agent(a) => commands::agent::agent(a),
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
