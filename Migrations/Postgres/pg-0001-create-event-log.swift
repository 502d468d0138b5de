extension PostgresMigrations {
    /// The log, its Merkle tree and the checkpoints signed over it: the same bytes as LMDB's
    /// `events`, `merkle-tree` and `signed-checkpoints`. A node is keyed, as in LMDB, by the
    /// position of its last leaf and its level, so every append lands at the index's right edge
    /// and a walk in key order visits the nodes in the order appends complete them. The log refuses UPDATE, DELETE and
    /// TRUNCATE: it is append-only, and only the table's owner or a superuser, by disabling the trigger,
    /// can say otherwise (give `serve` a role that does not own the tables to rule that out too).
    static let createEventLog = """
        CREATE TABLE events (
            position bigint PRIMARY KEY CHECK (position > 0),
            record bytea NOT NULL
        );
        CREATE TABLE merkle_nodes (
            last_leaf bigint NOT NULL CHECK (last_leaf > 0),
            level smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
            hash bytea NOT NULL CHECK (length(hash) = 32),
            PRIMARY KEY (last_leaf, level)
        );
        CREATE TABLE signed_checkpoints (
            size bigint PRIMARY KEY CHECK (size >= 0),
            note text NOT NULL
        );
        CREATE FUNCTION upload_coordinator_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
        END $$;
        CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION upload_coordinator_refuse_change();
        CREATE TRIGGER merkle_nodes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON merkle_nodes
            FOR EACH STATEMENT EXECUTE FUNCTION upload_coordinator_refuse_change();
        CREATE TRIGGER signed_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON signed_checkpoints
            FOR EACH STATEMENT EXECUTE FUNCTION upload_coordinator_refuse_change();
        """
}
