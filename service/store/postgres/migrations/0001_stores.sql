-- Every store of the service, for several replicas sharing one database.

-- Decisions: the application id is claimed by UNIQUE; the exact bytes answered are kept.
CREATE TABLE decisions (
    decision_id    text PRIMARY KEY,
    application_id text NOT NULL UNIQUE,
    body_sha256    bytea NOT NULL,
    outcome        text NOT NULL,
    product        text NOT NULL,
    arm            text NOT NULL,
    decided_at     timestamptz NOT NULL,
    response       bytea NOT NULL,
    trace          bytea COMPRESSION lz4 NOT NULL,  -- ≈ 10 KB of JSON; lz4 over pglz: 380 vs 460 µs of database CPU per decision
    shadow         bytea NOT NULL DEFAULT '\x5b5d'
);
CREATE INDEX decisions_decided_at ON decisions (decided_at);

-- Claims of applications being decided, so that racing copies on other replicas wait for the
-- first instead of calling the providers again. UNLOGGED: a claim costs no WAL and no fsync;
-- after a crash the table is empty, and the decisions' UNIQUE constraint still holds.
CREATE UNLOGGED TABLE decision_claims (
    application_id text PRIMARY KEY,
    body_sha256    bytea NOT NULL,
    replica        text NOT NULL,
    expires_at     timestamptz NOT NULL
);

-- One round trip before the providers are called: the stored decision ('stored' and its row),
-- or a claim won ('ours') or held by a live replica ('elsewhere'). A claim found free is
-- checked again against decisions, since its holder removes it when it commits the decision.
CREATE FUNCTION decision_claim(p_id text, p_digest bytea, p_replica text, p_ttl float8)
RETURNS TABLE (status text, decision_id text, application_id text, body_sha256 bytea, outcome text,
               product text, arm text, decided_at timestamptz, response bytea, trace bytea, shadow bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    won boolean;
BEGIN
    RETURN QUERY SELECT 'stored', d.* FROM decisions d WHERE d.application_id = p_id;
    IF FOUND THEN
        RETURN;
    END IF;
    SET LOCAL synchronous_commit = off;  -- a claim is worth no fsync
    INSERT INTO decision_claims AS c (application_id, body_sha256, replica, expires_at)
    VALUES (p_id, p_digest, p_replica, clock_timestamp() + make_interval(secs => p_ttl))
    ON CONFLICT (application_id) DO UPDATE
       SET body_sha256 = EXCLUDED.body_sha256, replica = EXCLUDED.replica, expires_at = EXCLUDED.expires_at
     WHERE c.expires_at < clock_timestamp()
    RETURNING true INTO won;
    IF won IS NULL THEN
        status := 'elsewhere';
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'stored', d.* FROM decisions d WHERE d.application_id = p_id;
    IF NOT FOUND THEN
        status := 'ours';
        RETURN NEXT;
    END IF;
END $$;

-- Velocity events, one partition per day (UTC): dropping a day older than the longest window
-- is a DROP TABLE, not a DELETE. The default partition catches events if maintenance lagged.
CREATE TABLE velocity_events (
    key            bytea NOT NULL,
    at             timestamptz NOT NULL,
    application_id text NOT NULL,
    PRIMARY KEY (key, at, application_id)
) PARTITION BY RANGE (at);
CREATE TABLE velocity_events_default PARTITION OF velocity_events DEFAULT;

-- Creates the partitions from yesterday to `ahead` days on and drops those wholly older than
-- `keep_days`. Idempotent; replicas call it at start and every hour, one at a time.
CREATE FUNCTION velocity_maintain(keep_days int, ahead int DEFAULT 3) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
    part record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('velocity_maintain'));
    FOR i IN -1 .. ahead LOOP
        day := today + i;
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF velocity_events '
                       'FOR VALUES FROM (%L) TO (%L)', 'velocity_events_' || to_char(day, 'YYYYMMDD'),
                       day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'velocity_events'::regclass AND c.relname ~ '^velocity_events_\d{8}$'
                  AND to_date(right(c.relname, 8), 'YYYYMMDD') < today - keep_days LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
    END LOOP;
