//! The `portarium-st2` command line: every command, parsed with clap and run here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Config, LogFormat};
use crate::server;
use clap::{Args, CommandFactory, Parser, Subcommand};
use st2_client::St2Client;
use st2_client::stream::ExecutionWatcher;

/// Exit code for bad input: a config or argument that cannot be used.
const EXIT_USAGE: u8 = 2;

/// The release, the commit it was built from and the build date (`build.rs`), so a running
/// binary or image identifies its build.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PORTARIUM_BUILD_COMMIT"),
    ", built ",
    env!("PORTARIUM_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "portarium-st2",
    version = VERSION,
    about = "Run Portarium action dispatches on a StackStorm (st2) cluster",
    long_about = "Run Portarium action dispatches on a StackStorm (st2) cluster.\n\n\
        Configuration is one YAML file (see `portarium-st2 config example`) plus \
        PORTARIUM_ST2_* environment overrides, e.g. PORTARIUM_ST2_ST2__BASE_URL."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the adapter's HTTP API against st2 until SIGINT/SIGTERM.
    ///
    /// Serves GET /healthz (the process answers) and GET /readyz (ready until shutdown; st2's
    /// health in the body). Logs one line with the bound address when ready. At SIGTERM
    /// /readyz answers 503 at once and open requests get `server.shutdown_grace` to finish.
    Serve(ServeArgs),
    /// Run one st2 action and wait for it, like `st2 run`.
    ///
    /// Without --config, st2client's own settings are used (ST2_* variables, ~/.st2/config),
    /// as by the st2 CLI.
    ///
    /// Exit code: 0 when it succeeded, 1 when it failed, timed out, was cancelled or
    /// abandoned, 2 for bad arguments, parameters or config, 3 when it is still running
    /// after --wait-secs, 4 when st2 could not be used.
    Run(RunArgs),
    /// Inspect, follow, cancel and re-run st2 executions, like `st2 execution`.
    ///
    /// Without --config, st2client's own settings are used: ST2_BASE_URL, ST2_API_URL,
    /// ST2_AUTH_URL, ST2_STREAM_URL, ST2_API_KEY, ST2_AUTH_TOKEN, ST2_CACERT and
    /// ~/.st2/config (or ST2_CONFIG_FILE).
    #[command(subcommand)]
    Execution(execution::ExecutionCommand),
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// See the adapter work in a minute, with no st2 cluster: starts the st2 emulator and
    /// the adapter in this process and runs representative dispatches through the adapter's
    /// HTTP API, printing each request, the st2 execution and Portarium's result.
    ///
    /// Exit code: 0 when every scenario ended as expected, 1 otherwise.
    Demo,
    /// Check the Portarium registration manifest (adapter-manifest.yaml).
    #[command(subcommand)]
    Manifest(governance::ManifestCommand),
    /// Audit the packs installed on st2 against the reviewed-packs policy.
    #[command(subcommand)]
    Packs(governance::PacksCommand),
    /// Verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(governance::AuditCommand),
    /// Check st2's metrics as the adapter normalizes them.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
    /// Print a shell completion script for this command line.
    ///
    /// Install it where the shell looks, e.g. for bash
    /// `portarium-st2 completions bash > /etc/bash_completion.d/portarium-st2`, for zsh a file
    /// `_portarium-st2` in a directory of $fpath, for fish
    /// `~/.config/fish/completions/portarium-st2.fish`.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of portarium-st2 and all its commands.
    ///
    /// View it with `portarium-st2 manpage | man -l -`, or install it as
    /// `man1/portarium-st2.1` under a directory of `manpath`.
    Manpage,
}

