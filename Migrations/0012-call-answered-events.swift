import LMDBKit

extension UploadMigrations {
    /// Writes nothing. It marks a store whose log may hold CallAnswered (event type 18), which
    /// binaries before it cannot decode: they refuse the store at open, naming this id (rule 5 of
    /// the "Migrations" article), rather than serve it and fail a write whenever the log's last
    /// event is one.
    static func markCallAnsweredEvents(_ txn: Transaction) throws {}
}
