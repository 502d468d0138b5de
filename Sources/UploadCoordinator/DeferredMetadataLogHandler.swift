import Logging

/// swift-log's stream handler, with its metadata formatted only when a line is written.
///
/// `StreamLogHandler` formats its whole metadata each time an entry is set. Hummingbird sets one
/// (`hb.request.id`) on every request's logger, so a server logging at `info` formatted a string
/// per request that no line ever printed. This handler keeps the metadata as it is and hands it to
/// the stream handler with each line, merged as the stream handler merges its own (the logger's,
/// then the metadata provider's, then the line's), so the line prints the same.
struct DeferredMetadataLogHandler: LogHandler {
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String) {
        stream = StreamLogHandler.standardError(label: label)
        metadataProvider = stream.metadataProvider
        stream.metadataProvider = nil
    }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, provided in provided } }
        if let explicit = event.metadata { merged.merge(explicit) { _, explicit in explicit } }
        var event = event
        event.metadata = merged.isEmpty ? nil : merged
        stream.log(event: event)
    }
}
