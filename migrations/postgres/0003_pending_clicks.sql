-- Clicks flushed since they were last added into `links.clicks`. Every instance flushes its
-- counts here about once a second: this table holds only recently clicked codes, so a flush
-- touches a few hot pages, where updating `links` directly wrote a new version of one row of
-- the big table per clicked link. A background task in each instance moves the counts into
-- `links` in code order about once a minute. Reads see the sum through `links_with_clicks`.
CREATE TABLE pending_clicks (
    code   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    clicks BIGINT NOT NULL
);

-- Links with every click counted, moved into `links` or still pending.
CREATE VIEW links_with_clicks AS
SELECT l.code, l.url, l.created_at, l.clicks + COALESCE(p.clicks, 0) AS clicks,
       l.disabled_at, l.disabled_reason
FROM links AS l LEFT JOIN pending_clicks AS p ON p.code = l.code;
