import Foundation
import Logging
import Testing
import UploadAPI

/// `serve`'s log handler formats metadata only when a line is written; its lines must be the ones
/// swift-log's `StreamLogHandler` prints from the same logger metadata, metadata provider, line
/// metadata and error, whichever of them are present (timestamps aside).
struct DeferredMetadataLogHandlerTests {
    /// Lines written, kept for the test to read.
    final class Captured: TextOutputStream, @unchecked Sendable {
        private let lock = NSLock()
        private var text = ""
        func write(_ string: String) { lock.withLock { text += string } }
        /// Each line without its leading timestamp.
        var lines: [String] { lock.withLock { text.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1).last.map(String.init) ?? "" } } }
    }

    struct Refused: Error, CustomStringConvertible { var description: String { "refused for a reason" } }

    enum Case: String, CaseIterable {
        case nothing, loggerOnly, providerOnly, lineOnly, errorOnly, allOverlapping
    }

    @Test(arguments: Case.allCases)
    func linesMatchTheStreamHandlers(_ which: Case) {
        let provider: Logger.MetadataProvider? = [.providerOnly, .allOverlapping].contains(which)
            ? Logger.MetadataProvider { ["shared": "provider", "overridden": "provider", "trace": "t-1"] } : nil
        let loggerMetadata: Logger.Metadata = [.loggerOnly, .allOverlapping].contains(which) ? ["shared": "logger", "overridden": "logger", "hb.request.id": "7"] : [:]
        let lineMetadata: Logger.Metadata? = [.lineOnly, .allOverlapping].contains(which) ? ["shared": "line", "request.id": "r-1"] : nil
        let error: (any Error)? = [.errorOnly, .allOverlapping].contains(which) ? Refused() : nil

        let expected = Captured(), actual = Captured()
        var stream = StreamLogHandler(label: "upload-coordinator", stream: expected, metadataProvider: provider)
        var deferred = DeferredMetadataLogHandler(label: "upload-coordinator", stream: actual)
        deferred.metadataProvider = provider
        for (key, value) in loggerMetadata {
            stream[metadataKey: key] = value
            deferred[metadataKey: key] = value
        }
        for level in [Logger.Level.debug, .error] {
            let event = LogEvent(
                level: level, message: "answered", error: error, metadata: lineMetadata, source: "UploadAPI",
                file: #fileID, function: #function, line: #line)
            stream.log(event: event)
            deferred.log(event: event)
        }
        #expect(actual.lines.count == 2)
        #expect(actual.lines == expected.lines, "\(which)")
    }

    struct Forged: Error, CustomStringConvertible { var description: String { "bad digest\n2026-12-05T00:00:00+0000 info upload-coordinator: [UploadAPI] forged" } }

    /// A client's bytes in a message, a value or an error's text cannot start a line of their own,
    /// nor hide what follows them behind a bidirectional override.
    @Test func clientTextStaysOnItsLine() {
        let captured = Captured()
        let handler = DeferredMetadataLogHandler(label: "upload-coordinator", stream: captured)
        let event = LogEvent(
            level: .error, message: "refused \("name\r\ninjected")", error: Forged(),
            metadata: [
                "agent": "curl\u{2028}x", "convertible": .stringConvertible("a\u{202E}b\u{7F}\u{85}\tc"),
                "nested": ["inner": ["x\ny"]], "plain": "ok é",
            ],
            source: "UploadAPI", file: #fileID, function: #function, line: #line)
        handler.log(event: event)
        let lines = captured.lines
        #expect(lines.count == 1)
        let line = lines.first ?? ""
        #expect(line.contains("refused name\\u{d}\\u{a}injected"))
        #expect(line.contains("error.message=bad digest\\u{a}2026-12-05"))
        #expect(line.contains("agent=curl\\u{2028}x"))
        #expect(line.contains("a\\u{202e}b\\u{7f}\\u{85}\\u{9}c"))
        #expect(line.contains("plain=ok é"), "text that needs no escape is written as it is")
        #expect(!line.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x202E })
    }
}
