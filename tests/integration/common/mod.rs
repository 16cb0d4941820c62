//! Shared set-up for the CLI integration tests: a moto server, a work directory with a config
//! and an HR export, and a way to run the real `closeout` binary.

pub mod azure;
pub mod idp;
pub mod mover;
pub mod scim;
pub mod serve;
pub mod vault;

use closeout::store::grants::GrantRecord;
use closeout::store::journal::{ActionRecord, Journal, JournalError, RunRecord};
use closeout::store::queue::{EventQueue, QueuedEvent};
use closeout_testkit::MotoServer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The demo organisation's leaver, Alice.
pub const LEAVER: &str = "E1001";

/// `apply leaver --identity E1001 --yes --format json`: close out the demo's leaver.
pub const APPLY_LEAVER: [&str; 7] = [
    "apply",
    "leaver",
    "--identity",
    LEAVER,
    "--yes",
    "--format",
    "json",
];

/// One test's world: its own moto server and its own journal, audit log and config.
pub struct World {
    pub moto: MotoServer,
    pub dir: tempfile::TempDir,
    /// The PostgreSQL store the world's config names instead of the SQLite file
    /// ([`World::on_postgres`]).
    pub postgres: Option<closeout::config::StoreConfig>,
}

impl World {
    /// Start moto and write a config using the shipped playbooks and the demo HR export.
    pub fn new() -> World {
        World::with_aws_extra("")
    }

    /// Like [`World::new`], with extra lines in the `[providers.aws]` section. On PostgreSQL
    /// when the run asks for it ([`store_from_env`]).
    pub fn with_aws_extra(extra: &str) -> World {
        let world = World::with_moto(MotoServer::start());
        world.write_config(&format!("{REPO}/playbooks"), extra);
        if store_from_env() {
            world.on_postgres()
        } else {
            world
        }
    }

