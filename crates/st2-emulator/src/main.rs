//! `st2-emulator`: run the StackStorm API emulator as a standalone process.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use st2_emulator::{Catalogue, Emulator, EmulatorOptions, User};

/// A StackStorm (st2) API emulator: /api/v1, /auth/v1 and /stream/v1 on one port, answering like
/// st2 3.10 behind its nginx. Executions move through st2's statuses on their own.
///
/// Control it from outside with the API key: POST /_emulator/faults ({"fail_next":{"status":503,
/// "count":2}}, {"drop_ratio":0.1}, {"delay_ms":200}, {"cut_streams":true},
/// {"silence_streams":true}, {"clear":true}), POST /_emulator/restart,
/// POST /_emulator/revoke_tokens, GET /_emulator/requests.
#[derive(Debug, Parser)]
#[command(name = "st2-emulator", version)]
struct Args {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "ST2_EMULATOR_LISTEN")]
    listen: SocketAddr,
    /// API key accepted in the St2-Api-Key header (and ?st2-api-key=).
    #[arg(long, default_value = "emulator-api-key", env = "ST2_EMULATOR_API_KEY")]
    api_key: String,
    /// Catalogue YAML (packs, runners, actions, behaviours); default: the built-in one.
    #[arg(long)]
    catalogue: Option<PathBuf>,
    /// A user allowed to get tokens, as NAME:PASSWORD; repeatable (default st2admin:Ch@ngeMe).
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = parse_user)]
    users: Vec<User>,
    /// Milliseconds between automatic status transitions.
    #[arg(long, default_value_t = 20)]
    step_ms: u64,
    /// Seconds between SSE keep-alive newlines on /stream/v1/stream.
    #[arg(long, default_value_t = 25)]
    heartbeat_secs: u64,
    /// Maximum (and default) token lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    token_ttl_secs: u64,
    /// Store this many succeeded core.noop executions before serving, as a production st2's
    /// history, to measure what lookups cost.
    #[arg(long, default_value_t = 0)]
    preload: usize,
}

fn parse_user(s: &str) -> Result<User, String> {
    match s.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok(User {
            name: name.into(),
            password: password.into(),
        }),
        _ => Err(format!("expected NAME:PASSWORD, got {s:?}")),
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let catalogue = match &args.catalogue {
        Some(path) => match Catalogue::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("st2-emulator: {e}");
                return ExitCode::from(2);
            }
        },
        None => Catalogue::builtin(),
    };
    let mut options = EmulatorOptions {
        listen: args.listen,
        api_key: args.api_key,
        catalogue,
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        step: Duration::from_millis(args.step_ms),
        heartbeat: Duration::from_secs(args.heartbeat_secs),
        preload: args.preload,
        ..EmulatorOptions::default()
    };
    if !args.users.is_empty() {
        options.users = args.users;
    }
    let emulator = match Emulator::start(options).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "st2-emulator: cannot listen on {}: {e}; pick a free address with --listen",
                args.listen
            );
            return ExitCode::from(1);
        }
    };
    println!("st2-emulator listening on {}", emulator.base_url());
    let _ = std::io::stdout().flush();
    let outcome = wait_for_signal().await;
    emulator.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("st2-emulator: cannot wait for signals: {e}");
            ExitCode::from(1)
        }
    }
}
