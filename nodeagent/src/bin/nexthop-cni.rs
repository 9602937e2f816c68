//! `nexthop-cni`: the CNI plugin, run by the container runtime for each
//! pod; see [`nexthop_agent::cni`].

use std::io::{Read, Write};

fn main() -> std::process::ExitCode {
    let mut stdin = Vec::new();
    let invocation = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => nexthop_agent::cni::Invocation {
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("CNI_"))
                .collect(),
            stdin,
        },
        Err(e) => {
            eprintln!("nexthop-cni: reading stdin: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = nexthop_agent::cni::run(&invocation, |socket, request| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(nexthop_agent::api::query(socket, &request))
    });
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(outcome.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::ExitCode::from(u8::try_from(outcome.exit).unwrap_or(1))
}
