-- The prompt registry: immutable versions (numbered per prompt, named by
-- their content hash), movable labels, and every change in order (who,
-- what, when; its number is the registry's change sequence).
CREATE TABLE prompt_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    hash TEXT NOT NULL,
    content TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    note TEXT,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX prompt_versions_hash ON prompt_versions (name, hash);
CREATE TABLE prompt_labels (
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (name, label)
);
CREATE TABLE prompt_events (
    seq BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    what TEXT NOT NULL,
    version BIGINT,
    label TEXT,
    ts_ms BIGINT NOT NULL,
    by_whom TEXT NOT NULL
);
CREATE INDEX prompt_events_name ON prompt_events (name, seq);
