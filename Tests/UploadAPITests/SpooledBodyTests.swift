import Foundation
import Hummingbird
import NIOCore
import Testing
@testable import UploadAPI
import UploadTesting

/// A body read before its signature holds goes to a spool file past its first 64 KiB; that file
/// shares the disk with the log, so it asks for room as the staging of layer bytes does.
struct SpooledBodyTests {
    struct DiskFull: Error {}

    @Test func aBodyTheDiskHasNoRoomFor_isRefused_beforeItsFirstSpooledByte_andGivesItsBudgetBack() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let budget = ByteBudget.spool(limit: 8 << 20)
        let body = ClientBody(base: RequestBody(buffer: ByteBuffer(repeating: 1, count: 3 << 20)))
        var asked: [Int] = []
        await #expect(throws: DiskFull.self) {
            _ = try await SpooledBody(
                reading: body, limit: 30_000_000, spoolDirectory: dir.path, budget: budget, longestArrival: .seconds(60),
                ensureRoom: { asked.append($0); throw DiskFull() })
        }
        #expect(asked.count == 1, "asked before the first write")
        #expect(budget.take(8 << 20), "the whole budget is free again")
    }

    @Test func aBodyWithRoom_asksBeforeEachMebibyteItSpools() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let chunks = (0..<48).map { _ in ByteBuffer(repeating: 2, count: 64 << 10) }  // 3 MiB, 64 KiB at a time
        let stream = AsyncStream<ByteBuffer> { sender in
            for chunk in chunks { sender.yield(chunk) }
            sender.finish()
        }
        var asked: [Int] = []
        let spooled = try await SpooledBody(
            reading: ClientBody(base: RequestBody(asyncSequence: stream)), limit: 30_000_000, spoolDirectory: dir.path,
            budget: ByteBudget.spool(limit: 8 << 20), longestArrival: .seconds(60), ensureRoom: { asked.append($0) })
        #expect(spooled.count == 3 << 20)
        #expect(try spooled.bytes() == [UInt8](repeating: 2, count: 3 << 20))
        #expect(asked == [1 << 20, 1 << 20, 1 << 20], "the first 64 KiB stay in memory; the rest is asked for a mebibyte at a time")
    }

    /// One client address may spool only its share of the budget: another address's bodies still
    /// fit while it holds its share, and what it gives back is its own again.
    @Test func oneAddress_spoolsAtMostItsShare_andAnotherAddressStillFits() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let budget = ByteBudget.spool(limit: 8 << 20, limitPerAddress: 2 << 20)
        let first: [UInt8] = [127, 0, 0, 1], second: [UInt8] = [127, 0, 0, 2]
        func spool(_ bytes: Int, from address: [UInt8]) async throws -> SpooledBody {
            try await SpooledBody(
                reading: ClientBody(base: RequestBody(buffer: ByteBuffer(repeating: 3, count: bytes))), limit: 30_000_000,
                spoolDirectory: dir.path, budget: budget, from: address, longestArrival: .seconds(60))
        }
        let held = try await spool(3 << 19, from: first)  // 1.5 MiB, most of it spooled
        await #expect {
            _ = try await spool(1 << 20, from: first)
        } throws: { ($0 as? APIError)?.type == "ThrottlingException" }
        let other = try await spool(1 << 20, from: second)
        #expect(other.count == 1 << 20, "another address is not held to the first one's share")
        _ = consume held
        let again = try await spool(1 << 20, from: first)
        #expect(again.count == 1 << 20, "the share given back is the address's own again")
        #expect(ByteBudget.spool(limit: 4 << 30).limitPerAddress == 512 << 20, "an eighth of the budget by default")
        #expect(ByteBudget.spool(limit: 64 << 20).limitPerAddress == APIRequestContext.largestBody, "never less than the largest body")
        #expect(ByteBudget.spool(limit: 1 << 20).limitPerAddress == 1 << 20, "nor more than the budget")
        #expect(ByteBudget.spool(limit: 1 << 20, limitPerAddress: 2 << 20).limitPerAddress == 1 << 20, "never more than the budget")
    }

    /// A body refused because the whole budget is spent, though its address's share is not, gives
    /// its share back: once the budget has room, the address may spool its whole share again.
    @Test func aBodyTheWholeBudgetRefuses_givesItsAddressShareBack() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let budget = ByteBudget.spool(limit: 2 << 20, limitPerAddress: 2 << 20)
        func spool(_ bytes: Int, from address: [UInt8]) async throws -> SpooledBody {
            try await SpooledBody(
                reading: ClientBody(base: RequestBody(buffer: ByteBuffer(repeating: 4, count: bytes))), limit: 30_000_000,
                spoolDirectory: dir.path, budget: budget, from: address, longestArrival: .seconds(60))
        }
        let first: [UInt8] = [10, 0, 0, 1], second: [UInt8] = [10, 0, 0, 2]
        let held = try await spool(3 << 19, from: second)
        await #expect {
            _ = try await spool(1 << 20, from: first)
        } throws: { ($0 as? APIError)?.type == "ThrottlingException" }
        _ = consume held
        let whole = try await spool((2 << 20) - (64 << 10), from: first)  // its whole share, less the head kept in memory
        #expect(whole.count == (2 << 20) - (64 << 10))
    }
}
