//! `closeout source diff OLD NEW [--submit]` with the real binary: the diff of two small CSV
//! exports, nothing written without `--submit`, and a second submit of the same diff stores
//! nothing (read back through the store's event queue API). No emulator: the configured Vault
//! address is a closed port that the command must never contact.

use crate::common;

use closeout::event::EventSource;
use closeout::store::queue::QueueStatus;
use closeout::trigger::Trigger;
use common::{config_without_providers, json, stderr, stdout, REPO};
use std::path::Path;
use std::process::{Command, Output};

const HEADER: &str =
    "id,email,name,kind,status,manager,department,role,location,employment_type,tags";

const OLD: &[&str] = &[
    "E1,a@x.io,A,human,active,E9,eng,dev,London,full-time,",
    "E2,b@x.io,B,human,active,E9,eng,dev,London,full-time,",
    "E3,c@x.io,C,human,active,E9,eng,dev,London,full-time,",
    "E4,d@x.io,D,human,active,E9,eng,dev,London,full-time,",
    "E5,e@x.io,E,human,active,E9,eng,dev,London,full-time,",
];

const NEW: &[&str] = &[
    "E1,a@x.io,A,human,active,E9,eng,dev,London,full-time,",
    "E2,b@x.io,B,human,terminated,E9,eng,dev,London,full-time,",
    "E3,c@x.io,C,human,active,E9,sales,dev,Lisbon,full-time,",
    "E5,e@x.io,E,human,suspended,E9,eng,dev,London,full-time,",
    "E6,f@x.io,F,human,active,E9,ops,sre,Berlin,contractor,",
];

fn write_csv(path: &Path, rows: &[&str]) {
    let mut text = format!("{HEADER}\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write csv");
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().expect("temp dir");
        write_csv(&dir.path().join("old.csv"), OLD);
        write_csv(&dir.path().join("new.csv"), NEW);
        let config = format!(
            "{}\n[providers.vault]\naddress = \"http://127.0.0.1:9\"\n",
            config_without_providers(&format!("{REPO}/playbooks"))
        );
        std::fs::write(dir.path().join("closeout.toml"), config).expect("config");
        Dir(dir)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_closeout"))
            .current_dir(self.0.path())
            .arg("--config")
            .arg(self.0.path().join("closeout.toml"))
            .args(["source", "diff", "old.csv", "new.csv"])
            .args(args)
            .output()
            .expect("run closeout")
    }

    fn db(&self) -> std::path::PathBuf {
        self.0.path().join("state/closeout.db")
    }
}

