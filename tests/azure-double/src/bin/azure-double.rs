//! `azure-double --port N --cert-dir DIR`: runs the Azure test double as a process. Writes
//! `DIR/ca.pem` (the CA to trust) and `DIR/cert.pem` (the server certificate), then prints one
//! line `ready https://127.0.0.1:N` on stdout once it listens. Stops on Ctrl-C or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use closeout_azure_double::{AzureDouble, ClientCredential, Config};

#[derive(Parser, Debug)]
#[command(
    name = "azure-double",
    about = "Test double for Azure Resource Manager authorization, Key Vault management and Microsoft Graph"
)]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Directory to write ca.pem and cert.pem into (created if missing).
    #[arg(long)]
    cert_dir: PathBuf,
    /// Tenant id served by the token endpoint.
    #[arg(long, default_value = closeout_azure_double::DEFAULT_TENANT_ID)]
    tenant_id: String,
    /// Accepted client, as CLIENT_ID:CLIENT_SECRET (repeatable; default: the built-in test client).
    #[arg(long = "client", value_name = "ID:SECRET")]
    clients: Vec<String>,
    /// Page size of lists when the caller sends no $top.
    #[arg(long, default_value_t = 3)]
    page_size: usize,
    /// DNS suffix used in vaultUri (https://{name}.{suffix}:{port}/).
    #[arg(long, default_value = "lowkey-vault.local")]
    vault_dns_suffix: String,
    /// Port used in vaultUri; 0 = this server's own port (it serves the Key Vault data plane).
    #[arg(long, default_value_t = 0)]
    vault_port: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("azure-double: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("azure-double: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = Config {
        tenant_id: args.tenant_id,
        page_size: args.page_size,
        port: args.port,
        vault_dns_suffix: args.vault_dns_suffix,
        vault_port: args.vault_port,
        ..Config::default()
    };
    if !args.clients.is_empty() {
        config.clients = args
            .clients
            .iter()
            .map(|c| {
                c.split_once(':')
                    .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
                    .map(|(id, secret)| ClientCredential {
                        client_id: id.to_string(),
                        client_secret: secret.to_string(),
                    })
                    .ok_or_else(|| format!("--client '{c}' must be CLIENT_ID:CLIENT_SECRET"))
            })
            .collect::<Result<_, _>>()?;
    }
    let double = AzureDouble::start(config)
        .await
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.cert_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.cert_dir.display()))?;
    for (file, pem) in [("ca.pem", double.ca_pem()), ("cert.pem", double.leaf_pem())] {
        let path = args.cert_dir.join(file);
        std::fs::write(&path, pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "ready {}", double.base_url())
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    wait_for_signal().await;
    double.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
