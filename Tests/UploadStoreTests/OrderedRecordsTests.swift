import Testing
import UploadCore
@testable import UploadStore

/// The in-memory invocation marks are kept in key order in an array: appends in the normal case,
/// and still a correct ordered map when a key arrives out of order.
struct OrderedRecordsTests {
    static func mark(_ n: UInt64) -> InvocationMark {
        InvocationMark(invocationId: "i\(n)", requestId: "r\(n)", recordedAt: Timestamp(millisecondsSinceEpoch: Int64(n)))
    }

    @Test func anyOrderOfPuts_readsBackInKeyOrder_withReplacesAndDeletes() {
        var records = OrderedRecords<InvocationMark>()
        let order: [UInt64] = [5, 1, 9, 3, 7, 2, 8, 300, 256]
        for n in order { records[BigEndian.bytes(n)] = Self.mark(n) }
        #expect(records.keys == order.sorted().map { BigEndian.bytes($0) })
        #expect(records[BigEndian.bytes(3)] == Self.mark(3))
        #expect(records[BigEndian.bytes(4)] == nil)
        records[BigEndian.bytes(3)] = Self.mark(33)
        records[BigEndian.bytes(9)] = nil
        records[BigEndian.bytes(4)] = nil  // absent: nothing happens
        #expect(records[BigEndian.bytes(3)] == Self.mark(33))
        #expect(records.keys == [1, 2, 3, 5, 7, 8, 256, 300].map { BigEndian.bytes($0) })
        var encoded: [(key: [UInt8], value: [UInt8])] = []
        records.forEachInOrder { encoded.append(($0, $1)) }
        #expect(encoded.map(\.key) == records.keys)
        #expect(encoded.map(\.value) == [1, 2, 33, 5, 7, 8, 256, 300].map { Self.mark($0).encoded() })
    }
}
