-- Closeout's PostgreSQL store, version 1: the event queue and the leases (docs/serve.md,
-- "Deployment"). Timestamps the caller supplies (effective_at, received_at, ...) are stored as
-- the SQLite store writes them (fixed-width RFC 3339 UTC text, compared as text); expiries of
-- claims and leases are timestamptz set from the database's clock, so replicas' clocks need not
-- agree.
CREATE TABLE event_queue (
    seq BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    identity TEXT NOT NULL,
    attributes_json TEXT NOT NULL,
    effective_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    not_before TEXT,
    priority BIGINT NOT NULL DEFAULT 0,
    claim_token TEXT,
    claimed_at TEXT,
    claimed_by TEXT,
    claim_expires_at TIMESTAMPTZ,
    run_id TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    message TEXT,
    finished_at TEXT,
    UNIQUE (source, external_id)
);
CREATE INDEX event_queue_by_status ON event_queue (status, effective_at);
CREATE INDEX event_queue_by_identity ON event_queue (identity, seq);
CREATE INDEX event_queue_by_run ON event_queue (run_id);
CREATE INDEX event_queue_claim_expiry ON event_queue (claim_expires_at) WHERE status = 'processing';

CREATE TABLE identity_leases (
    identity TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE leader_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    term BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
