import Crypto
import Foundation
import LogHashing
import Testing

/// `Hex`: the one spelling of hashes and digests. Checked against `hexString` (MerkleTreeTests.swift),
/// which shares no code with it.
struct HexTests {
    @Test func encode_isTwoLowerCaseDigitsPerByte() {
        let everyByte = (0...255).map { UInt8($0) }
        #expect(Hex.encode(everyByte) == hexString(everyByte))
        #expect(Hex.encode([UInt8]()) == "")
        #expect(Hex.encode([0x00, 0x0f, 0xf0, 0xff]) == "000ff0ff")
    }

    @Test func encode_takesAnySequenceOfBytes() {
        let bytes = sampleRecords(1, seed: 31)[0] + [1, 2, 3]
        let digest = SHA256.hash(data: bytes)
        #expect(Hex.encode(digest) == hexString(Array(digest)))
        #expect(Hex.encode(bytes.dropFirst()) == hexString(Array(bytes.dropFirst())))
    }

    @Test func decode_readsBackWhatEncodeWrote_inEitherCase() {
        for (i, record) in sampleRecords(40, seed: 17).enumerated() {
            #expect(Hex.decode(Hex.encode(record)) == record, "record \(i)")
            #expect(Hex.decode(hexString(record).uppercased()) == record, "record \(i), upper case")
        }
        #expect(Hex.decode("") == [])
        #expect(Hex.decode("00ff10") == [0x00, 0xff, 0x10])
        #expect(Hex.decode("ABCDEF") == [0xab, 0xcd, 0xef])
        #expect(Hex.decode("aBcD") == [0xab, 0xcd])
    }

    /// Every ASCII character in front of a `0`: only the 22 hex digits make a byte, and the byte is
    /// the digit's value times 16. The neighbours of each digit range (`/ : @ G \` g`) are included.
    @Test func decode_acceptsExactlyTheHexDigits() {
        let digits = Set("0123456789abcdefABCDEF")
        for code in 0..<128 {
            let character = Character(Unicode.Scalar(UInt8(code)))
            let decoded = Hex.decode(String(character) + "0")
            if digits.contains(character) {
                let value = UInt8(String(character), radix: 16)
                #expect(decoded == value.map { [$0 << 4] }, "\(character)0")
            } else {
                #expect(decoded == nil, "character \(code) is not a hex digit")
            }
        }
    }

    /// Odd lengths, signs (which `UInt8(_:radix:)` would accept), prefixes, spaces and non-ASCII
    /// text are not hex: a hash has exactly one spelling per case.
    @Test func decode_ofSomethingThatIsNotHex_isNil() {
        for text in ["0", "abc", "zz", "0g", "g0", "0 ", " 0", "+f", "-0", "00+1", "0x00", "é", "0é", "٠٠", "０"] {
            #expect(Hex.decode(text) == nil, "\"\(text)\"")
        }
    }

    @Test func sha256Digest_isTheOCIContentDigest() {
        #expect(Hex.sha256Digest([]) == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Hex.sha256Digest(Array("abc".utf8)) == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        for record in sampleRecords(10, seed: 23) {
            #expect(Hex.sha256Digest(record) == "sha256:" + hexString(Reference.sha256(record)))
        }
    }

    /// Foundation spells the same 128 bits the same way (lowercased), for any digits.
    @Test(arguments: [(0, 0), (UInt64.max, UInt64.max), (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210), (0x0190_0000_7000_0001, 0x8000_0000_0000_00ff)] as [(UInt64, UInt64)])
    func uuid_isTheRFC9562TextForm(high: UInt64, low: UInt64) {
        let bytes = (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
        let foundation = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
        #expect(Hex.uuid(high: high, low: low) == foundation.uuidString.lowercased())
    }
}
