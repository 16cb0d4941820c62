use clap::Parser;
use closeout::cli::timings::Timings;
use closeout::cli::{self, Cli, Format, LogFormat};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Logs on stderr, and the `--timings` collector when asked for (returned, to print at the end).
fn init_logging(cli: &Cli) -> Option<Timings> {
    let default = match cli.global.verbose {
        // A service says what it does; a command only what went wrong.
        0 if matches!(cli.command, cli::Command::Serve) => "closeout=info,warn",
        0 => "warn",
        1 => "closeout=debug,closeout_aws=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cli.global.log_format {
        // A JSON log also records each span's closing, with its busy and idle time: the
        // durations of runs, phases and actions (and of provider calls at -v).
        LogFormat::Json => fmt.json().with_span_events(FmtSpan::CLOSE).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let timings = cli.global.timings.then(Timings::default);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(timings.as_ref().map(Timings::layer))
        .init();
    timings
}

fn main() {
    let cli = Cli::parse();
    let timings = init_logging(&cli);
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
    if let Some(timings) = timings {
        eprint!("{}", timings.render());
    }
    std::process::exit(code);
}
