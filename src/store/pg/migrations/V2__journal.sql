-- Closeout's PostgreSQL store, version 2: the run journal (runs, their graphs and approvals,
-- actions), observations and the grant ledger, as in the SQLite store's schema
-- (src/store/sqlite.rs). Timestamps are the SQLite store's fixed-width RFC 3339 UTC text.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    trigger TEXT NOT NULL,
    playbook TEXT NOT NULL,
    playbook_digest TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    effective_at TEXT NOT NULL,
    cutoff TEXT NOT NULL,
    contained_at TEXT,
    finished_at TEXT,
    override_protected BOOLEAN NOT NULL DEFAULT FALSE,
    plan_json TEXT NOT NULL,
    report_json TEXT,
    approved_by TEXT,
    approved_at TEXT,
    started_by TEXT,
    started_os_user TEXT
);
CREATE INDEX runs_by_identity ON runs (identity, created_at);

CREATE TABLE run_graphs (
    run_id TEXT NOT NULL REFERENCES runs (id),
    which TEXT NOT NULL,
    graph_json TEXT NOT NULL,
    PRIMARY KEY (run_id, which)
);

CREATE TABLE approvals (
    run_id TEXT NOT NULL REFERENCES runs (id),
    approver TEXT NOT NULL,
    method TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    PRIMARY KEY (run_id, approver)
);

CREATE TABLE actions (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    stage TEXT NOT NULL,
    step TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    verb TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    detail TEXT,
    state TEXT,
    error TEXT,
    provider_calls TEXT,
    last_started_at TEXT
);
CREATE INDEX actions_by_run ON actions (run_id);
CREATE INDEX actions_by_finding ON actions (finding_id, finished_at);

CREATE TABLE observations (
    finding_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    first_seen TEXT NOT NULL
);

CREATE TABLE grants (
    identity TEXT NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    rule TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (identity, provider, kind, target)
);
CREATE INDEX grants_by_expiry ON grants (expires_at);
