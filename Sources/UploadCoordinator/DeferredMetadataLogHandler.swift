import Logging

/// swift-log's stream handler, with its metadata formatted only when a line is written.
///
/// `StreamLogHandler` formats its whole metadata each time an entry is set. Hummingbird sets one
/// (`hb.request.id`) on every request's logger, so a server logging at `info` formatted a string
/// per request that no line ever printed. This handler keeps the metadata as it is and hands it
/// to the stream handler with each line, which prints it as the stream handler's own would be.
struct DeferredMetadataLogHandler: LogHandler {
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(label: String) { stream = StreamLogHandler.standardError(label: label) }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?,
        source: String, file: String, function: String, line: UInt
    ) {
        let merged = explicit.map { metadata.merging($0) { _, new in new } } ?? metadata
        stream.log(level: level, message: message, metadata: merged.isEmpty ? nil : merged, source: source, file: file, function: function, line: line)
    }
}
