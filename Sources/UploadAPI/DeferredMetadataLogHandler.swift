public import Logging

/// swift-log's stream handler, with its metadata formatted only when a line is written.
///
/// `StreamLogHandler` formats its whole metadata each time an entry is set. Hummingbird sets one
/// (`hb.request.id`) on every request's logger, so a server logging at `info` formatted a string
/// per request that no line ever printed. This handler keeps the metadata as it is and hands it to
/// the stream handler with each line, merged as the stream handler merges its own (the logger's,
/// then the metadata provider's, then the line's), so the line prints the same.
public struct DeferredMetadataLogHandler: LogHandler {
    private var stream: StreamLogHandler
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    /// Lines go to standard error, as `StreamLogHandler.standardError`'s do.
    public init(label: String) { self.init(StreamLogHandler.standardError(label: label)) }

    /// Lines go to `stream`, with the system's metadata provider (a test compares the two handlers' lines).
    public init(label: String, stream: any TextOutputStream & Sendable) {
        self.init(StreamLogHandler(label: label, stream: stream))
    }

    private init(_ stream: StreamLogHandler) {
        self.stream = stream
        metadataProvider = stream.metadataProvider
        self.stream.metadataProvider = nil
    }

    public var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, provided in provided } }
        if let explicit = event.metadata { merged.merge(explicit) { _, explicit in explicit } }
        var event = event
        event.metadata = merged.isEmpty ? nil : merged
        stream.log(event: event)
    }
}
