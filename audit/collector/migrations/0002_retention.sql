-- SPDX-License-Identifier: Apache-2.0
-- Retention (collector.yaml retention): day partitions of records older
-- than the retention are dropped whole. Before a partition is dropped, the
-- RFC 6962 leaf hash of each of its records (SHA-256 of 0x00 and the
-- record's bytes) is kept here, so the tree of every log can still be
-- rebuilt and proofs over the dropped range still verify.
CREATE TABLE leaf_hashes (
    origin text NOT NULL,
    seq    bigint NOT NULL,
    hash   bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (origin, seq)
);

-- Each dropped partition: which day, how many records, when.
CREATE TABLE dropped_partitions (
    name       text PRIMARY KEY,
    day        date NOT NULL,
    records    bigint NOT NULL,
    dropped_at timestamptz NOT NULL DEFAULT now()
);
