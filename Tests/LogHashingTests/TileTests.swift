import LogHashing
import Testing

/// C2SP tlog-tiles paths and what each tile covers.
struct TileTests {
    @Test func paths_areTheSpecsEncoding_andParseBack() throws {
        let cases: [(TileAddress, String)] = [
            (TileAddress(kind: .hashes(level: 0), index: 0), "0/000"),
            (TileAddress(kind: .hashes(level: 1), index: 5, width: 17), "1/005.p/17"),
            (TileAddress(kind: .hashes(level: 2), index: 1_234_067), "2/x001/x234/067"),
            (TileAddress(kind: .hashes(level: 63), index: 1000), "63/x001/000"),
            (TileAddress(kind: .entries, index: 273, width: 112), "entries/273.p/112"),
            (TileAddress(kind: .wideEntries, index: 12), "entries32/012"),
        ]
        for (address, path) in cases {
            #expect(address.path == path)
            #expect(TileAddress(path: path) == address, "\(path)")
        }
    }

    @Test func nonCanonicalOrOutOfRangePaths_nameNoTile() {
        for bad in ["64/000", "01/000", "0/1", "0/0000", "0/x000/001", "0/001/002", "0/x1/000", "0/000.p/0", "0/000.p/256",
                    "0/000.p/012", "0/000.p", "0/000.p/", "entries", "entries/", "data/000", "-1/000", "0/00a", "0/", "0/000/", ""] {
            #expect(TileAddress(path: bad) == nil, "\(bad)")
        }
    }

    /// The spec's example: a tree of 70,000 leaves has 273 full level-0 tiles and a partial one of
    /// 112, one full level-1 tile and a partial one of 17, and a level-2 tile of 1.
    @Test func leaves_coverWhatTheSpecSays() throws {
        #expect(TileAddress(kind: .hashes(level: 0), index: 273, width: 112).leaves == 69_888..<70_000)
        #expect(TileAddress(kind: .hashes(level: 0), index: 272).leaves == 69_632..<69_888)
        #expect(TileAddress(kind: .hashes(level: 1), index: 1, width: 17).leaves == 65_536..<69_888)
        #expect(TileAddress(kind: .hashes(level: 2), index: 0, width: 1).leaves == 0..<65_536)
        #expect(TileAddress(kind: .entries, index: 2, width: 3).leaves == 512..<515)
        #expect(TileAddress(kind: .hashes(level: 7), index: 1).leaves == nil, "past any 64-bit tree")
        let level1 = TileAddress(kind: .hashes(level: 1), index: 2, width: 2).nodes
        #expect(level1.map(\.level) == [8, 8] && level1.map(\.index) == [512, 513])
    }

    @Test func entryBundles_prefixEachEntryWithItsLength_orRefuseOneTooLong() {
        #expect(EntryBundle.encode([[1, 2], [], [3]], lengthBytes: 2) == [0, 2, 1, 2, 0, 0, 0, 1, 3])
        #expect(EntryBundle.encode([[1]], lengthBytes: 4) == [0, 0, 0, 1, 1])
        #expect(EntryBundle.encode([Array(repeating: 0, count: 65_535)], lengthBytes: 2)?.count == 65_537)
        #expect(EntryBundle.encode([[1], Array(repeating: 0, count: 65_536)], lengthBytes: 2) == nil)
        #expect(EntryBundle.entry(position: 258, record: [9]) == [0, 0, 0, 0, 0, 0, 1, 2, 9])
    }
}
