import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// A feed's slice of the log ends at its count or once its records hold a byte budget, whichever
/// comes first, always with at least one event, and never skips or repeats one.
struct EventSliceTests {
    @Test func aSlice_endsAtItsCountOrItsByteBudget_andReadsEveryEventOnce() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            for _ in 0..<40 { _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()) }
            try store.read { snapshot in
                let records = try snapshot.eventRecords(from: 1, count: 41)
                #expect(records.count == 41)
                #expect(try snapshot.events(after: 0, limit: 41, byteBudget: 1).map(\.position) == [1], "one event, however small the budget")
                let firstThree = records[0..<3].reduce(0) { $0 + $1.count }
                #expect(try snapshot.events(after: 0, limit: 41, byteBudget: firstThree).map(\.position) == [1, 2, 3])
                #expect(try snapshot.events(after: 0, limit: 41, byteBudget: firstThree + 1).map(\.position) == [1, 2, 3, 4])
                #expect(try snapshot.events(after: 5, limit: 20, byteBudget: .max).map(\.position) == Array(6...25), "the count, across several reads")
                #expect(try snapshot.events(after: 30, limit: 100, byteBudget: .max).map(\.position) == Array(31...41), "up to the tail")
                #expect(try snapshot.events(after: 30, limit: 100, byteBudget: .max) == snapshot.events(after: 30, limit: 100))
                #expect(try snapshot.events(after: 41, limit: 10, byteBudget: .max).isEmpty)
                #expect(try snapshot.events(after: .max, limit: 10, byteBudget: .max).isEmpty)
            }
        }
    }

    /// A repository (a small event), then five catalog data events of about 16 KB each.
    static func appendASmallEventThenLargeOnes(_ store: any EventStore) async throws {
        _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
        for n in 0..<5 {
            let catalog = try RepositoryCatalogInput(aboutText: String(repeating: "about \(n) ", count: 2_000))
            _ = try await store.execute(
                .putRepositoryCatalogData(try PutRepositoryCatalogData(repositoryName: "team/app", catalog: catalog)), metadata: testMetadata())
        }
    }

    /// A page of records ends at its count or once it holds its byte budget (after at least one),
    /// on both backends: copy-store and PostgreSQL's rebuild and verify page the log so, and large
    /// manifests then make shorter pages, not one past PostgreSQL's 1 GB message.
    @Test(arguments: StoreBackend.allCases)
    func recordPages_endAtTheirCountOrTheirByteBudget(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            try await Self.appendASmallEventThenLargeOnes(store)
            try store.read { snapshot in
                let all = try snapshot.eventRecords(from: 1, count: 6)
                #expect(all.count == 6)
                let firstTwo = all[0].count + all[1].count
                for budget in [1, 0, -1, Int.min] {
                    #expect(try snapshot.eventRecords(from: 1, count: 6, byteBudget: budget) == [all[0]], "one record, however small the budget (\(budget))")
                }
                #expect(try snapshot.eventRecords(from: 1, count: 6, byteBudget: firstTwo) == Array(all[0..<2]))
                #expect(try snapshot.eventRecords(from: 1, count: 6, byteBudget: firstTwo + 1) == Array(all[0..<3]))
                #expect(try snapshot.eventRecords(from: 2, count: 2, byteBudget: .max) == Array(all[1..<3]), "the count")
                #expect(try snapshot.eventRecords(from: 5, count: 10, byteBudget: .max) == Array(all[4..<6]), "up to the tail")
            }
        }
    }

    /// A small event, then large ones up to the tail: the budget is spent part way through a read
    /// that also reached the tail, which is the end of the slice, not a gap in the log.
    @Test func aBudgetSpentPartWayThroughTheLastRead_isNoGap() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            try await Self.appendASmallEventThenLargeOnes(store)
            try store.read { snapshot in
                let records = try snapshot.eventRecords(from: 1, count: 6)
                #expect(records.count == 6 && records[0].count * 4 < records[1].count, "a small event, then large ones")
                let budget = records[0..<3].reduce(0) { $0 + $1.count } + 1
                #expect(try snapshot.events(after: 0, limit: 100, byteBudget: budget).map(\.position) == [1, 2, 3, 4])
                #expect(try snapshot.events(after: 0, limit: 100, byteBudget: .max).map(\.position) == Array(1...6))
            }
        }
    }
}
