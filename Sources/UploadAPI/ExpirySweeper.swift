import Logging
import UploadCore
import UploadStore

extension ECRPublicService {
    /// Ends every upload idle for `idleMilliseconds` (by the store's clock) with UploadExpired,
    /// through the single write path, then deletes the expired uploads' staged bytes, which the
    /// log no longer needs once the events have committed.
    /// - Returns: the expired upload ids.
    @discardableResult
    public func expireIdleUploads(idleMilliseconds: Int64) async throws -> [String] {
        var expired: [String] = []
        while true {
            let metadata = RequestMetadata(requestId: "sweep-\(store.configuration.clock.now().millisecondsSinceEpoch)", source: "sweeper")
            let outcome = try await store.execute(.expireIdleUploads(ExpireIdleUploads(idleMilliseconds: idleMilliseconds)), metadata: metadata)
            for case .uploadExpired(let e) in outcome.events.map(\.event) {
                try await uploadLocks.withLock(e.uploadId) { self.blobs.removeStaging(e.uploadId) }
                expired.append(e.uploadId)
            }
            if outcome.events.count < 1000 { return expired }  // less than a full batch: none left
        }
    }

    /// Runs ``expireIdleUploads(idleMilliseconds:)`` every `interval` until the task is cancelled.
    public func runExpirySweeper(idleMilliseconds: Int64, interval: Duration) async {
        while !Task.isCancelled {
            do {
                let expired = try await expireIdleUploads(idleMilliseconds: idleMilliseconds)
                if !expired.isEmpty { logger.info("expired idle uploads", metadata: ["count": "\(expired.count)"]) }
            } catch {
                logger.error("the expiry sweep failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}
