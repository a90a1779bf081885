-- Clicks flushed since they were last added into `links.clicks`, one row per code per flush,
-- in place of `pending_clicks`. Appending a row costs Postgres less than half of what an
-- upsert into a table keyed by code does (no speculative insertion, no update of an existing
-- row): with traffic spread over many links nearly every clicked code is written once a second.
-- A code may have many rows here; reads add them up through the index, and the flusher moves
-- them into `links` about once a minute, as before. Postgres only: SQLite keeps
-- `pending_clicks`, where one writer makes the upsert cheap.
CREATE TABLE click_log (
    code   TEXT COLLATE "C" NOT NULL,
    clicks BIGINT NOT NULL
);
CREATE INDEX click_log_code ON click_log (code);

-- During a rolling upgrade, instances of the previous version still write their counts to
-- `pending_clicks` (and move them from there). Each row they write goes to the log instead, so
-- no count waits in a table that nothing reads any more. The trigger comes first: creating it
-- waits for writes already under way, and holds new ones until this migration commits, so the
-- rows moved below are all there are.
CREATE FUNCTION pending_clicks_to_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO click_log (code, clicks) VALUES (NEW.code, NEW.clicks);
    RETURN NULL;
END
$$;
CREATE TRIGGER pending_clicks_to_log BEFORE INSERT ON pending_clicks
    FOR EACH ROW EXECUTE FUNCTION pending_clicks_to_log();

INSERT INTO click_log (code, clicks) SELECT code, clicks FROM pending_clicks;
DELETE FROM pending_clicks;

-- Links with every click counted, moved into `links` or still in the log.
CREATE OR REPLACE VIEW links_with_clicks AS
SELECT l.code, l.url, l.created_at,
       l.clicks + COALESCE((SELECT SUM(c.clicks) FROM click_log AS c WHERE c.code = l.code), 0)::bigint
           AS clicks,
       l.disabled_at, l.disabled_reason
FROM links AS l;
