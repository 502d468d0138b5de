import ArgumentParser
import Foundation
import UploadStore

/// Hidden tools for the reliability tests; not part of the interface.
struct DebugCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug", abstract: "Tools for reliability tests.", shouldDisplay: false,
        subcommands: [HoldReadTransaction.self])
}

/// Opens a read transaction, says so, and keeps it until killed: the reader slot a crashed
/// process leaves behind.
struct HoldReadTransaction: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hold-read-transaction")

    @OptionGroup var store: StoreOptions

    func run() async throws {
        guard let store = try store.openStore() as? Store else { throw ValidationError("hold-read-transaction holds an LMDB reader slot; it has no PostgreSQL form.") }
        try store.holdingSnapshot {
            StandardStreams.output("holding a read transaction\n")
            while true { sleep(60) }
        }
    }
}