#[test]
fn the_diff_is_printed_and_nothing_is_written() {
    let dir = Dir::new();
    let out = dir.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("E2") && lines[0].contains("leaver"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("E3") && lines[1].contains("mover"),
        "{text}"
    );
    assert!(
        lines[1].contains(r#"department="sales" (was "eng")"#)
            && lines[1].contains(r#"location="Lisbon""#),
        "{text}"
    );
    assert!(
        lines[2].starts_with("E4") && lines[2].contains("absent from NEW"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("E6") && lines[3].contains("joiner"),
        "{text}"
    );
    assert!(lines[4].starts_with("warning: E5: suspended"), "{text}");
    assert_eq!(lines.len(), 5, "{text}");
    assert!(!dir.0.path().join("state").exists(), "nothing written");

    let out = dir.run(&["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out);
    let events = doc["events"].as_array().expect("events");
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["event"]["identity"].as_str().unwrap_or(""),
                e["event"]["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("E2", "leaver"),
            ("E3", "mover"),
            ("E4", "leaver"),
            ("E6", "joiner")
        ]
    );
    assert_eq!(events[1]["event"]["attributes"]["department"], "sales");
    assert!(events[1]["event"]["attributes"].get("role").is_none());
    assert_eq!(
        events[3]["event"]["attributes"]["employment_type"],
        "contractor"
    );
    assert_eq!(doc["warnings"][0]["identity"], "E5");
    assert!(doc.get("submitted").is_none());
}

#[test]
fn submitting_twice_stores_each_event_once() {
    let dir = Dir::new();
    let out = dir.run(&["--submit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("submitted 4 event(s)")
            && stdout(&out).contains("4 new, 0 duplicate(s)"),
        "{}",
        stdout(&out)
    );
    let out = dir.run(&["--submit", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["submitted"]["new"], 0);
    assert_eq!(doc["submitted"]["duplicates"], 4);

    let mut rows: Vec<(EventSource, Trigger, String, QueueStatus)> =
        common::queued_events(&dir.db())
            .into_iter()
            .map(|e| (e.event.source, e.event.kind, e.event.identity, e.status))
            .collect();
    rows.sort_by(|a, b| a.2.cmp(&b.2));
    let expect = |id: &str, kind: Trigger| {
        (
            EventSource::HrDiff,
            kind,
            id.to_string(),
            QueueStatus::Pending,
        )
    };
    assert_eq!(
        rows,
        vec![
            expect("E2", Trigger::Leaver),
            expect("E3", Trigger::Mover),
            expect("E4", Trigger::Leaver),
            expect("E6", Trigger::Joiner),
        ]
    );
}

#[test]
fn bad_input_exits_2_with_the_file_and_line() {
    let dir = Dir::new();
    write_csv(
        &dir.0.path().join("new.csv"),
        &["E1,a@x.io,A,human,inactive,,,,,,"],
    );
    let out = dir.run(&["--submit"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("new.csv:2: unknown status \"inactive\""),
        "{}",
        stderr(&out)
    );
    assert!(!dir.db().exists(), "nothing written on bad input");

    let out = dir.run(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["exit_code"], 2);

    // --submit needs a valid config.
    let dir = Dir::new();
    std::fs::write(dir.0.path().join("closeout.toml"), "[source\n").expect("config");
    let out = dir.run(&["--submit"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!dir.db().exists());
}

/// A fresh database on the binary's shared PostgreSQL cluster, and a `[store]` section naming it
/// with the password in a file (never in the URL).
fn postgres_store(dir: &Path, name: &str) -> (String, String) {
    let pw = dir.join("pg-password");
    let url = closeout_testkit::PostgresServer::shared()
        .new_database(&format!("diff_{name}_{}", std::process::id()), &pw);
    let section = format!(
        "[store]\nurl = \"{url}\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    (section, url)
}

#[test]
fn submitting_to_a_postgres_store_stores_each_event_once() {
    let dir = Dir::new();
    let (section, url) = postgres_store(dir.0.path(), "submit");
    let config_path = dir.0.path().join("closeout.toml");
    let config = std::fs::read_to_string(&config_path).expect("config");
    let config = config.replace("[store]\npath = \"state/closeout.db\"\n", &section);
    std::fs::write(&config_path, &config).expect("config");
    let out = dir.run(&["--submit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("4 new, 0 duplicate(s)") && text.contains("to postgres postgres@127.0.0.1:"),
        "{text}"
    );
    let out = dir.run(&["--submit", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["submitted"]["duplicates"], 4);
    assert!(!dir.db().exists(), "nothing went to SQLite");
    // Read back through the store's API, as another process would.
    let store = closeout::config::StoreConfig::postgres(
        &url,
        closeout::config::PasswordSource::File(dir.0.path().join("pg-password")),
    );
    let queue =
        closeout::store::queue::EventQueue::open_config(&store).expect("open the PostgreSQL queue");
    let mut rows: Vec<(String, Trigger, QueueStatus)> = queue
        .list(100, None)
        .expect("list")
        .into_iter()
        .map(|e| (e.event.identity, e.event.kind, e.status))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("E2".into(), Trigger::Leaver, QueueStatus::Pending),
            ("E3".into(), Trigger::Mover, QueueStatus::Pending),
            ("E4".into(), Trigger::Leaver, QueueStatus::Pending),
            ("E6".into(), Trigger::Joiner, QueueStatus::Pending),
        ]
    );

    assert!(!dir.db().exists(), "nothing went to SQLite");
}