#[derive(Subcommand)]
enum TelemetryCommand {
    /// Scrape Prometheus-text endpoints (statsd_exporter's /metrics) and print the
    /// normalized OpenTelemetry metrics as a table; exit 4 when a target cannot be read.
    Scrape {
        /// Scrape once and exit (otherwise every telemetry.interval_ms until Ctrl-C).
        #[arg(long)]
        once: bool,
        /// The config whose telemetry section (targets, caps, prefix) applies.
        #[arg(short, long, env = config::ENV_CONFIG_FILE)]
        config: Option<PathBuf>,
        /// Endpoints to scrape instead of telemetry.targets.
        urls: Vec<url::Url>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// The YAML config file; PORTARIUM_ST2_* variables override its fields.
    #[arg(short, long, env = config::ENV_CONFIG_FILE)]
    config: Option<PathBuf>,
    /// Start a built-in st2 emulator on a loopback port and serve against it (for trying
    /// the adapter without a cluster). Replaces the st2 section of the configuration.
    #[arg(long, conflicts_with = "config")]
    emulator: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The config file naming the st2 cluster and its credentials; without it, st2client's
    /// ST2_* variables and ~/.st2/config.
    #[arg(short, long, env = config::ENV_CONFIG_FILE)]
    config: Option<PathBuf>,
    /// Print the execution as JSON on stdout, as `st2 run -j` (progress goes to stderr).
    #[arg(short, long)]
    json: bool,
    /// Print the action's output as it arrives.
    #[arg(short, long)]
    follow: bool,
    /// Stop waiting after this long (the execution keeps running in st2).
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
    /// The st2 action ref, e.g. core.local.
    action: String,
    /// Parameters as key=value; values of non-string parameters may be JSON (count=3).
    params: Vec<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (with PORTARIUM_ST2_* overrides applied) and summarise it.
    ///
    /// Exits 0 when the file is valid, 2 with one line per problem otherwise.
    Check {
        /// The YAML file to check.
        #[arg(env = config::ENV_CONFIG_FILE)]
        file: PathBuf,
    },
    /// Print the documented example configuration with every field and its default.
    Example,
}

#[cfg(feature = "emulator")]
pub mod demo;
mod execution;
mod governance;
pub mod run;
mod st2rc;

/// Runs an async command on a new runtime; failing to start one is a failure to run it.
fn block_on(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(command),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line and runs the command; the exit code says how it ended.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Manifest(c) => governance::manifest(c),
        Command::Packs(c) => governance::packs(c),
        Command::Audit(c) => governance::audit(c),
        Command::Serve(args) => block_on(serve(args)),
        Command::Run(args) => block_on(run(args)),
        Command::Execution(command) => block_on(execution::execute(command)),
        Command::Demo => demo(),
        Command::Telemetry(TelemetryCommand::Scrape { once, config, urls }) => {
            block_on(telemetry_scrape(config, urls, once))
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "portarium-st2", &mut out);
            if shell == clap_complete::Shell::Bash {
                // clap_complete spells the hyphenated name two ways in its bash script
                // (clap-rs/clap#6421), so no subcommand's options would ever complete; the
                // dispatch loop's spelling is the one the case arms must use.
                let fixed = String::from_utf8_lossy(&out)
                    .replace("portarium__subcmd__st2", "portarium__st2");
                out = fixed.into_bytes();
            }
            print_bytes(&out)
        }
        Command::Manpage => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => {
                    // Each subcommand's own page follows, so `man -l -` shows every option.
                    render_subcommand_pages(&Cli::command(), &mut out);
                    print_bytes(&out)
                }
                Err(e) => {
                    eprintln!("cannot render the man page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { file }) => match Config::load(Some(&file)) {
            Ok(config) => {
                println!("{}: valid", file.display());
                print!("{}", summarise(&config));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(bytes);
    ExitCode::SUCCESS
}

/// Appends the sections of every subcommand (recursively) to a man page: name, synopsis,
/// description and options, each under a `.SH` titled with the full command.
fn render_subcommand_pages(command: &clap::Command, out: &mut Vec<u8>) {
    let parent = command.get_bin_name().unwrap_or(command.get_name());
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{parent} {}", sub.get_name());
        let sub = sub.clone().bin_name(&name);
        let man = clap_mangen::Man::new(sub.clone());
        out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        let _ = man.render_synopsis_section(out);
        let _ = man.render_description_section(out);
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            let _ = man.render_options_section(out);
        }
        render_subcommand_pages(&sub, out);
    }
}

/// What a valid config resolves to, without any secret value.
fn summarise(config: &Config) -> String {
    let st2 = &config.st2;
    let endpoints = st2
        .endpoints()
        .expect("a validated config always has its endpoints");
    let auth = match (&st2.api_key, &st2.username) {
        (Some(key), _) => format!("API key ({})", describe_source(key.source())),
        (None, None) if st2.auth_token.is_some() => format!(
            "auth token ({})",
            describe_source(st2.auth_token.as_ref().expect("checked").source())
        ),
        (None, Some(user)) => format!("user {user}, password from {}", {
            let password = st2.password.as_ref().expect("validated: password set");
            describe_source(password.source())
        }),
        (None, None) => unreachable!("validated: credentials set"),
    };
    format!(
        "  listen:     {}\n  st2 api:    {}\n  st2 auth:   {}\n  st2 stream: {}\n  credential: {}\n",
        config.listen, endpoints.api, endpoints.auth, endpoints.stream, auth
    )
}

fn describe_source(source: &st2_client::secret::SecretSource) -> String {
    use st2_client::secret::SecretSource;
    match source {
        SecretSource::Literal => "inline in the file".into(),
        SecretSource::Env(name) => format!("env {name}"),
        SecretSource::File(path) => format!("file {path}"),
    }
}

/// The in-process st2 emulator of `demo` and `serve --emulator`; a build without the
/// `emulator` feature has none, and this type then has no values.
#[cfg(feature = "emulator")]
type Emulator = st2_emulator::Emulator;
#[cfg(not(feature = "emulator"))]
enum Emulator {}

#[cfg(not(feature = "emulator"))]
impl Emulator {
    fn base_url(&self) -> String {
        match *self {}
    }

