import Testing
import UploadCore

/// ``ExactBytes/equal(_:_:)`` compares eight bytes at a time, then the rest one by one: a
/// difference in any word, in the tail, or in the length is found, at any alignment.
struct ExactBytesTests {
    /// Every length from 0 to 17 (no word, one word, a word and a tail, two words and a tail),
    /// each buffer starting at an odd offset so that the loads are unaligned.
    @Test(arguments: 0...17)
    func aChangeAtAnyIndex_orInTheLength_isFound(length: Int) {
        let storage = (0..<(length + 1)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        var other = storage
        storage.withUnsafeBytes { a in
            let unaligned = UnsafeRawBufferPointer(rebasing: a[1...])
            other.withUnsafeBytes { b in
                #expect(ExactBytes.equal(unaligned, UnsafeRawBufferPointer(rebasing: b[1...])))
                #expect(ExactBytes.equal(unaligned, UnsafeRawBufferPointer(rebasing: b[1..<b.count - min(1, length)])) == (length == 0))
            }
        }
        for index in 1..<(length + 1) {
            other = storage
            other[index] ^= 0x01
            storage.withUnsafeBytes { a in
                other.withUnsafeBytes { b in
                    #expect(!ExactBytes.equal(UnsafeRawBufferPointer(rebasing: a[1...]), UnsafeRawBufferPointer(rebasing: b[1...])), "byte \(index - 1) of \(length)")
                }
            }
        }
    }

    @Test func strings_compareBytes_notCanonicalEquivalence() {
        // The premise, not the code under test: Swift's `==` holds these equal, which is why names compare by bytes.
        #expect("caf\u{E9}" == "cafe\u{301}")
        #expect(!"caf\u{E9}".sameBytes(as: "cafe\u{301}"))
        #expect("0123456789abcdef-tail".sameBytes(as: "0123456789abcdef-tail"))
        #expect(!"0123456789abcdef-tail".sameBytes(as: "0123456789abcdef-taiL"))
    }
}
