//! `closeout serve`: run as a service (docs/serve.md). Stops on SIGTERM.

use super::global::{exit, Failure, GlobalArgs};

/// Serve until stopped.
pub async fn run(global: &GlobalArgs) -> Result<i32, Failure> {
    match crate::serve::run(&global.config).await {
        Ok(()) => Ok(exit::OK),
        Err(e) => Err(Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }),
    }
}
