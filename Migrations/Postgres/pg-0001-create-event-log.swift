extension PostgresMigrations {
    /// The log, its Merkle tree and the checkpoints signed over it: the same bytes as LMDB's
    /// `events`, `merkle-tree` and `signed-checkpoints`. The log refuses UPDATE, DELETE and
    /// TRUNCATE: it is append-only, and only a superuser who drops the trigger can say otherwise.
    static let createEventLog = """
        CREATE TABLE events (
            position bigint PRIMARY KEY CHECK (position > 0),
            record bytea NOT NULL
        );
        CREATE TABLE merkle_nodes (
            level smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
            index bigint NOT NULL CHECK (index >= 0),
            hash bytea NOT NULL CHECK (length(hash) = 32),
            PRIMARY KEY (level, index)
        );
        CREATE TABLE signed_checkpoints (
            size bigint PRIMARY KEY CHECK (size > 0),
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
