//! `shoal-node`: the compute node daemon. All logic is in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    shoal_node::cli::main(shoal_node::cli::Cli::parse())
}
