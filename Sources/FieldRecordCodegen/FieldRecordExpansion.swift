import SwiftDiagnostics
import SwiftSyntax
import SwiftSyntaxBuilder
import SwiftSyntaxMacros

/// `@FieldRecord`: writes a record's canonical encoding, decoding and JSON from its one
/// declaration, its stored properties and the `FieldTag` enum that numbers them. The generated code
/// calls ``FieldCoding``'s generic helpers, so it needs no property's type: overloads pick the
/// optional or the required form from the property itself.
///
/// Codable did the same through an existential `Encoder`/`Decoder` before; a container box, generic
/// metadata look-ups and a witness call per field put it on top of replay's profile.
public struct FieldRecordExpansion: ExtensionMacro {
    public static func expansion(
        of node: AttributeSyntax,
        attachedTo declaration: some DeclGroupSyntax,
        providingExtensionsOf type: some TypeSyntaxProtocol,
        conformingTo protocols: [TypeSyntax],
        in context: some MacroExpansionContext
    ) throws -> [ExtensionDeclSyntax] {
        guard declaration.is(StructDeclSyntax.self) else {
            throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.notAStruct.at(node)])
        }
        let fields = try Field.tagged(in: declaration, attribute: node)
        let access = declaration.modifiers.first { [.keyword(.public), .keyword(.package)].contains($0.name.tokenKind) }
            .map { "\($0.name.text) " } ?? ""
        let conformance = protocols.isEmpty ? "" : ": FieldRecord"

        let writes = fields.map { "FieldCoding.write(\($0.tag), self.\($0.name), to: &writer)" }
        let slots = fields.map { "var \($0.slot): FieldReader.Value? = nil" }
        let cases = fields.map { "case \($0.tag): \($0.slot) = value" }
        let reads = fields.map {
            "self.\($0.name) = try FieldCoding.read(\($0.slot), \"\($0.name)\", in: Self.self)"
        }
        let members = fields.map { "(\"\($0.name)\", FieldCoding.json(self.\($0.name)))" }

        let decl: DeclSyntax = """
            extension \(type.trimmed)\(raw: conformance) {
                \(raw: access)func encode(into writer: inout FieldWriter) {
                    \(raw: writes.joined(separator: "\n"))
                }

                \(raw: access)init(decoding reader: FieldReader) throws(CodecError) {
                    var reader = reader
                    \(raw: slots.joined(separator: "\n"))
                    while let (tag, value) = try reader.next() {
                        switch tag {
                        \(raw: cases.joined(separator: "\n"))
                        default: throw CodecError.unknownTag(tag, in: Self.recordName)
                        }
                    }
                    \(raw: reads.joined(separator: "\n"))
                    try validate()
                }

                \(raw: access)var json: JSONValue {
                    .object(sorting: [\(raw: members.joined(separator: ", "))])
                }
            }
            """
        guard let ext = decl.as(ExtensionDeclSyntax.self) else { return [] }
        return [ext]
    }
}

/// One stored property and its tag.
struct Field {
    /// The property's name, without backticks.
    let name: String
    let tag: UInt64
    /// The highest tag: protobuf's, far above any record's, and low enough that the field's key
    /// (`tag << 3 | wire type`) cannot overflow.
    static let highestTag: UInt64 = 536_870_911
    /// The decoder's local for the field's bytes; `_` keeps it apart from any property's name.
    var slot: String { "_\(name)Field" }

