-- Closeout's PostgreSQL store, version 4: the SCIM Users (src/intake/scim/store.rs), as in the
-- SQLite store's tables of the same names. `seq` keeps the creation order that lists follow (the
-- SQLite table's rowid); timestamps are the SQLite store's fixed-width RFC 3339 UTC text; `doc` is
-- the User's JSON document as text. (Version 3 is the audit log's.)
CREATE TABLE scim_users (
    seq BIGSERIAL NOT NULL UNIQUE,
    id TEXT PRIMARY KEY,
    user_name_lc TEXT NOT NULL UNIQUE,
    external_id TEXT,
    version BIGINT NOT NULL,
    created TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX scim_users_external_id ON scim_users (external_id);

-- How many Users were ever created with a userName: a new User's id is derived from it, so a
-- POST retried after a rolled-back commit gets the same id (and so the same event id).
CREATE TABLE scim_user_names (
    user_name_lc TEXT PRIMARY KEY,
    created BIGINT NOT NULL
);
