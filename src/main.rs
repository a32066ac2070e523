//! The `portarium-st2` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portarium_st2::config::{self, Config};

/// Exit code for bad input: a config or argument that cannot be used.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "portarium-st2",
    version,
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
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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

/// What a valid config resolves to, without any secret value.
fn summarise(config: &Config) -> String {
    let st2 = &config.st2;
    let endpoints = st2
        .endpoints()
        .expect("a validated config always has its endpoints");
    let auth = match (&st2.api_key, &st2.username) {
        (Some(key), _) => format!("API key ({})", describe_source(key.source())),
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

fn describe_source(source: &portarium_st2::governance::secrets::SecretSource) -> String {
    use portarium_st2::governance::secrets::SecretSource;
    match source {
        SecretSource::Literal => "inline in the file".into(),
        SecretSource::Env(name) => format!("env {name}"),
        SecretSource::File(path) => format!("file {path}"),
    }
}
