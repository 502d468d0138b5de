extension PostgresMigrations {
    /// The projection tables as LMDB keeps them: one row per (table, key), the key and the record
    /// as bytes. bytea compares as unsigned bytes, a prefix first, as LMDB's keys do, so every
    /// range read returns the same order on both backends. `projection_state` holds the position
    /// the tables reflect and their layout version; they are written in each batch's transaction,
    /// with the log.
    static let createProjections = """
        CREATE TABLE projection_entries (
            tbl text NOT NULL,
            key bytea NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY (tbl, key)
        );
        CREATE TABLE projection_state (
            name text PRIMARY KEY,
            value bigint NOT NULL
        );
        """
}
