-- Closeout's PostgreSQL store, version 3: the audit log (src/store/audit.rs, docs/audit.md) as
-- one hash chain for every replica. `line` is the record exactly as the JSON-lines file holds it
-- (canonical JSON, hash and signature included); the other columns repeat some of its fields for
-- queries, and `closeout audit verify` checks they agree with it. `seq` is assigned by the
-- appending transaction, which holds an advisory lock, reads the last row and the head, and
-- writes the new row and the head together. `audit_head` (one row) plays the head file's part:
-- the last record's seq and hash, signed, so a deleted last row is detected.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    run TEXT,
    identity TEXT,
    hash TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX audit_log_by_run ON audit_log (run, seq);

CREATE TABLE audit_head (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    key TEXT,
    sig TEXT
);
