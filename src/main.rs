use clap::Parser;
use closeout::cli::{self, Cli, Format, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logging(cli: &Cli) {
    let default = match cli.global.verbose {
        // A service says what it does; a command only what went wrong.
        0 if matches!(cli.command, cli::Command::Serve) => "closeout=info,warn",
        0 => "warn",
        1 => "closeout=debug,closeout_aws=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(cli::exit::ERROR);
        }
    };
    let code = match runtime.block_on(cli::run(&cli)) {
        Ok(code) => code,
        Err(failure) => {
            if cli.command.format() == Format::Json {
                cli::output::print_json(&serde_json::json!({
                    "error": failure.message,
                    "exit_code": failure.code,
                }));
            }
            eprintln!("error: {}", failure.message);
            failure.code
        }
    };
    std::process::exit(code);
}
