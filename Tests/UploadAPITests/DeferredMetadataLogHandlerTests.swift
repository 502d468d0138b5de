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
}
