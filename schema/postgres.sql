-- presenced: the OpenSIPS 3.x presence tables (presentity, active_watchers, watchers,
-- xcap) and auth_db's subscriber table (accounts, HA1s only),
-- for PostgreSQL, with their `version` rows, so `presenced dump --dialect postgres`
-- loads into them and a database OpenSIPS filled can be restored into presenced.
--
-- Columns, types and unique keys are OpenSIPS 3.x's. The columns after the
-- "presenced extensions" marker in each table are ours: they hold what presenced needs
-- to resume a subscription exactly (and what a full SIP URI cannot be rebuilt from
-- username@domain); they are nullable or defaulted, so OpenSIPS's own INSERTs load
-- unchanged. `presenced dump --opensips` leaves them out, for OpenSIPS's own schema.
-- Status integers: 1 active, 2 pending, 3 terminated, 4 waiting.

CREATE TABLE IF NOT EXISTS version (
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT t_name_idx UNIQUE (table_name)
);

INSERT INTO version (table_name, table_version) VALUES ('presentity', '5');
CREATE TABLE presentity (
    id SERIAL PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(64) NOT NULL,
    event VARCHAR(64) NOT NULL,
    etag VARCHAR(64) NOT NULL,
    expires INTEGER NOT NULL,
    received_time INTEGER NOT NULL,
    body BYTEA DEFAULT NULL,
    extra_hdrs BYTEA DEFAULT NULL,
    sender VARCHAR(255) DEFAULT NULL,
    -- presenced extensions
    presentity_uri VARCHAR(255) DEFAULT NULL,
    content_type VARCHAR(128) DEFAULT NULL,
    priority BIGINT DEFAULT 0 NOT NULL,
    CONSTRAINT presentity_presentity_idx UNIQUE (username, domain, event, etag)
);

INSERT INTO version (table_name, table_version) VALUES ('active_watchers', '12');
CREATE TABLE active_watchers (
    id SERIAL PRIMARY KEY NOT NULL,
    presentity_uri VARCHAR(255) NOT NULL,
    watcher_username VARCHAR(64) NOT NULL,
    watcher_domain VARCHAR(64) NOT NULL,
    to_user VARCHAR(64) NOT NULL,
    to_domain VARCHAR(64) NOT NULL,
    event VARCHAR(64) DEFAULT 'presence' NOT NULL,
    event_id VARCHAR(64),
    to_tag VARCHAR(64) NOT NULL,
    from_tag VARCHAR(64) NOT NULL,
    callid VARCHAR(64) NOT NULL,
    local_cseq INTEGER NOT NULL,
    remote_cseq INTEGER NOT NULL,
    contact VARCHAR(255) NOT NULL,
    record_route TEXT,
    expires INTEGER NOT NULL,
    status INTEGER DEFAULT 2 NOT NULL,
    reason VARCHAR(64),
    version INTEGER DEFAULT 0 NOT NULL,
    socket_info VARCHAR(64) NOT NULL,
    local_contact VARCHAR(255) NOT NULL,
    sharing_tag VARCHAR(32) DEFAULT NULL,
    -- presenced extensions
    watcher_uri VARCHAR(255) DEFAULT NULL,
    to_uri VARCHAR(255) DEFAULT NULL,
    transport_peer VARCHAR(128) DEFAULT NULL,
    user_agent VARCHAR(255) DEFAULT NULL,
    accept TEXT,
    CONSTRAINT active_watchers_active_watchers_idx UNIQUE (presentity_uri, callid, to_tag, from_tag)
);

INSERT INTO version (table_name, table_version) VALUES ('watchers', '4');
CREATE TABLE watchers (
    id SERIAL PRIMARY KEY NOT NULL,
    presentity_uri VARCHAR(255) NOT NULL,
    watcher_username VARCHAR(64) NOT NULL,
    watcher_domain VARCHAR(64) NOT NULL,
    event VARCHAR(64) DEFAULT 'presence' NOT NULL,
    status INTEGER NOT NULL,
    reason VARCHAR(64),
    inserted_time INTEGER NOT NULL,
    -- presenced extensions
    watcher_uri VARCHAR(255) DEFAULT NULL,
    CONSTRAINT watchers_watcher_idx UNIQUE (presentity_uri, watcher_username, watcher_domain, event)
);

INSERT INTO version (table_name, table_version) VALUES ('xcap', '4');
CREATE TABLE xcap (
    id SERIAL PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(64) NOT NULL,
    doc BYTEA NOT NULL,
    doc_type INTEGER NOT NULL,
    etag VARCHAR(64) NOT NULL,
    source INTEGER NOT NULL,
    doc_uri VARCHAR(255) NOT NULL,
    port INTEGER NOT NULL,
    CONSTRAINT xcap_account_doc_type_idx UNIQUE (username, domain, doc_type, doc_uri)
);

CREATE INDEX xcap_source_idx ON xcap (source);

INSERT INTO version (table_name, table_version) VALUES ('subscriber', '8');
CREATE TABLE subscriber (
    id SERIAL PRIMARY KEY NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(25) DEFAULT '' NOT NULL,
    email_address VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(64) DEFAULT '' NOT NULL,
    ha1_sha256 VARCHAR(64) DEFAULT '' NOT NULL,
    ha1_sha512t256 VARCHAR(64) DEFAULT '' NOT NULL,
    rpid VARCHAR(64) DEFAULT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
);

CREATE INDEX subscriber_username_idx ON subscriber (username);
