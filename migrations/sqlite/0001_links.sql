-- Links, keyed by their short code. Disabled links stay as tombstones so a code is never
-- handed out twice. Timestamps are RFC 3339 text in UTC, millisecond precision.
CREATE TABLE links (
    code            TEXT    NOT NULL PRIMARY KEY,
    url             TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    clicks          INTEGER NOT NULL DEFAULT 0,
    disabled_at     TEXT,
    disabled_reason TEXT
) WITHOUT ROWID;
