-- Closeout's PostgreSQL store, version 5: the copy of the HR export the file-source scheduler
-- diffed last (src/store/snapshot.rs). In the database so that the replica that becomes leader
-- diffs against what the previous leader saw, on whatever host it runs.
CREATE TABLE source_snapshot (
    name TEXT PRIMARY KEY,
    content BYTEA NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
