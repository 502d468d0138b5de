#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A body carrying a layer part is up to 30 MB, nearly all of it one base64 string member. A
/// general JSON parser walks that string a character at a time (about 28 ms for a 10 MiB part,
/// the largest share of UploadLayerPart's CPU). This pre-pass finds top-level string members of
/// at least ``threshold`` bytes with no escapes and no control characters, cuts them out of the
/// document (leaving `""`), and returns their text, so that the parser sees only the small rest.
///
/// It only ever takes a short cut: anything it does not fully understand (escapes in a long
/// string, a repeated member name, a malformed document, invalid UTF-8 in a long string) returns
/// `nil`, and the whole body goes to the general parser, which decides as before.
enum LargeStringMembers {
    static let threshold = 64 * 1024

    /// - Returns: the document with the long members' contents cut out, and where each member's
    ///   text lies in `bytes` (checked to be UTF-8, never copied).
    static func lift(_ bytes: [UInt8]) -> (document: [UInt8], members: [String: Range<Int>])? {
        guard bytes.count >= threshold else { return nil }
        return bytes.withUnsafeBufferPointer { b -> (document: [UInt8], members: [String: Range<Int>])? in
            var scanner = Scanner(b: b)
            guard let cuts = scanner.topLevelLongStrings(), !cuts.isEmpty else { return nil }
            var members: [String: Range<Int>] = [:]
            var document: [UInt8] = []
            document.reserveCapacity(bytes.count - cuts.reduce(0) { $0 + $1.range.count })
            var from = 0
            for cut in cuts {
                guard isUTF8(UnsafeBufferPointer(rebasing: b[cut.range])) else { return nil }
                members[cut.name] = cut.range
                document.append(contentsOf: b[from..<cut.range.lowerBound])
                from = cut.range.upperBound
            }
            document.append(contentsOf: b[from...])
            return (document, members)
        }
    }

    /// ASCII in one branch-free pass (what a base64 member holds); anything else is validated
    /// the slow way.
    private static func isUTF8(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        var high: UInt8 = 0
        for byte in text { high |= byte }
        return high < 0x80 || String(validating: text, as: UTF8.self) != nil
    }

    /// A recursive-descent walk that understands just enough JSON to find member boundaries.
    struct Scanner {
        let b: UnsafeBufferPointer<UInt8>
        var i = 0

        static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

        mutating func topLevelLongStrings() -> [(name: String, range: Range<Int>)]? {
            skipSpace()
            guard take(UInt8(ascii: "{")) else { return nil }
            var cuts: [(name: String, range: Range<Int>)] = []
            var names = Set<String>()
            skipSpace()
            if take(UInt8(ascii: "}")) { return atEnd() ? cuts : nil }
            while true {
                skipSpace()
                guard let nameRange = string(), let name = String(validating: b[nameRange], as: UTF8.self),
                      !b[nameRange].contains(Self.backslash), names.insert(name).inserted else { return nil }
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return nil }
                skipSpace()
                if i < b.count, b[i] == Self.quote {
                    let start = i + 1
                    guard let (range, plain) = plainString(), range.lowerBound == start else { return nil }
                    if plain && range.count >= LargeStringMembers.threshold { cuts.append((name, range)) }
                } else {
                    guard skipValue() else { return nil }
                }
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                guard take(UInt8(ascii: "}")) else { return nil }
                return atEnd() ? cuts : nil
            }
        }

        /// A string at `i`: its contents' range; `plain` when it holds no escape and no control character.
        ///
        /// Finds the closing quote with `memchr` (a plain string has no backslash before it, which
        /// a second `memchr` confirms) and checks for control characters in a branch-free pass,
        /// so a 14 MB member takes a few milliseconds; with an escape it walks byte by byte.
        mutating func plainString() -> (Range<Int>, plain: Bool)? {
            guard take(Self.quote) else { return nil }
            let start = i
            let base = b.baseAddress!
            guard let found = memchr(base + start, Int32(Self.quote), b.count - start) else { return nil }
            let end = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            if memchr(base + start, Int32(Self.backslash), end - start) == nil {
                var control: UInt8 = 0
                for j in start..<end { control |= base[j] < 0x20 ? 1 : 0 }
                i = end + 1
                return (start..<end, control == 0)
            }
            var j = start
            while j < b.count {
                let c = base[j]
                if c == Self.quote {
                    i = j + 1
                    return (start..<j, false)
                }
                j += c == Self.backslash ? 2 : 1
            }
            return nil
        }

        mutating func string() -> Range<Int>? { plainString()?.0 }

        /// Skips any value; `false` when it is not well formed enough to find its end.
        mutating func skipValue(depth: Int = 0) -> Bool {
            guard depth < 64, i < b.count else { return false }
            switch b[i] {
            case Self.quote:
                return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let close = b[i] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                i += 1
                while true {
                    skipSpace()
                    guard i < b.count else { return false }
                    if b[i] == close {
                        i += 1
                        return true
                    }
                    guard skipValue(depth: depth + 1) else { return false }
                    skipSpace()
                    if take(UInt8(ascii: ",")) || take(UInt8(ascii: ":")) { continue }
                    guard i < b.count, b[i] == close else { return false }
                }
            default:
                // A number, true, false or null: up to the next delimiter.
                let start = i
                while i < b.count, !Self.isDelimiter(b[i]) { i += 1 }
                return i > start
            }
        }

        static func isDelimiter(_ c: UInt8) -> Bool {
            c == UInt8(ascii: ",") || c == UInt8(ascii: "}") || c == UInt8(ascii: "]") || c == UInt8(ascii: ":") || isSpace(c)
        }

        static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }

        mutating func skipSpace() { while i < b.count, Self.isSpace(b[i]) { i += 1 } }

        mutating func take(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }

        func atEnd() -> Bool {
            var j = i
            while j < b.count, Self.isSpace(b[j]) { j += 1 }
            return j == b.count
        }
    }
}
