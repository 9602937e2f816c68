//! `nexthop-agent`: see [`nexthop_agent::cli`].

fn main() -> std::process::ExitCode {
    nexthop_agent::cli::main()
}
