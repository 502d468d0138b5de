import FieldRecordCodegen
import SwiftCompilerPlugin
import SwiftSyntax
import SwiftSyntaxMacros

/// The compiler plugin `@FieldRecord` names (`UploadCore`'s `FieldRecord.swift`). The expansion
/// itself is in the `FieldRecordCodegen` library: a test target that depended on this macro target
/// would have SwiftPM build the whole test bundle, and everything it links, a second time for the
/// host; the library costs only swift-syntax twice.
@main
struct FieldRecordMacrosPlugin: CompilerPlugin {
    let providingMacros: [any Macro.Type] = [FieldRecordMacro.self]
}

/// The type the plugin resolves by its qualified name, `FieldRecordMacros.FieldRecordMacro`.
public struct FieldRecordMacro: ExtensionMacro {
    public static func expansion(
        of node: AttributeSyntax,
        attachedTo declaration: some DeclGroupSyntax,
        providingExtensionsOf type: some TypeSyntaxProtocol,
        conformingTo protocols: [TypeSyntax],
        in context: some MacroExpansionContext
    ) throws -> [ExtensionDeclSyntax] {
        try FieldRecordExpansion.expansion(
            of: node, attachedTo: declaration, providingExtensionsOf: type, conformingTo: protocols, in: context)
    }
}
