// swift-tools-version: 6.2
import Foundation
import CompilerPluginSupport
import PackageDescription

// Upcoming features every target opts into (see README "Conventions").
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "upload-coordinator",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "upload-coordinator", targets: ["UploadCoordinator"]),
        .executable(name: "upload-replay", targets: ["UploadReplay"]),
        .library(name: "UploadCore", targets: ["UploadCore"]),
        .library(name: "UploadStore", targets: ["UploadStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swiftlang/swift-syntax", from: "603.0.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
    ],
    targets: [
        // Debian's liblmdb-dev, found through pkg-config.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        // A thin LMDB wrapper: bytes only, no domain.
        .target(name: "LMDBKit", dependencies: ["CLMDB"], swiftSettings: swiftSettings),
        // Debian's libpq-dev, found through pkg-config.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // A thin libpq wrapper for the PostgreSQL backend: blocking, like LMDB's; bytes only, no domain.
        .target(name: "PostgresKit", dependencies: ["CLibPQ"], swiftSettings: swiftSettings),
        // RFC 9162 Merkle tree hashing over log bytes. Pure; shared by the store and its migrations.
        .target(name: "LogHashing", dependencies: [.product(name: "Crypto", package: "swift-crypto")], swiftSettings: swiftSettings),
        // `@FieldRecord`'s expansion: each record's canonical encoding, decoding and JSON, from its
        // declaration. A library, so that its tests need not depend on the macro target (which
        // would build the whole test bundle again for the host).
        .target(
            name: "FieldRecordCodegen",
            dependencies: [
                .product(name: "SwiftDiagnostics", package: "swift-syntax"),
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftSyntaxBuilder", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
            ],
            swiftSettings: swiftSettings
        ),
        // The compiler plugin that serves `@FieldRecord`'s expansion.
        .macro(
            name: "FieldRecordMacros",
            dependencies: [
                "FieldRecordCodegen",
                .product(name: "SwiftCompilerPlugin", package: "swift-syntax"),
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
            ],
            swiftSettings: swiftSettings,
            // A sanitizer build (`--sanitize`) instruments this executable too, and gold fails
            // to link it under AddressSanitizer; the toolchain's lld does not.
            linkerSettings: [.unsafeFlags(["-use-ld=lld"], .when(platforms: [.linux]))]
        ),
        // The domain: commands, events, decisions, projections, codecs. Pure; no I/O.
        .target(
            name: "UploadCore",
            dependencies: ["FieldRecordMacros", "JSONGrammar", "LogHashing", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        // Store migrations. Sees LMDBKit, LogHashing and PostgresKit only, so a shipped migration cannot depend on domain types.
        .target(name: "UploadMigrations", dependencies: ["LMDBKit", "LogHashing", "PostgresKit"], path: "Migrations", swiftSettings: swiftSettings),
        // The event log, the projection tables, the single group-committing writer, replay.
        .target(
            name: "UploadStore",
            dependencies: [
                "LMDBKit", "LogHashing", "PostgresKit", "UploadCore", "UploadMigrations",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The application layer: every operation, whichever front end asks; the blob store, the
        // crash-safe order of a layer's I/O, and the services `serve` runs.
        .target(
            name: "UploadService",
            dependencies: [
                "LogHashing", "UploadCore", "UploadStore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // RFC 8259's grammar, checked before Foundation parses: what manifests and request bodies must be.
        .target(name: "JSONGrammar", swiftSettings: swiftSettings),
        // AWS JSON 1.1 request bodies: typed member access over Foundation's parser. Knows no operation.
        .target(name: "AWSJSON", dependencies: ["JSONGrammar"], swiftSettings: swiftSettings),
        // ECR Public request bodies → validated commands: the one mapping, for the API and the fuzzer.
        .target(name: "ECRRequests", dependencies: ["AWSJSON", "LogHashing", "UploadCore"], swiftSettings: swiftSettings),
        // ECR Public's AWS JSON 1.1 protocol, the registry front end and the pages, over Hummingbird.
        .target(
            name: "UploadAPI",
            dependencies: [
                "AWSJSON", "ECRRequests", "JSONGrammar", "LogHashing", "UploadCore", "UploadService", "UploadStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "UploadCoordinator",
            dependencies: [
                "LMDBKit", "LogHashing", "UploadCore", "UploadStore", "UploadService", "UploadAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "UploadReplay",
            dependencies: [
                "LogHashing", "UploadCore", "UploadService", "UploadStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/Replay",
            swiftSettings: swiftSettings
        ),
        .target(name: "UploadTesting", dependencies: ["UploadCore", "UploadStore", "UploadService", "LMDBKit", "PostgresKit"], path: "Tests/UploadTesting", swiftSettings: swiftSettings),
        .testTarget(
            name: "FieldRecordMacrosTests",
            dependencies: [
                "FieldRecordCodegen",
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftSyntaxBuilder", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacroExpansion", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacrosGenericTestSupport", package: "swift-syntax"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "LMDBKitTests", dependencies: ["LMDBKit", "CLMDB"], swiftSettings: swiftSettings),
        .testTarget(name: "LogHashingTests", dependencies: ["LogHashing", "UploadTesting", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: swiftSettings),
        .testTarget(name: "MigrationTests", dependencies: ["UploadMigrations", "LMDBKit", "LogHashing"], swiftSettings: swiftSettings),
        .testTarget(name: "UploadCoreTests", dependencies: ["UploadCore", "JSONGrammar", "UploadStore", "UploadTesting", "LogHashing", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: swiftSettings),
        .testTarget(name: "UploadStoreTests", dependencies: ["UploadStore", "UploadService", "UploadMigrations", "UploadTesting", "LMDBKit", "LogHashing", "PostgresKit", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: swiftSettings),
        .testTarget(name: "CommandLineTests", dependencies: ["UploadTesting", "LMDBKit"], swiftSettings: swiftSettings),
        .testTarget(
            name: "UploadAPITests",
            dependencies: [
                "AWSJSON", "ECRRequests", "UploadAPI", "UploadService", "UploadTesting",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

// Tools/fuzz sets UPLOAD_COORDINATOR_FUZZ=1: this package's own code is built instrumented for
// libFuzzer and AddressSanitizer, and the fuzzers are linked with both runtimes. Per target, not
// with `-Xswiftc` or `--sanitize`: those reach the `@FieldRecord` macro's executable too, which
// then gets libFuzzer's `main` (and gold fails on it under AddressSanitizer).
let fuzzing = ProcessInfo.processInfo.environment["UPLOAD_COORDINATOR_FUZZ"] == "1"
let fuzzedSwiftSettings: [SwiftSetting] = fuzzing ? [.unsafeFlags(["-sanitize=fuzzer,address"]), .define("FUZZING")] : []
// A fuzzer's entry point hands control to libFuzzer's driver (see each fuzzer's source).
let fuzzerEntrySettings: [SwiftSetting] = fuzzing ? [.unsafeFlags(["-parse-as-library"])] : []
let fuzzerLinkerSettings: [LinkerSetting] = fuzzing ? [.unsafeFlags(["-sanitize=fuzzer,address"])] : []

// The benchmarks and fuzzers are not part of the product: a build sees them only with
// UPLOAD_COORDINATOR_TOOLS=1, which Tools/bench, Tools/fuzz and Tools/test set when they need them
// (as Hummingbird keeps its benchmarks behind ENABLE_HB_BENCHMARKS).
if ProcessInfo.processInfo.environment["UPLOAD_COORDINATOR_TOOLS"] == "1" {
    package.products.append(.executable(name: "upload-bench", targets: ["UploadBench"]))
    package.targets += [
        // Performance figures, each against a reference run beside it (Tools/bench, BENCHMARKS.md).
        .executableTarget(
            name: "UploadBench",
            dependencies: [
                "LMDBKit", "PostgresKit", "UploadCore", "UploadStore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/Benchmarks",
            exclude: ["reference", "BENCHMARKS.md", "soak-30min.svg"],
            swiftSettings: swiftSettings
        ),
        // libFuzzer targets, fuzzing when Tools/fuzz builds them (with -sanitize=fuzzer). This
        // one: the request mapping, the command validators and the event decoder.
        .executableTarget(
            name: "RequestFuzzer", dependencies: ["AWSJSON", "ECRRequests", "UploadCore"], path: "Tools/Fuzzers/Request",
            swiftSettings: swiftSettings + fuzzerEntrySettings, linkerSettings: fuzzerLinkerSettings),
        // libFuzzer target for the HTTP layer itself: raw connections to the real server in process.
        .executableTarget(
            name: "HTTPFuzzer",
            dependencies: [
                "UploadAPI", "UploadCore", "UploadService", "UploadStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tools/Fuzzers/HTTP", swiftSettings: swiftSettings + fuzzerEntrySettings, linkerSettings: fuzzerLinkerSettings)
    ]
}

// Every target of this package but the macro and its expansion (host tools, run by the compiler): see `fuzzing`.
if fuzzing {
    for target in package.targets where target.type != .macro && target.type != .system && target.name != "FieldRecordCodegen" {
        target.swiftSettings = (target.swiftSettings ?? []) + fuzzedSwiftSettings
    }
}
