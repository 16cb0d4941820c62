//! A throwaway PostgreSQL 15 cluster for rotation tests: `initdb` + `pg_ctl` on a free loopback
//! port, its data directory under a fresh temporary directory, password (SCRAM) authentication
//! only, so a refused password is refused as it would be in production.
//!
//! The binaries are Debian's `postgresql-15` package (`/usr/lib/postgresql/15/bin`, or
//! `$CLOSEOUT_PG_BIN`), which `scripts/setup.sh` installs. PostgreSQL refuses to run as root, so
//! when the tests run as root the cluster runs as `nobody` (`runuser -u nobody --`), its
//! directory owned by that user. One cluster per test binary ([`PostgresServer::shared`]); a
//! watchdog stops it and removes its directory when the process exits.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use crate::{free_port, PORT_ATTEMPTS};

/// The superuser the cluster is made with.
pub const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL 15 binaries are: `$CLOSEOUT_PG_BIN`, else Debian's location.
pub fn pg_bin() -> PathBuf {
    std::env::var_os("CLOSEOUT_PG_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// A running throwaway cluster.
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    superuser_password: String,
    as_nobody: bool,
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PostgresServer {
    /// Start a cluster.
    ///
    /// # Panics
    /// When the binaries are missing (run `scripts/setup.sh`), `initdb` fails, or the server does
    /// not start.
    pub fn start() -> PostgresServer {
        let bin = pg_bin();
        if !bin.join("initdb").is_file() {
            panic!(
                "PostgreSQL 15 not found at {}: run scripts/setup.sh (it installs Debian's \
                 postgresql-15 package), or set CLOSEOUT_PG_BIN",
                bin.display()
            );
        }
        let as_nobody = running_as_root();
        let dir = std::env::temp_dir().join(format!(
            "closeout-postgres-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let superuser_password = format!("pg-{}-{}", std::process::id(), free_port());
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, &superuser_password)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", pwfile.display()));
        if as_nobody {
            for p in [&dir, &pwfile] {
                let out = Command::new("chown")
                    .args(["nobody", &p.display().to_string()])
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
                assert!(
                    out.status.success(),
                    "chown nobody {}: {}",
                    p.display(),
                    text(&out)
                );
            }
        }
        let mut server = PostgresServer {
            port: 0,
            dir,
            superuser_password,
            as_nobody,
        };
        let data = server.dir.join("data");
        let out = server.run(
            &bin.join("initdb"),
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                SUPERUSER,
                &format!("--pwfile={}", pwfile.display()),
                "-A",
                "scram-sha-256",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
                server.dir.display()
            );
            let out = server.run(
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    &data.display().to_string(),
                    "-o",
                    &options,
                    "-l",
                    &server.dir.join("log").display().to_string(),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            if out.status.success() {
                server.port = port;
                return server;
            }
            last = format!(
                "{}\n{}",
                text(&out),
                std::fs::read_to_string(server.dir.join("log")).unwrap_or_default()
            );
        }
        panic!("pg_ctl start failed after {PORT_ATTEMPTS} ports: {last}")
    }

    /// One cluster for the whole test binary, started on first use; a watchdog `sh` reading a
    /// pipe this process holds stops it and removes its directory when the process exits.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<(PostgresServer, Child)> = OnceLock::new();
        &SHARED
            .get_or_init(|| {
                let server = PostgresServer::start();
                let stop = server.stop_command();
                let watchdog = Command::new("sh")
                    .args([
                        "-c",
                        "read line; $0 >/dev/null 2>&1; rm -rf \"$1\"",
                        &stop,
                        &server.dir.display().to_string(),
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start the PostgreSQL watchdog (sh): {e}"));
                (server, watchdog)
            })
            .0
    }

    fn stop_command(&self) -> String {
        let pg_ctl = pg_bin().join("pg_ctl");
        let base = format!(
            "{} -D {} -m immediate stop",
            pg_ctl.display(),
            self.dir.join("data").display()
        );
        if self.as_nobody {
            format!("runuser -u nobody -- {base}")
        } else {
            base
        }
    }

    fn run(&self, program: &Path, args: &[&str]) -> Output {
        let mut command = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far (what `log_statement` recorded, among the rest).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// Run SQL as the superuser with `psql` (for seeding roles and tables); panics on failure.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(pg_bin().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", &self.superuser_password)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        assert!(out.status.success(), "psql failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new empty database `name` for a test's store: created, the superuser's password
    /// written to `password_file` (its first line, as `[store] password_file` reads it), and its
    /// URL returned — `postgres://SUPERUSER@127.0.0.1:PORT/name`, never with the password.
    pub fn new_database(&self, name: &str, password_file: &Path) -> String {
        self.psql(&format!("CREATE DATABASE {name}"));
        std::fs::write(password_file, format!("{}\n", self.superuser_password))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", password_file.display()));
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Whether `user` logs in with `password` (psql against 127.0.0.1, password auth).
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        Command::new(pg_bin().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-w",
                "-At",
                "-c",
                "SELECT 1",
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

fn text(out: &Output) -> String {
    format!(
        "({})\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = Command::new("sh")
                .args(["-c", &self.stop_command()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .finish()
    }
}
