//! The `nexthop-agent` command line, built inside this package so the
//! namespace tests can run it (`CARGO_BIN_EXE_nexthop-agent-under-test`).

fn main() -> std::process::ExitCode {
    nexthop_agent::cli::main()
}
