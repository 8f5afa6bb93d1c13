-- SPDX-License-Identifier: Apache-2.0
-- The collector's schema, version 1. Every table is keyed or filtered by
-- origin (the log id "tollgate/<host-id>/<epoch>"): the distribution column
-- when the store grows onto Citus.

-- Hosts enrolled with a single-use token: one log (origin) and its
-- checkpoint key per host name. The credential is stored hashed.
CREATE TABLE hosts (
    name            text PRIMARY KEY,
    origin          text NOT NULL UNIQUE,
    public_key      text NOT NULL,
    credential_hash bytea NOT NULL UNIQUE,
    enrolled_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE enrollment_tokens (
    token_hash  bytea PRIMARY KEY,
    host        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

-- What the collector holds of each log: its size, the compact range of
-- its Merkle tree (the 32-byte hashes of the perfect subtrees covering
-- [0, size), left to right), the newest checkpoint accepted and when the
-- host was last heard. halted is set when misbehavior was proven: no more
-- entries are accepted until an operator looks.
CREATE TABLE log_state (
    origin        text PRIMARY KEY REFERENCES hosts (origin),
    size          bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    compact_range bytea NOT NULL DEFAULT ''::bytea,
    checkpoint    bytea,
    last_seen     timestamptz NOT NULL DEFAULT now(),
    silent_since  timestamptz,
    halted        text
);

-- Every checkpoint accepted, as the host signed it, with the collector's
-- cosignature line (C2SP cosignature/v1).
CREATE TABLE checkpoints (
    origin      text NOT NULL,
    size        bigint NOT NULL,
    root        bytea NOT NULL,
    note        bytea NOT NULL,
    cosignature text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, size)
);

-- The records, exactly as the host stored them (data), with the fields
-- queries filter on. Partitioned by day on the record's time; the service
-- creates the partitions it needs.
CREATE TABLE records (
    origin      text NOT NULL,
    seq         bigint NOT NULL,
    time        timestamptz NOT NULL,
    kind        text NOT NULL,
    identity    text,
    target      text,
    session     text,
    fingerprint text,
    decision    text,
    data        bytea NOT NULL
) PARTITION BY RANGE (time);

CREATE INDEX records_origin_seq ON records (origin, seq);
CREATE INDEX records_identity ON records (identity, time) WHERE identity IS NOT NULL;
CREATE INDEX records_target ON records (target, time) WHERE target IS NOT NULL;
CREATE INDEX records_session ON records (session) WHERE session IS NOT NULL;
CREATE INDEX records_time_brin ON records USING brin (time);

-- Proven or observed misbehavior of a host's log: fork (a signed tree
-- inconsistent with the stored one), rollback (a smaller tree signed later),
-- silence. Checkpoints are the signed notes that prove it.
CREATE TABLE misbehavior (
    id                bigserial PRIMARY KEY,
    origin            text NOT NULL,
    kind              text NOT NULL,
    detail            text NOT NULL,
    stored_checkpoint bytea,
    new_checkpoint    bytea,
    evidence          bytea,
    detected_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX misbehavior_origin ON misbehavior (origin, detected_at);
