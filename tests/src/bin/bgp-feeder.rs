//! `bgp-feeder`: one eBGP route feeder (see `nexthop_tests::feeder`).
//!
//! `bgp-feeder (--connect ADDR | --listen ADDR) --as ASN --next-hop IP
//! --first IP --count N [--as-path-every K] [--bind IP]`
//!
//! Establishes the session (dialling ADDR:179 from `--bind`, or accepting
//! one connection on ADDR:179), prints `ready`, waits for a line on stdin, sends the routes
//! and End-of-RIB, prints `sent BYTES`, and keeps the session up until
//! stdin closes.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use nexthop_agent::transport::{self, Dial};
use nexthop_tests::feeder::{self, Feed};

struct Args {
    connect: Option<IpAddr>,
    listen: Option<IpAddr>,
    bind: Option<IpAddr>,
    feed: Feed,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut connect = None;
    let mut listen = None;
    let mut bind = None;
    let mut asn = None;
    let mut next_hop: Option<Ipv4Addr> = None;
    let mut first = None;
    let mut count = None;
    let mut as_path_every = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--connect" => connect = Some(value.parse().map_err(|e| bad(&e))?),
            "--listen" => listen = Some(value.parse().map_err(|e| bad(&e))?),
            "--bind" => bind = Some(value.parse().map_err(|e| bad(&e))?),
            "--as" => asn = Some(value.parse().map_err(|e| bad(&e))?),
            "--next-hop" => next_hop = Some(value.parse().map_err(|e| bad(&e))?),
            "--first" => first = Some(value.parse().map_err(|e| bad(&e))?),
            "--count" => count = Some(value.parse().map_err(|e| bad(&e))?),
            "--as-path-every" => as_path_every = Some(value.parse().map_err(|e| bad(&e))?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let next_hop = next_hop.ok_or("--next-hop is required")?;
    if connect.is_some() == listen.is_some() {
        return Err("give one of --connect and --listen".into());
    }
    Ok(Args {
        connect,
        listen,
        bind,
        feed: Feed {
            asn: asn.ok_or("--as is required")?,
            router_id: next_hop,
            next_hop,
            first: first.ok_or("--first is required")?,
            count: count.ok_or("--count is required")?,
            as_path_every,
        },
    })
}

/// An Established session: accepted once, or dialled until the target
/// takes it (a daemon may refuse connections while it starts).
fn session(args: &Args) -> std::io::Result<TcpStream> {
    if let Some(address) = args.listen {
        let listener = TcpListener::bind(SocketAddr::new(address, 179))?;
        let mut stream = listener.accept()?.0;
        feeder::handshake(&mut stream, &args.feed)?;
        return Ok(stream);
    }
    let mut attempts = 0;
    loop {
        let attempt = dial(args).and_then(|mut stream| {
            feeder::handshake(&mut stream, &args.feed)?;
            Ok(stream)
        });
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if attempts >= 60 => return Err(e),
            Err(_) => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn dial(args: &Args) -> std::io::Result<TcpStream> {
    let dial = Dial {
        peer: SocketAddr::new(args.connect.expect("connect or listen"), 179),
        local: args.bind,
        md5_key: None,
        ttl: 1,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = runtime.block_on(transport::connect(&dial))?.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bgp-feeder: {e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> std::io::Result<()> {
        let updates = args.feed.updates();
        let mut stream = session(&args)?;
        feeder::keep_up(&stream, Duration::from_secs(20))?;
        println!("ready");
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let _ = lines.next();
        stream.write_all(&updates)?;
        println!("sent {}", updates.len());
        for _ in lines {}
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bgp-feeder: {e}");
            ExitCode::FAILURE
        }
    }
}
