import AWSJSON
import ECRRequests
import UploadCore

#if FUZZING
// Tools/fuzz builds with -sanitize=fuzzer,address -parse-as-library -DFUZZING (Package.swift,
// UPLOAD_COORDINATOR_FUZZ). SwiftPM makes the
// executable's entry point `RequestFuzzer_main`; it hands control to libFuzzer's driver (so
// libFuzzer's own `main` is never linked in).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 { fuzzOne(data, size) }

@_cdecl("RequestFuzzer_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
}
#endif

/// One input: any bytes as an AWS JSON request body, read as every command the API builds from
/// one, through the API's own mapping (`ECRRequests`). Nothing may crash; every refusal must be a
/// SerializationError or a CommandError.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    guard let body = try? AWSJSONBody(bytes) else { return 0 }
    func attempt<T>(_ build: () throws -> T) {
        do { _ = try build() } catch is CommandError {} catch is SerializationError {} catch {
            fatalError("unexpected error type: \(error)")
        }
    }
    attempt { try ECRRequests.createRepository(body) }
    attempt { try ECRRequests.putRepositoryCatalogData(body) }
    attempt { try ECRRequests.putRegistryCatalogData(body) }
    attempt { try ECRRequests.tagResource(body) }
    attempt { try ECRRequests.untagResource(body) }
    attempt { try ECRRequests.deleteRepository(body) }
    attempt { try ECRRequests.initiateLayerUpload(body) }
    attempt {
        // The part's decoder too: it yields exactly the bytes it announced, or refuses.
        let part = try ECRRequests.uploadLayerPart(body).bytes
        var decoded: UInt64 = 0
        try part.forEachChunk { decoded += UInt64($0.count) }
        precondition(decoded == part.byteCount, "decoded \(decoded) bytes of \(part.byteCount)")
    }
    attempt { try ECRRequests.completeLayerUpload(body) }
    attempt { try ECRRequests.putImage(body) }
    attempt { try ECRRequests.batchDeleteImage(body) }
    attempt { try Validation.maxResults(body.int64("maxResults")) }
    // and the log's decoder, on the same bytes
    _ = try? EventEnvelope(position: 1, decoding: bytes)
    return 0
}