    /// The stored properties, each with its tag from `enum FieldTag: UInt64`, in tag order. Every
    /// stored property must have a tag and every tag a property, tags must increase in the enum's
    /// order and start above 0: a record's wire form is then visible in one place.
    static func tagged(in declaration: some DeclGroupSyntax, attribute: AttributeSyntax) throws -> [Field] {
        let members = declaration.memberBlock.members.map(\.decl)
        guard let tagEnum = members.lazy.compactMap({ $0.as(EnumDeclSyntax.self) }).first(where: { $0.name.text == "FieldTag" }) else {
            throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.noFieldTag.at(attribute)])
        }
        var tags: [(name: String, tag: UInt64, node: Syntax)] = []
        var next: UInt64 = 0
        for caseDecl in tagEnum.memberBlock.members.compactMap({ $0.decl.as(EnumCaseDeclSyntax.self) }) {
            for element in caseDecl.elements {
                var tag = next
                if let raw = element.rawValue {
                    guard let literal = raw.value.as(IntegerLiteralExprSyntax.self),
                          let value = UInt64(literal.literal.text.filter { $0 != "_" })
                    else { throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.tagNotLiteral.at(raw)]) }
                    tag = value
                }
                guard tag > 0, tag <= highestTag, tags.last.map({ tag > $0.tag }) ?? true else {
                    throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.tagsMustIncrease(element.name.text).at(element)])
                }
                tags.append((unquoted(element.name), tag, Syntax(element)))
                next = tag + 1
            }
        }
        if let conditional = declaration.memberBlock.members.first(where: { $0.decl.is(IfConfigDeclSyntax.self) }) {
            throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.conditionalMembers.at(conditional)])
        }
        let stored = try storedProperties(members)
        for property in stored where !tags.contains(where: { $0.name == property.name }) {
            throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.untagged(property.name).at(property.node)])
        }
        for tag in tags where !stored.contains(where: { $0.name == tag.name }) {
            throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.noSuchProperty(tag.name).at(tag.node)])
        }
        return tags.map { Field(name: $0.name, tag: $0.tag) }
    }

    /// Instance properties with storage: not static, not computed. A `let` with an initial value
    /// is storage a decoder cannot set; it is reported as untagged if it has no tag, and refused
    /// by the compiler if it has one.
    private static func storedProperties(_ members: [DeclSyntax]) throws -> [(name: String, node: Syntax)] {
        var stored: [(name: String, node: Syntax)] = []
        let instanceVariables = members.compactMap { $0.as(VariableDeclSyntax.self) }
            .filter { !$0.modifiers.contains { $0.name.tokenKind == .keyword(.static) || $0.name.tokenKind == .keyword(.class) } }
        for variable in instanceVariables {
            for binding in variable.bindings {
                if let accessors = binding.accessorBlock, isComputed(accessors) { continue }
                // Storage the generated code would read or write other than as a plain value.
                if variable.modifiers.contains(where: { $0.name.tokenKind == .keyword(.lazy) }) || !variable.attributes.isEmpty {
                    throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.unsupportedStorage.at(variable)])
                }
                guard let name = binding.pattern.as(IdentifierPatternSyntax.self)?.identifier else {
                    throw DiagnosticsError(diagnostics: [FieldRecordDiagnostic.unsupportedStorage.at(binding)])
                }
                stored.append((unquoted(name), Syntax(binding)))
            }
        }
        return stored
    }

    private static func unquoted(_ token: TokenSyntax) -> String { token.text.filter { $0 != "`" } }

    /// A getter, or accessors other than observers, make a property computed.
    private static func isComputed(_ block: AccessorBlockSyntax) -> Bool {
        switch block.accessors {
        case .getter: return true
        case .accessors(let list):
            return list.contains { ![.keyword(.willSet), .keyword(.didSet)].contains($0.accessorSpecifier.tokenKind) }
        }
    }
}

enum FieldRecordDiagnostic: DiagnosticMessage {
    case notAStruct
    case noFieldTag
    case tagNotLiteral
    case tagsMustIncrease(String)
    case untagged(String)
    case noSuchProperty(String)
    case conditionalMembers
    case unsupportedStorage

    var message: String {
        switch self {
        case .notAStruct: "@FieldRecord applies to a struct"
        case .noFieldTag: "@FieldRecord needs a nested 'enum FieldTag: UInt64' numbering the stored properties"
        case .tagNotLiteral: "a field tag must be an integer literal"
        case .tagsMustIncrease(let name): "tag of '\(name)' must be above 0, above the tag before it, and at most \(Field.highestTag)"
        case .untagged(let name): "stored property '\(name)' has no case in FieldTag, so it would not be stored"
        case .noSuchProperty(let name): "FieldTag case '\(name)' names no stored property"
        case .conditionalMembers: "@FieldRecord cannot see members inside #if; declare a record's fields unconditionally"
        case .unsupportedStorage: "@FieldRecord stores plain named properties only: no lazy, wrapped or tuple-pattern storage"
        }
    }
    var diagnosticID: MessageID { MessageID(domain: "FieldRecordMacros", id: "\(self)") }
    var severity: DiagnosticSeverity { .error }

    func at(_ node: some SyntaxProtocol) -> Diagnostic { Diagnostic(node: Syntax(node), message: self) }
}
