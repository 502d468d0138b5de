extension PostgresMigrations {
    /// Changes nothing: marks a database whose log may hold CallAnswered (event type 18), so that
    /// binaries before it refuse it at open, as LMDB's `0012-call-answered-events` does.
    static let markCallAnsweredEvents = "SELECT 1"
}
