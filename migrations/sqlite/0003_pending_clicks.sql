-- Clicks flushed since they were last added into `links.clicks`. The service flushes its
-- counts here about once a second: this table holds only recently clicked codes, so it stays
-- in the page cache and a flush rewrites a few of its pages, where updating `links` directly
-- rewrote one page of the big table per clicked link. A background task moves the counts into
-- `links` in code order about once a minute. Reads see the sum through `links_with_clicks`.
CREATE TABLE pending_clicks (
    code   TEXT    NOT NULL PRIMARY KEY,
    clicks INTEGER NOT NULL
) WITHOUT ROWID;

-- Links with every click counted, moved into `links` or still pending.
CREATE VIEW links_with_clicks AS
SELECT l.code, l.url, l.created_at, l.clicks + COALESCE(p.clicks, 0) AS clicks,
       l.disabled_at, l.disabled_reason
FROM links AS l LEFT JOIN pending_clicks AS p ON p.code = l.code;
