//! A downstream SCIM 2.0 application for the SCIM provider's tests: `scim2-server` (PyPI, in
//! the virtualenv `scripts/setup.sh` makes) serving Users and Groups from memory on a free
//! loopback port, accepting one bearer token. Killed when dropped.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{drain, free_port, http_status, tail_text, venv_dir, START_TIMEOUT};

/// A `scim2-server` on 127.0.0.1.
pub struct ScimApp {
    child: Child,
    port: u16,
    token: String,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl ScimApp {
    /// Start an app accepting `Authorization: Bearer <token>`.
    ///
    /// # Panics
    /// When `scim2-server` is missing from the virtualenv, exits, or does not answer within
    /// [`START_TIMEOUT`].
    pub fn start(token: &str) -> ScimApp {
        let binary = venv_dir().join("bin/scim2-server");
        if !binary.is_file() {
            panic!(
                "scim2-server not found at {}: run scripts/setup.sh (scim2-server is in \
                 scripts/requirements.txt) or set CLOSEOUT_VENV",
                binary.display()
            );
        }
        let port = free_port();
        let mut child = Command::new(&binary)
            .args([
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--bearer-token",
                token,
            ])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let output = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            drain(out, Arc::clone(&output));
        }
        if let Some(err) = child.stderr.take() {
            drain(err, Arc::clone(&output));
        }
        let mut app = ScimApp {
            child,
            port,
            token: token.to_string(),
            output,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = app.child.try_wait() {
                panic!(
                    "scim2-server exited during start-up on port {port} ({status}); its output:\n{}",
                    app.output_tail()
                );
            }
            if http_status(port, "/v2/ServiceProviderConfig").is_some() {
                return app;
            }
            if Instant::now() >= deadline {
                let tail = app.output_tail();
                drop(app);
                panic!("scim2-server did not answer on 127.0.0.1:{port} within {START_TIMEOUT:?}; its output:\n{tail}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>/v2`, the SCIM base URL scim2-server serves.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    /// The bearer token it accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The last lines it wrote.
    pub fn output_tail(&self) -> String {
        tail_text(&self.output)
    }
}

impl Drop for ScimApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
