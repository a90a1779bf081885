-- Links, keyed by their short code. Disabled links stay as tombstones so a code is never
-- handed out twice. "C" collation: codes sort in byte order, as in SQLite.
CREATE TABLE links (
    code            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    url             TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    clicks          BIGINT      NOT NULL DEFAULT 0,
    disabled_at     TIMESTAMPTZ,
    disabled_reason TEXT
);
