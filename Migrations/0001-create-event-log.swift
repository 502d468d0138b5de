import LMDBKit

extension UploadMigrations {
    /// The append-only event log: 8-byte big-endian position → canonical event record.
    static func createEventLog(_ txn: Transaction) throws {
        _ = try txn.openDatabase("events", create: true)
    }
}
