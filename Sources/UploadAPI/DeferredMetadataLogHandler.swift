public import Logging
import UploadCore

/// swift-log's stream handler, with its metadata formatted only when a line is written.
///
/// `StreamLogHandler` formats its whole metadata each time an entry is set. Hummingbird sets one
/// (`hb.request.id`) on every request's logger, so a server logging at `info` formatted a string
/// per request that no line ever printed. This handler keeps the metadata as it is and hands it to
/// the stream handler with each line, merged as the stream handler merges its own (the logger's,
/// then the metadata provider's, then the line's), so the line prints the same.
///
/// Every line is one line: control characters, line and paragraph separators and bidirectional
/// overrides in the message, a metadata value or an error's text are written as `\u{…}`. Such
/// text often holds a client's bytes (a name, a header, an error naming what it refused), and a
/// line break in it would let a client write a line that reads as the server's own.
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
        // The error is written as the stream handler writes it, here so that its text is escaped too.
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
            event.error = nil
        }
        event.metadata = merged.isEmpty ? nil : merged.mapValues(OneLineText.escaped)
        event.message = OneLineText.escaped(event.message)
        stream.log(event: event)
    }
}

/// Text made safe to print inside one log line (see ``DeferredMetadataLogHandler``).
enum OneLineText {
    /// `text` with every character that could break or disguise a line written as `\u{hex}`.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: \.misleadsWhenShown) else { return text }
        var written = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.misleadsWhenShown {
                written.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            } else {
                written.append(scalar)
            }
        }
        return String(written)
    }

    static func escaped(_ message: Logger.Message) -> Logger.Message {
        let text = message.description
        let escapedText = escaped(text)
        return escapedText == text ? message : Logger.Message(stringLiteral: escapedText)
    }

    static func escaped(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text):
            return .string(escaped(text))
        case .stringConvertible(let convertible):
            // Kept as it is when nothing needs escaping, so that its attributes stay.
            let text = convertible.description, escapedText = escaped(text)
            return escapedText == text ? value : .string(escapedText)
        case .dictionary(let entries):
            return .dictionary(entries.mapValues(escaped))
        case .array(let values):
            return .array(values.map(escaped))
        }
    }

}