    async fn shutdown(self) {
        match self {}
    }
}

/// What a build without the emulator says when asked for it.
#[cfg(not(feature = "emulator"))]
const NO_EMULATOR: &str = "this build of portarium-st2 has no st2 emulator (it was built with --no-default-features); \
    build it with the default `emulator` feature (`cargo build --release`), or run the st2-emulator binary \
    (crates/st2-emulator) and point st2.base_url at it";

#[cfg(feature = "emulator")]
async fn start_emulator() -> Result<(Config, Emulator), String> {
    demo::emulated(std::env::vars(), None).await
}

#[cfg(not(feature = "emulator"))]
async fn start_emulator() -> Result<(Config, Emulator), String> {
    Err(NO_EMULATOR.to_string())
}

#[cfg(feature = "emulator")]
fn demo() -> ExitCode {
    block_on(async {
        match demo::run(&mut std::io::stdout()).await {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("demo: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(not(feature = "emulator"))]
fn demo() -> ExitCode {
    eprintln!("demo: {NO_EMULATOR}");
    ExitCode::from(EXIT_USAGE)
}

/// Loads config (or starts the emulator), then serves until a shutdown signal.
async fn serve(args: ServeArgs) -> ExitCode {
    let loaded = if args.emulator {
        start_emulator().await.map(|(c, e)| (c, Some(e)))
    } else {
        Config::load(args.config.as_deref())
            .map(|c| (c, None))
            .map_err(|e| e.to_string())
    };
    let (config, emulator) = match loaded {
        Ok(v) => v,
        Err(e) => {
            let source = args
                .config
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "configuration".into());
            eprintln!("{source}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Bound before telemetry starts: a start that fails on a taken port must not have
    // scraped or exported anything (nor logged through the span exporter).
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {} (listen): {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match crate::telemetry::Telemetry::start(&config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("telemetry: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(&config, telemetry.provider());
    if let Some(emulator) = &emulator {
        tracing::info!(base_url = %emulator.base_url(), "st2 emulator ready (in-process)");
    }
    let app = match crate::app::App::build(&config, Duration::from_secs(2)).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if app.dispatch.tenant_count() == 0 {
        tracing::warn!(
            "no tenants configured: POST /v1/dispatch refuses every request (add `tenants` to the config)"
        );
    }
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let router = app.router.clone();
    let client = app.client.clone();
    // Readiness turns to "draining" at the signal; the listener closes once the requests in
    // flight are answered or `server.shutdown_grace` is over, whichever comes first.
    let grace = config.server.shutdown_grace;
    let stop = app.drain.clone().after(shutdown_signal(), grace);
    let acceptor = match config.server.tls.as_ref().map(|t| t.acceptor()).transpose() {
        Ok(acceptor) => acceptor,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!(st2 = %client.endpoints().api, "portarium-st2 listening on {scheme}://{addr}");
    let limits = server::conn::ConnectionLimits::new(&config.server);
    let served = app
        .drain
        .bounded(server::conn::serve_connections(
            listener, router, acceptor, limits, stop,
        ))
        .await;
    app.shutdown(config.events.shutdown_grace).await;
    if let Err(e) = served {
        tracing::error!("server stopped: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    telemetry.shutdown().await;
    tracing::info!("portarium-st2 stopped");
    ExitCode::SUCCESS
}

fn init_logging(config: &Config, spans: Option<&opentelemetry_sdk::trace::SdkTracerProvider>) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    // The log level filters log lines only; dispatch spans reach OTLP whatever it is.
    let logs = match config.log.format {
        LogFormat::Json => crate::telemetry::logs::json_layer(std::io::stdout).boxed(),
        LogFormat::Text => fmt::layer()
            .with_ansi(crate::telemetry::logs::ansi_on_stdout())
            .boxed(),
    };
    // Without OTLP export the spans still get OpenTelemetry ids (from the caller's
    // traceparent when it sends one), so JSON lines carry traceId and spanId either way;
    // a provider with no processor exports nothing.
    let spans = match spans {
        Some(p) => crate::telemetry::spans::layer(p).boxed(),
        None => crate::telemetry::spans::ids_only_layer(
            &opentelemetry_sdk::trace::SdkTracerProvider::builder().build(),
        )
        .boxed(),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .init();
}

/// `portarium-st2 telemetry scrape`: the normalized table on stdout, errors on stderr.
async fn telemetry_scrape(config: Option<PathBuf>, urls: Vec<url::Url>, once: bool) -> ExitCode {
    let telemetry = match config {
        Some(path) => match Config::load(Some(&path)) {
            Ok(c) => c.telemetry,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => Default::default(),
    };
    let urls = if urls.is_empty() {
        telemetry.targets.clone()
    } else {
        urls
    };
    if urls.is_empty() {
        eprintln!(
            "name an endpoint to scrape (e.g. http://127.0.0.1:9108/metrics) or set telemetry.targets in --config"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let mut stdout = std::io::stdout();
    let stop = shutdown_signal();
    match crate::telemetry::scrape_to_table(&telemetry, &urls, once, &mut stdout, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(4)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// The config at `path`, or without one the st2 CLI's own settings (st2client's `ST2_*`
/// variables and `~/.st2/config`), `PORTARIUM_ST2_*` applied over either; and an st2 client
/// for it. A problem with either is said on stderr and ends the command with the usage exit
/// code.
fn config_and_client(path: Option<&std::path::Path>) -> Result<(Config, St2Client), ExitCode> {
    let config = cli_config(path).map_err(|e| {
        eprintln!("configuration: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let client = St2Client::from_config(&config.st2).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    Ok((config, client))
}

/// What [`config_and_client`] loads; the error as the operator should read it.
fn cli_config(path: Option<&std::path::Path>) -> Result<Config, String> {
    if path.is_some() {
        return Config::load(path).map_err(|e| e.to_string());
    }
    let env = |name: &str| std::env::var(name).ok();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let section = st2rc::St2rc::load(&env, home.as_deref())
        .and_then(|rc| rc.st2_section())
        .map_err(|e| e.to_string())?;
    match section {
        Some(section) => {
            let yaml = serde_norway::to_string(&section).map_err(|e| e.to_string())?;
            Config::from_yaml(
                &yaml,
                "the st2 CLI's settings (ST2_*, ~/.st2/config)",
                std::env::vars(),
            )
            .map_err(|e| format!("{e}
(read from the st2 CLI's settings: ST2_* variables and ~/.st2/config)"))
        }
        None => Config::load(None).map_err(|e| {
            format!(
                "{e}; pass --config FILE, or configure st2 as for the st2 CLI (ST2_BASE_URL and ST2_API_KEY, or ~/.st2/config)"
            )
        }),
    }
}

/// `portarium-st2 run`: one action, its output and result on stdout (progress on stderr
/// with `-j`), errors on stderr.
async fn run(args: RunArgs) -> ExitCode {
    let (config, client) = match config_and_client(args.config.as_deref()) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let progress: &mut (dyn std::io::Write + Send) =
        if args.json { &mut stderr } else { &mut stdout };
    let wait = Duration::from_secs(args.wait_secs);
    let watcher = ExecutionWatcher::start(client.clone(), config.st2.stream.clone());
    let done = run::run(
        &client,
        &watcher,
        &args.action,
        &args.params,
        args.follow,
        wait,
        progress,
    )
    .await;
    match done {
        Ok(execution) => {
            // A reader that went away (`| head`) is not a failure of the action: the exit
            // code stays the action's (print_execution ignores write errors).
            execution::print_execution(&execution, args.json, &mut std::io::stdout());
            execution::outcome_code(&execution)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(execution::exit_code(&e))
        }
    }
}
