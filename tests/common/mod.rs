//! Shared set-up for the CLI integration tests: a moto server, a work directory with a config
//! and an HR export, and a way to run the real `closeout` binary.

#![allow(dead_code)]

use closeout_testkit::MotoServer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One test's world: its own moto server and its own journal, audit log and config.
pub struct World {
    pub moto: MotoServer,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Start moto and write a config using the shipped playbooks and the demo HR export.
    pub fn new() -> World {
        World::with_aws_extra("")
    }

    /// Like [`World::new`], with extra lines in the `[providers.aws]` section.
    pub fn with_aws_extra(extra: &str) -> World {
        let moto = MotoServer::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let world = World { moto, dir };
        world.write_config(&format!("{REPO}/playbooks"), extra);
        world
    }

    pub fn write_config(&self, playbook_dir: &str, aws_extra: &str) {
        let config = format!(
            r#"playbook_dir = "{playbook_dir}"

[source]
path = "{REPO}/examples/demo/hr.csv"

[store]
path = "state/closeout.db"

[audit]
path = "state/audit.jsonl"

[execution]
max_attempts = 3
base_backoff_ms = 50
max_backoff_ms = 500

[providers.aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
{aws_extra}
"#,
            endpoint = self.moto.endpoint()
        );
        std::fs::write(self.config_path(), config).expect("write config");
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("closeout.toml")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.path().join("state/closeout.db")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("state/audit.jsonl")
    }

    /// A `closeout` command in the world's directory with its config and AWS test credentials.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_closeout"));
        cmd.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE")
            .env("CLOSEOUT_ACTOR", "integration-test")
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn closeout(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run closeout")
    }

    /// Seed the demo organisation into this world's moto; returns the planted canary value.
    pub fn seed_demo(&self) -> String {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "{} not found: run scripts/setup.sh to create the venv with boto3",
            python.display()
        );
        let canary_file = self.dir.path().join("canary.txt");
        let out = Command::new(python)
            .arg(format!("{REPO}/examples/demo/seed_aws.py"))
            .env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("CLOSEOUT_CANARY_FILE", &canary_file)
            .output()
            .expect("run the seed script");
        assert!(
            out.status.success(),
            "seeding failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&canary_file)
            .expect("the seed script writes the canary")
            .trim()
            .to_string()
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        closeout_testkit::aws_sdk_config(&self.moto.endpoint()).await
    }
}

pub fn venv() -> PathBuf {
    std::env::var_os("CLOSEOUT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join(".venv"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse stdout as exactly one JSON document.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    })
}
