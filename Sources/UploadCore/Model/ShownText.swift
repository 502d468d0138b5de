/// Text a client sent, shown to someone else (an auditor's terminal, a log, a feed's reader):
/// what must not reach them as it came.
extension Unicode.Scalar {
    /// C0 and C1 controls (the line feed, the escape that starts a terminal's sequences, and C1's
    /// one-byte forms of them among them), DEL, the line and paragraph separators, and the
    /// bidirectional marks, embeddings, overrides and isolates, which can make a line or a column
    /// read as another.
    public var misleadsWhenShown: Bool {
        switch value {
        case 0x00...0x1F, 0x7F...0x9F, 0x061C, 0x200E, 0x200F, 0x2028...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}

extension String {
    /// This text with each scalar that ``Unicode/Scalar/misleadsWhenShown`` as U+FFFD: for a
    /// column of a table printed to a terminal.
    public var shownSafely: String {
        guard unicodeScalars.contains(where: \.misleadsWhenShown) else { return self }
        return String(String.UnicodeScalarView(unicodeScalars.map { $0.misleadsWhenShown ? "\u{FFFD}" : $0 }))
    }
}
