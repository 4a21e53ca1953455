//! `shoal`: the shoal CLI and requester service. All logic is in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    shoal_requester::cli::main(shoal_requester::cli::Cli::parse())
}