    /// Like [`World::new`], around a moto server started by the caller (e.g. one that enforces
    /// IAM authorization after its first requests).
    pub fn with_moto(moto: MotoServer) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let world = World {
            moto,
            dir,
            postgres: None,
        };
        world.write_config(&format!("{REPO}/playbooks"), "");
        world
    }

    pub fn write_config(&self, playbook_dir: &str, aws_extra: &str) {
        let config = format!(
            r#"{common}
[providers.aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
{aws_extra}
"#,
            common = config_without_providers(playbook_dir),
            endpoint = self.moto.endpoint()
        );
        let config = with_store(config, self.postgres.as_ref());
        std::fs::write(self.config_path(), config).expect("write config");
    }

    /// The same world with its store in a new database on the test binary's shared PostgreSQL
    /// cluster (`[store] url`, the password in a file): the journal, the leases and the queue
    /// go there; the audit log stays the file.
    pub fn on_postgres(mut self) -> World {
        if self.postgres.is_none() {
            self.postgres = Some(use_postgres_store(self.dir.path(), &self.config_path()));
        }
        self
    }

    /// Every event in the world's queue (SQLite or PostgreSQL), newest first.
    pub fn queued_events(&self) -> Vec<QueuedEvent> {
        store_events(self.postgres.as_ref(), &self.journal_path())
    }

    /// The world's time-bound grants, with their identities (SQLite or PostgreSQL).
    pub fn grants(&self) -> Vec<(String, GrantRecord)> {
        self.journal()
            .map(|j| {
                j.grants()
                    .unwrap_or_else(|e| panic!("read the grants: {e}"))
            })
            .unwrap_or_default()
    }

    /// The world's journal (SQLite or PostgreSQL); `None` when the SQLite file does not exist.
    pub fn journal(&self) -> Option<Journal> {
        store_journal(self.postgres.as_ref(), &self.journal_path())
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

/// The gaps moto leaves that every test config accepts by name: moto 5.2 does not serve
/// `ListServiceSpecificCredentials` (the tests issue none). Any other gap keeps a run open.
pub const MOTO_ACCEPTS: &str = r#"[[accept_unverified]]
provider = "aws"
kind = "service-credential"
reason = "moto does not serve ListServiceSpecificCredentials; the tests issue none"
"#;

/// Every test config's sections but the providers: the demo HR export, state in `state/`
/// under the world's directory, fast retries, the gaps moto leaves accepted.
pub fn config_without_providers(playbook_dir: &str) -> String {
    format!(
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

{MOTO_ACCEPTS}"#
    )
}

/// The virtualenv with the emulators and the seed scripts' Python packages (the testkit's).
pub fn venv() -> PathBuf {
    closeout_testkit::venv_dir()
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

// ---- `closeout serve` -----------------------------------------------------------------------

/// A running `closeout serve`; killed when dropped.
pub struct Service {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`, from the line the service prints once it listens.
    pub base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `cmd` (a `closeout ... serve` command), its stderr appended to `log`, and wait until it
/// says where it listens.
pub fn start_serve(mut cmd: Command, log: &Path) -> Service {
    use std::io::{BufRead, BufReader};
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(log_file)
        .spawn()
        .expect("start closeout serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "closeout serve did not say where it listens:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    Service { child, base }
}

// ---- Reading state back -----------------------------------------------------------------------

/// A command's exit code and output, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// The journal at `path`, opened through the store's API; `None` while no command has created
/// it (opening would create it).
pub fn journal_at(path: &Path) -> Option<Journal> {
    if !path.exists() {
        return None;
    }
    Some(Journal::open(path).unwrap_or_else(|e| panic!("open the journal: {e}")))
}

/// Whether this test run puts every world's store on PostgreSQL (`CLOSEOUT_TEST_STORE=postgres`):
/// `scripts/test.sh` runs the serve suite a second time so, for the store interface's two
/// backends. Any other value but unset or `sqlite` is refused.
pub fn store_from_env() -> bool {
    match std::env::var("CLOSEOUT_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("CLOSEOUT_TEST_STORE={other}: expected sqlite or postgres"),
    }
}

/// Point the config at `config_path` (whose `[store]` names `state/closeout.db`) at a new
/// database on the test binary's shared PostgreSQL cluster, the password in a file in `dir`,
/// claims expiring after 5 s (a restarted service takes its own events over quickly).
pub fn use_postgres_store(dir: &Path, config_path: &Path) -> closeout::config::StoreConfig {
    let (store, _, _) = new_postgres_database(dir);
    let config = std::fs::read_to_string(config_path).expect("config");
    std::fs::write(config_path, with_store(config, Some(&store))).expect("config");
    store
}

/// A new empty database on the shared PostgreSQL cluster: its store config, its URL and the
/// password file (written in `dir`).
pub fn new_postgres_database(dir: &Path) -> (closeout::config::StoreConfig, String, PathBuf) {
    let db = format!(
        "world_{}_{}",
        std::process::id(),
        closeout_testkit::free_port()
    );
    let pw = dir.join("pg-password");
    let url = closeout_testkit::PostgresServer::shared().new_database(&db, &pw);
    let store = closeout::config::StoreConfig::postgres(
        &url,
        closeout::config::PasswordSource::File(pw.clone()),
    );
    (store, url, pw)
}

/// `f` with a client of the PostgreSQL store `store` (its password from its file), for reading
/// what the store's API does not show; on a plain thread, as the client blocks on a runtime of
/// its own.
pub fn query_store<T: Send>(
    store: &closeout::config::StoreConfig,
    f: impl FnOnce(&mut postgres::Client) -> T + Send,
) -> T {
    let mut config: postgres::Config = store
        .url
        .as_deref()
        .expect("a PostgreSQL store")
        .parse()
        .expect("url");
    let file = store
        .password_file
        .as_ref()
        .expect("the password in a file");
    let password = std::fs::read_to_string(file).expect("password");
    config.password(password.trim_end());
    closeout::store::blocking::on_plain_thread(move || {
        let mut client = config.connect(postgres::NoTls).expect("connect");
        f(&mut client)
    })
}

/// The process id in the claim of an event being processed now in the PostgreSQL store, if one
/// is (`claimed_by` is "HOLDER (process PID on HOST)").
pub fn claiming_pid(store: &closeout::config::StoreConfig) -> Option<u32> {
    let row = query_store(store, |client| {
        client
            .query_opt(
                "SELECT claimed_by FROM event_queue WHERE status = 'processing' \
                 AND claimed_by IS NOT NULL ORDER BY seq LIMIT 1",
                &[],
            )
            .expect("query")
    });
    let by: String = row?.get(0);
    by.split("(process ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// A test config (naming the SQLite store `state/closeout.db`, as [`config_without_providers`]
/// writes it) with its `[store]` section replaced by `postgres`'s when there is one (the
/// password in a file, claims expiring after 5 s so a restarted service takes its own events
/// over quickly). For tests that rewrite their world's config.
pub fn with_store(config: String, postgres: Option<&closeout::config::StoreConfig>) -> String {
    let Some(store) = postgres else {
        return config;
    };
    let sqlite = "[store]\npath = \"state/closeout.db\"\n";
    assert!(config.contains(sqlite), "the config names its SQLite store");
    let section = format!(
        "[store]\nurl = \"{}\"\npassword_file = \"{}\"\nclaim_ttl_secs = 5\n",
        store.url.as_deref().expect("a PostgreSQL store"),
        store
            .password_file
            .as_ref()
            .expect("the password in a file")
            .display()
    );
    config.replace(sqlite, &section)
}

/// The journal of a store: the PostgreSQL one when `postgres` is set, else the SQLite file at
/// `path` (`None` when it does not exist).
pub fn store_journal(
    postgres: Option<&closeout::config::StoreConfig>,
    path: &Path,
) -> Option<Journal> {
    match postgres {
        Some(store) => Some(Journal::open_postgres(
            &closeout::store::pg::PgStore::open(store)
                .unwrap_or_else(|e| panic!("open the PostgreSQL store: {e}")),
        )),
        None => journal_at(path),
    }
}

/// More runs than any test makes: `Journal::runs` takes a limit.
const ALL_RUNS: usize = 10_000;

/// Every run in the journal at `path`, oldest first (empty when there is no journal).
pub fn runs_at(path: &Path) -> Vec<RunRecord> {
    oldest_first(journal_at(path))
}

/// Every run in the world's journal, oldest first (empty when there is no journal).
pub fn journal_runs(world: &World) -> Vec<RunRecord> {
    oldest_first(world.journal())
}

fn oldest_first(journal: Option<Journal>) -> Vec<RunRecord> {
    let Some(journal) = journal else {
        return Vec::new();
    };
    let mut runs = journal
        .runs(ALL_RUNS)
        .unwrap_or_else(|e| panic!("read the runs: {e}"));
    // `runs` lists the newest first.
    runs.reverse();
    runs
}

/// Every action in the world's journal (SQLite or PostgreSQL), in the order they started; an
/// error, not a panic, while the journal cannot be read yet.
pub fn world_actions(world: &World) -> Result<Vec<ActionRecord>, JournalError> {
    if world.postgres.is_none() {
        return actions_at(&world.journal_path());
    }
    match world.journal() {
        Some(journal) => actions_in_start_order(&journal),
        None => Ok(Vec::new()),
    }
}

/// Every action of every run in the journal at `path`, in the order they started (empty when
/// there is no journal). An error, not a panic, when the journal cannot be read: a test that
/// polls while `closeout` creates it treats that as nothing done yet.
pub fn actions_at(path: &Path) -> Result<Vec<ActionRecord>, JournalError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    actions_in_start_order(&Journal::open(path)?)
}

fn actions_in_start_order(journal: &Journal) -> Result<Vec<ActionRecord>, JournalError> {
    let mut actions = Vec::new();
    for run in journal.runs(ALL_RUNS)? {
        actions.extend(journal.actions(&run.id)?);
    }
    actions.sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
    Ok(actions)
}

/// Every action in the world's journal, in the order they started.
pub fn journal_actions(world: &World) -> Vec<ActionRecord> {
    world_actions(world).unwrap_or_else(|e| panic!("read the actions: {e}"))
}

/// More events than any test queues: `EventQueue::list` takes a limit.
const ALL_EVENTS: usize = 10_000;

/// Every event in the queue at `path` (the journal's database), newest first, read through the
/// store's API (empty when there is no database yet).
pub fn queued_events(path: &Path) -> Vec<QueuedEvent> {
    if !path.exists() {
        return Vec::new();
    }
    let queue = EventQueue::open(path).unwrap_or_else(|e| panic!("open the event queue: {e}"));
    queue
        .list(ALL_EVENTS, None)
        .unwrap_or_else(|e| panic!("read the event queue: {e}"))
}

/// Every event in a store's queue, newest first: the PostgreSQL one when `postgres` is set,
/// else the SQLite file at `path`.
pub fn store_events(
    postgres: Option<&closeout::config::StoreConfig>,
    path: &Path,
) -> Vec<QueuedEvent> {
    match postgres {
        Some(store) => EventQueue::open_config(store)
            .unwrap_or_else(|e| panic!("open the event queue: {e}"))
            .list(ALL_EVENTS, None)
            .unwrap_or_else(|e| panic!("read the event queue: {e}")),
        None => queued_events(path),
    }
}

/// Every recorded time-bound grant in the journal at `path`, with its identity (empty when there
/// is no journal).
pub fn grants_at(path: &Path) -> Vec<(String, GrantRecord)> {
    let Some(journal) = journal_at(path) else {
        return Vec::new();
    };
    journal
        .grants()
        .unwrap_or_else(|e| panic!("read the grants: {e}"))
}

/// The action keys of a plan (`closeout plan --format json`, or a run's stored `plan_json`).
pub fn plan_keys(plan: &serde_json::Value) -> Vec<String> {
    plan["stages"]
        .as_array()
        .expect("plan has stages")
        .iter()
        .flat_map(|s| s["actions"].as_array().expect("stage has actions").iter())
        .map(|a| a["key"].as_str().expect("action has a key").to_string())
        .collect()
}

/// The audit log's records, parsed (empty when there is no log), as `closeout audit export`
/// prints them: from the file on SQLite, from the store's table on PostgreSQL.
pub fn audit_records(world: &World) -> Vec<serde_json::Value> {
    store_audit_records(world.dir.path(), &world.config_path())
}

/// `closeout audit ARGS` in `dir` with the config at `config`; its stdout, after asserting it
/// succeeded.
pub fn audit_command(dir: &Path, config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_closeout"))
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .arg("audit")
        .args(args)
        .output()
        .expect("closeout audit");
    assert!(out.status.success(), "audit {args:?}: {}", describe(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The audit records `closeout audit export` prints for the config at `config` (run in `dir`).
pub fn store_audit_records(dir: &Path, config: &Path) -> Vec<serde_json::Value> {
    audit_command(dir, config, &["export"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Replicas on one PostgreSQL store wrote one audit chain, in the store's table: `closeout audit
/// verify` says so and passes, the exported `seq`s run 1..n with no gap, and no audit file was
/// written in `dir`.
pub fn assert_one_audit_chain_in_store(dir: &Path, config: &Path) {
    let out = audit_command(dir, config, &["verify"]);
    assert!(out.contains("table audit_log of PostgreSQL"), "{out}");
    assert!(out.contains("hash chain intact"), "{out}");
    let records = store_audit_records(dir, config);
    assert!(!records.is_empty(), "no audit record");
    let seqs: Vec<u64> = records
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
    assert!(
        !dir.join("state/audit.jsonl").exists(),
        "the audit log went to the file"
    );
}

/// The audit log's records at `path`, parsed (empty when there is no log).
pub fn audit_records_at(path: &Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Everything Closeout can change in the account, read back with the AWS SDK, as sorted
/// `what -> state` lines: users (tags, login profile, credentials and their status, MFA devices,
/// groups, policies), roles (tags, inline policies) and secrets (which version holds which
/// stage). Two equal snapshots mean nothing Closeout acts on was changed.
pub async fn account_snapshot(
    sdk: &aws_config::SdkConfig,
) -> std::collections::BTreeMap<String, String> {
    use std::collections::BTreeMap;
    let iam = aws_sdk_iam::Client::new(sdk);
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let mut s = BTreeMap::new();
    let users = iam
        .list_users()
        .max_items(1000)
        .send()
        .await
        .expect("list users")
        .users;
    for user in users {
        let u = user.user_name;
        let tags = iam
            .list_user_tags()
            .user_name(&u)
            .send()
            .await
            .expect("user tags")
            .tags;
        for t in tags {
            s.insert(format!("user/{u}/tag/{}", t.key), t.value);
        }
        let login = match iam.get_login_profile().user_name(&u).send().await {
            Ok(_) => "present",
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                "absent"
            }
            Err(e) => panic!("get login profile of {u}: {e:?}"),
        };
        s.insert(format!("user/{u}/login-profile"), login.to_string());
        let keys = iam
            .list_access_keys()
            .user_name(&u)
            .send()
            .await
            .expect("access keys")
            .access_key_metadata;
        for k in keys {
            s.insert(
                format!(
                    "user/{u}/access-key/{}",
                    k.access_key_id.unwrap_or_default()
                ),
                k.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            );
        }
        let ssh = iam
            .list_ssh_public_keys()
            .user_name(&u)
            .send()
            .await
            .expect("ssh keys")
            .ssh_public_keys
            .unwrap_or_default();
        for k in ssh {
            s.insert(
                format!("user/{u}/ssh-key/{}", k.ssh_public_key_id),
                k.status.as_str().to_string(),
            );
        }
        let certs = iam
            .list_signing_certificates()
            .user_name(&u)
            .send()
            .await
            .expect("signing certificates")
            .certificates;
        for c in certs {
            s.insert(
                format!("user/{u}/signing-certificate/{}", c.certificate_id),
                c.status.as_str().to_string(),
            );
        }
        let mfa = iam
            .list_mfa_devices()
            .user_name(&u)
            .send()
            .await
            .expect("mfa devices")
            .mfa_devices;
        for m in mfa {
            s.insert(
                format!("user/{u}/mfa/{}", m.serial_number),
                "enabled".into(),
            );
        }
        let groups = iam
            .list_groups_for_user()
            .user_name(&u)
            .send()
            .await
            .expect("groups")
            .groups;
        for g in groups {
            s.insert(format!("user/{u}/group/{}", g.group_name), "member".into());
        }
        let attached = iam
            .list_attached_user_policies()
            .user_name(&u)
            .send()
            .await
            .expect("attached policies")
            .attached_policies
            .unwrap_or_default();
        for p in attached {
            s.insert(
                format!(
                    "user/{u}/attached-policy/{}",
                    p.policy_arn.unwrap_or_default()
                ),
                "attached".into(),
            );
        }
        let inline = iam
            .list_user_policies()
            .user_name(&u)
            .send()
            .await
            .expect("inline policies")
            .policy_names;
        for p in inline {
            let doc = iam
                .get_user_policy()
                .user_name(&u)
                .policy_name(&p)
                .send()
                .await
                .expect("inline policy")
                .policy_document;
            s.insert(format!("user/{u}/inline-policy/{p}"), doc);
        }
    }
    let roles = iam
        .list_roles()
        .max_items(1000)
        .send()
        .await
        .expect("list roles")
        .roles;
    for role in roles {
        let r = role.role_name;
        let tags = iam
            .list_role_tags()
            .role_name(&r)
            .send()
            .await
            .expect("role tags")
            .tags;
        for t in tags {
            s.insert(format!("role/{r}/tag/{}", t.key), t.value);
        }
        let inline = iam
            .list_role_policies()
            .role_name(&r)
            .send()
            .await
            .expect("role policies")
            .policy_names;
        for p in inline {
            let doc = iam
                .get_role_policy()
                .role_name(&r)
                .policy_name(&p)
                .send()
                .await
                .expect("role policy")
                .policy_document;
            s.insert(format!("role/{r}/inline-policy/{p}"), doc);
        }
    }
    let secrets = sm
        .list_secrets()
        .max_results(100)
        .send()
        .await
        .expect("list secrets")
        .secret_list
        .unwrap_or_default();
    for secret in secrets {
        let name = secret.name.unwrap_or_default();
        let described = sm
            .describe_secret()
            .secret_id(&name)
            .send()
            .await
            .expect("describe secret");
        let mut versions: Vec<String> = described
            .version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .map(|(id, mut stages)| {
                stages.sort();
                format!("{id}={}", stages.join("+"))
            })
            .collect();
        versions.sort();
        s.insert(format!("secret/{name}/versions"), versions.join(" "));
    }
    s
}

/// The version id holding `stage` (e.g. `AWSCURRENT`) of a secret, from a snapshot.
pub fn secret_version(
    snapshot: &std::collections::BTreeMap<String, String>,
    name: &str,
    stage: &str,
) -> Option<String> {
    snapshot
        .get(&format!("secret/{name}/versions"))?
        .split(' ')
        .find_map(|v| {
            let (id, stages) = v.split_once('=')?;
            stages
                .split('+')
                .any(|s| s == stage)
                .then(|| id.to_string())
        })
}

/// Decode an IAM policy document as IAM returns it (URL-encoded).
pub fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replace the `[[rotation.policy]]` entries at the end of the config at `config` with `policy`.
pub fn set_rotation_policy(config: &std::path::Path, policy: &str) {
    let text = std::fs::read_to_string(config).expect("config");
    let base = text
        .split("\n[[rotation.policy]]")
        .next()
        .unwrap_or(&text)
        .to_string();
    std::fs::write(config, format!("{base}{policy}")).expect("write config");
}

/// (finding id, reason) of every due finding in a `rotate --due --format json` report.
pub fn due_of(report: &serde_json::Value) -> Vec<(String, String)> {
    report["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .flat_map(|i| i["due"].as_array().expect("due").iter())
        .map(|d| {
            (
                d["id"].as_str().unwrap_or_default().to_string(),
                d["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
