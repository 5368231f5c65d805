//! The `trustgate` binary: parse the command line, set up logging, hand over to the library.
use std::process::ExitCode;

use clap::Parser as _;
use trustgate::cli::{self, Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    let result = match cli.command {
        Command::Run { .. } | Command::Demo => Err(anyhow::anyhow!(
            "`run` and `demo` are not available yet in this build: they arrive with the proxy (issue #5)"
        )),
        offline => cli::run_offline(offline),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr so that commands printing a token or kid keep stdout clean.
fn init_logging(format: Option<LogFormat>, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.unwrap_or(LogFormat::Text) {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