END $$;

-- Counts and records a batch of applications' velocity events in one call, in their order,
-- each seeing the ones before it. p_keys[i] is one identifier's keyed hash of application
-- p_apps[i]; the keys are locked (sorted, so two batches never deadlock) before the clock is
-- read, so events of one identifier are serialised across replicas exactly as SQLite's
-- BEGIN IMMEDIATE serialises them in one file. The clock is the database's: replicas' clocks
-- may differ (p_now: a test's clock).
--
-- One index read per identifier: its latest cap + 1 events within the longest window. The
-- windows are nested and end now, so each window's events are a prefix of that list: counting
-- them there is exact up to cap, and cap + 1 (shown as cap) beyond. Hot identifiers stay
-- bounded. A retry of an application is found in the same list, and counts neither itself nor
-- twice.
CREATE FUNCTION velocity_count_and_record(p_keys bytea[], p_apps text[], windows float8[], cap int,
                                          p_now timestamptz DEFAULT NULL)
RETURNS TABLE (idx int, counts int[])
LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
    t timestamptz;
    prior timestamptz;
    recent timestamptz[];
    longest float8 := (SELECT max(w) FROM unnest(windows) w);
BEGIN
    FOR k IN SELECT DISTINCT hashtextextended(encode(x, 'hex'), 0) AS h FROM unnest(p_keys) x ORDER BY h LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    t := coalesce(p_now, clock_timestamp());
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        SELECT array_agg(e.at), max(e.at) FILTER (WHERE e.application_id = p_apps[i])
          INTO recent, prior
          FROM (SELECT at, application_id FROM velocity_events
                 WHERE key = p_keys[i] AND at > t - make_interval(secs => longest)
                 ORDER BY at DESC LIMIT cap + 1) e;
        idx := i;
        counts := ARRAY(SELECT least((SELECT count(*) FROM unnest(recent) r WHERE r > t - make_interval(secs => w))
                                     - (prior IS NOT NULL AND prior > t - make_interval(secs => w))::int, cap)
                          FROM unnest(windows) WITH ORDINALITY AS x(w, n) ORDER BY n);
        IF prior IS NULL THEN
            INSERT INTO velocity_events (key, at, application_id) VALUES (p_keys[i], t, p_apps[i]);
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- Lists: entries by keyed hash, IP entries as 16-byte ranges, and the audit trail, which every
-- change writes in its own transaction.
CREATE TABLE list_entries (
    list text NOT NULL, key bytea NOT NULL, masked text NOT NULL, added_at timestamptz NOT NULL,
    PRIMARY KEY (list, key)
);
CREATE TABLE list_ip_ranges (
    list text NOT NULL, lo bytea NOT NULL, hi bytea NOT NULL, entry text NOT NULL,
    added_at timestamptz NOT NULL, PRIMARY KEY (list, lo, hi)
);
CREATE TABLE list_audit (
    id bigserial PRIMARY KEY, list text NOT NULL, action text NOT NULL, entry text NOT NULL,
    actor text NOT NULL, key_id text NOT NULL, reason text NOT NULL, at timestamptz NOT NULL
);
CREATE INDEX list_audit_list ON list_audit (list, id);

-- Whitelist versions: each import is one table, loaded and published in one transaction, so
-- an import that dies leaves nothing behind and the previous version serving.
CREATE TABLE whitelist_versions (
    version     int PRIMARY KEY,
    rows        bigint NOT NULL,
    source      text NOT NULL,
    keys_sha256 text NOT NULL,
    imported_at timestamptz NOT NULL
);
CREATE TABLE whitelist_active (
    only_one boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    version  int NOT NULL REFERENCES whitelist_versions
);
