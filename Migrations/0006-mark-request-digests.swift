import LMDBKit

extension UploadMigrations {
    /// Changes no data. Events may now carry a request digest (metadata tag 7) and scoped keys may
    /// name a long repository by its hash (projection layout 5), neither of which an older binary
    /// reads; recording this step makes an older binary refuse the store at open ("written by a
    /// newer binary") instead of failing later on an event it cannot decode.
    static func markRequestDigests(_ txn: Transaction) throws {}
}
