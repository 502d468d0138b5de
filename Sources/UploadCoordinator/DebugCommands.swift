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
        let store = try store.openStore()
        try store.holdingSnapshot {
            FileHandle.standardOutput.write(Data("holding a read transaction\n".utf8))
            while true { sleep(60) }
        }
    }
}
