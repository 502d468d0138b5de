import FieldRecordCodegen
import SwiftSyntax
import SwiftSyntaxBuilder
import SwiftSyntaxMacroExpansion
import SwiftSyntaxMacrosGenericTestSupport
import Testing

/// The expansion itself. That the generated code encodes, decodes and refuses what it should is
/// tested on the real records (UploadCoreTests' codec tests and the layout fixtures).
@Suite struct FieldRecordMacroTests {
    let macros = ["FieldRecord": MacroSpec(type: FieldRecordExpansion.self, conformances: ["FieldRecord"])]

    func expand(
        _ source: String, to expanded: String, diagnostics: [DiagnosticSpec] = [], sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        assertMacroExpansion(source, expandedSource: expanded, diagnostics: diagnostics, macroSpecs: macros) { failure in
            Issue.record(Comment(rawValue: failure.message), sourceLocation: sourceLocation)
        }
    }

    /// Expands `@FieldRecord` on `declaration`, which must stay as it is, followed by `generated`.
    func expandRecord(_ declaration: String, generating generated: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        expand("@FieldRecord\n" + declaration, to: declaration + "\n\n" + generated, sourceLocation: sourceLocation)
    }

    @Test func generatesTheCodecFromStoredPropertiesAndTags() {
        expandRecord(
            """
            public struct Mark {
                public var id: String
                public var note: String?
                public var count: UInt64 = 0
                public static let kind = "mark"
                public var shown: String { id }
                enum FieldTag: UInt64 {
                    case id = 1, note, count = 5
                }
            }
            """,
            generating: """
                extension Mark: FieldRecord {
                    public func encode(into writer: inout FieldWriter) {
                        FieldCoding.write(1, self.id, to: &writer)
                        FieldCoding.write(2, self.note, to: &writer)
                        FieldCoding.write(5, self.count, to: &writer)
                    }

                    public init(decoding reader: FieldReader) throws(CodecError) {
                        var reader = reader
                        var _idField: FieldReader.Value? = nil
                        var _noteField: FieldReader.Value? = nil
                        var _countField: FieldReader.Value? = nil
                        while let (tag, value) = try reader.next() {
                            switch tag {
                            case 1:
                                _idField = value
                            case 2:
                                _noteField = value
                            case 5:
                                _countField = value
                            default:
                                throw CodecError.unknownTag(tag, in: Self.recordName)
                            }
                        }
                        self.id = try FieldCoding.read(_idField, "id", in: Self.self)
                        self.note = try FieldCoding.read(_noteField, "note", in: Self.self)
                        self.count = try FieldCoding.read(_countField, "count", in: Self.self)
                        try validate()
                    }

                    public var json: JSONValue {
                        .object(sorting: [("id", FieldCoding.json(self.id)), ("note", FieldCoding.json(self.note)), ("count", FieldCoding.json(self.count))])
                    }
                }
                """)
    }

    @Test func anInternalRecordGetsInternalMembers() {
        expandRecord(
            """
            struct Mark {
                var id: String
                enum FieldTag: UInt64 {
                    case id = 1
                }
            }
            """,
            generating: """
                extension Mark: FieldRecord {
                    func encode(into writer: inout FieldWriter) {
                        FieldCoding.write(1, self.id, to: &writer)
                    }

                    init(decoding reader: FieldReader) throws(CodecError) {
                        var reader = reader
                        var _idField: FieldReader.Value? = nil
                        while let (tag, value) = try reader.next() {
                            switch tag {
                            case 1:
                                _idField = value
                            default:
                                throw CodecError.unknownTag(tag, in: Self.recordName)
                            }
                        }
                        self.id = try FieldCoding.read(_idField, "id", in: Self.self)
                        try validate()
                    }

                    var json: JSONValue {
                        .object(sorting: [("id", FieldCoding.json(self.id))])
                    }
                }
                """)
    }

    /// Each way a declaration could lose or scramble a field is refused at compile time, at the
    /// line and column of the offending declaration (line 1 is the attribute).
    @Test(arguments: [
        ("var a: String", "", "@FieldRecord needs a nested 'enum FieldTag: UInt64' numbering the stored properties", 1, 1),
        ("var a: String\nvar b: String", "case a = 1", "stored property 'b' has no case in FieldTag, so it would not be stored", 4, 9),
        ("var a: String", "case a = 1, c", "FieldTag case 'c' names no stored property", 5, 21),
        ("var a: String\nvar b: String", "case a = 2, b = 1", "tag of 'b' must be above 0, above the tag before it, and at most 536870911", 6, 21),
        ("var a: String", "case a", "tag of 'a' must be above 0, above the tag before it, and at most 536870911", 5, 14),
        ("var a: String", "case a = x", "a field tag must be an integer literal", 5, 16),
        ("var a: String", "case a = 536_870_912", "tag of 'a' must be above 0, above the tag before it, and at most 536870911", 5, 14),
        ("lazy var a: String = \"\"", "case a = 1", "@FieldRecord stores plain named properties only: no lazy, wrapped or tuple-pattern storage", 3, 5),
        ("var (a, b) = (\"\", \"\")", "case a = 1", "@FieldRecord stores plain named properties only: no lazy, wrapped or tuple-pattern storage", 3, 9),
        ("#if DEBUG\nvar a: String\n#endif", "case a = 1", "@FieldRecord cannot see members inside #if; declare a record's fields unconditionally", 3, 5),
    ])
    func refuses(_ properties: String, _ tags: String, _ message: String, _ line: Int, _ column: Int) {
        let indented = properties.split(separator: "\n").map { "    \($0)\n" }.joined()
        let tagEnum = tags.isEmpty ? "" : "    enum FieldTag: UInt64 {\n        \(tags)\n    }\n"
        let declaration = "struct R {\n" + indented + tagEnum + "}"
        expand("@FieldRecord\n" + declaration, to: declaration, diagnostics: [DiagnosticSpec(message: message, line: line, column: column)])
    }

    @Test func refusesAClass() {
        expand(
            "@FieldRecord\nclass R {\n}", to: "class R {\n}",
            diagnostics: [DiagnosticSpec(message: "@FieldRecord applies to a struct", line: 1, column: 1)])
    }
}
