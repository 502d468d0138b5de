/// Decisions for storing and deleting images.
enum ImageDecisions {
    static func put(_ c: PutImage, state: some ProjectionState, settings: DecisionSettings, now: Timestamp) throws -> Decision {
        let ref = try Decider.existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
        if let mismatch = digestMismatch(c) { throw mismatch }
        let existing = try state.image(ref, c.imageDigest)
        if existing == nil, let refusal = c.refusalUnlessStored { throw refusal }
        var missing: [String] = []
        var knownMissing: Set<String> = []  // asked of, never iterated: a manifest may name 25,000 blobs
        var misstated: (kind: String, named: Manifest.Descriptor, stored: UInt64)?
        func check(_ kind: String, _ named: Manifest.Descriptor, stored: UInt64) {
            if misstated == nil, stored != named.size { misstated = (kind, named, stored) }
        }
        var layerSizes: UInt64 = 0
        // The image's size is its layers', each as listed. The config is not one of them, even
        // when a layer has its digest (OCI's empty descriptor, `{}`, is often both).
        let blobs: [(blob: Manifest.Descriptor, isLayer: Bool)] = (c.config.map { [($0, false)] } ?? []) + c.layers.map { ($0, true) }
        for (blob, isLayer) in blobs where !knownMissing.contains(blob.digest) {
            if let layer = try state.layer(ref, blob.digest) {
                if isLayer { layerSizes += layer.layerSize }
                check("blob", blob, stored: layer.layerSize)
            } else {
                knownMissing.insert(blob.digest)
                missing.append(blob.digest)
            }
        }
        guard missing.isEmpty else { throw layersMissing(ref.repositoryName, missing) }
        let referenced = try c.referencedImages.map { (named: $0, image: try state.image(ref, $0.digest)) }
        let missingImages = referenced.filter { $0.image == nil }.map(\.named.digest)
        guard missingImages.isEmpty else { throw imagesMissing(ref.repositoryName, missingImages) }
        for (named, image) in referenced { check("manifest", named, stored: UInt64(image?.imageManifest.utf8.count ?? 0)) }
        // A size that is not the content's fails every client that checks what it pulls (the
        // image spec's descriptor rule), so it is refused where the manifest is stored anew; an
        // image stored before this rule can still be tagged.
        if existing == nil, let (kind, named, stored) = misstated {
            throw CommandError(
                .invalidParameter,
                "The imageManifest gives the \(kind) '\(named.digest)' a size of \(named.size) bytes, but the repository with name '\(ref.repositoryName)' holds it with \(stored) bytes.")
        }
        if existing != nil, try c.imageTag.map({ try state.tag(ref, $0)?.imageDigest == c.imageDigest }) ?? true {
            throw CommandError(.imageAlreadyExists, "Image with digest '\(c.imageDigest)'\(c.imageTag.map { " and tag '\($0)'" } ?? "") already exists in the repository with name '\(ref.repositoryName)' in the registry with id '\(ref.registryId)'")
        }
        return Decision([.imagePushed(ImagePushed(
            registryId: ref.registryId, repositoryName: ref.repositoryName, imageDigest: c.imageDigest, imageTag: c.imageTag,
            // An image stored before keeps the type it was stored with, which every pull of this
            // tag is then served with: the same bytes (only a manifest without `mediaType` can be
            // sent as another type) stored once, as the event then says.
            imageManifest: c.imageManifest, imageManifestMediaType: existing?.imageManifestMediaType ?? c.imageManifestMediaType,
            artifactMediaType: c.artifactMediaType,
            // A manifest list's size is its largest image's, as the model defines it.
            imageSizeInBytes: c.referencedImages.isEmpty ? layerSizes : referenced.compactMap { $0.image?.imageSizeInBytes }.max() ?? 0,
            pushedAt: now))])
    }

    /// What a repository that holds nothing refuses `c` for, as ``put(_:state:settings:now:)``
    /// decides it there: a digest that does not hold, a manifest no longer stored anew, or any
    /// blob or image it names (none can be there); `nil` when it would be stored.
    static func refusalInAnEmptyRepository(_ c: PutImage) -> CommandError? {
        if let mismatch = digestMismatch(c) { return mismatch }
        if let refusal = c.refusalUnlessStored { return refusal }
        let blobs = ([c.config].compactMap { $0 } + c.layers).map(\.digest)
        var named: Set<String> = []  // asked of, never iterated
        if !blobs.isEmpty { return layersMissing(c.repositoryName, blobs.filter { named.insert($0).inserted }) }
        if !c.referencedImages.isEmpty { return imagesMissing(c.repositoryName, c.referencedImages.map(\.digest)) }
        return nil
    }

    private static func digestMismatch(_ c: PutImage) -> CommandError? {
        guard let claimed = c.claimedDigest, claimed.lowercased() != c.imageDigest else { return nil }
        return CommandError(
            .imageDigestDoesNotMatch, "The image digest '\(Validation.quoted(claimed))' does not match the digest of the manifest, \(c.imageDigest)")
    }

    private static func layersMissing(_ repositoryName: String, _ missing: [String]) -> CommandError {
        CommandError(
            .layersNotFound,
            "The manifest references layers that are not available in the repository with name '\(repositoryName)': \(missing.joined(separator: ", "))")
    }

    private static func imagesMissing(_ repositoryName: String, _ missing: [String]) -> CommandError {
        CommandError(
            .referencedImagesNotFound,
            "The manifest list references images that are not in the repository with name '\(repositoryName)': \(missing.joined(separator: ", "))")
    }

    /// Each image id is decided against the state the ones before it in the request left.
    static func batchDelete(_ c: BatchDeleteImage, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = try Decider.existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
        var decision = Decision([])
        // Looked up, never iterated:
        var deleted: Set<String> = []       // digests deleted earlier in this request
        var untagged: Set<[UInt8]> = []     // tags removed earlier in this request, by their bytes
        var tagsLeft: [String: Int] = [:]   // digest → how many tags it keeps, once touched

        func fail(_ id: ImageIdentifier, _ code: ImageFailure.Code, _ reason: String) {
            decision.imageFailures.append(ImageFailure(imageId: id, failureCode: code, failureReason: reason))
        }
        func image(_ digest: String) throws -> ImageRecord? {
            deleted.contains(digest) ? nil : try state.image(ref, digest)
        }
        /// The manifest lists that still name the image once this request's deletions so far are made.
        func listsReferencing(_ digest: String) throws -> [String] {
            try state.manifestLists(naming: digest, in: ref).filter { !deleted.contains($0) }
        }
        func referencedReason(_ lists: [String]) -> String {
            "The image is referenced by the manifest list(s) \(lists.joined(separator: ", ")); delete them first"
        }

        for id in c.imageIds {
            let refusalsBefore = decision.imageFailures.count
            defer {  // however the id's turn ends: refused (one failure more) or not
                decision.refusalByRequestedId.append(decision.imageFailures.count > refusalsBefore ? decision.imageFailures.last?.failureCode : nil)
            }
            if let refusal = statelessRefusal(id) {
                decision.imageFailures.append(refusal)
                continue
            }
            switch (id.imageDigest?.lowercased(), id.imageTag) {
            case (nil, nil):
                continue  // refused above

            case (let digest?, nil):
                guard try image(digest) != nil else {
                    fail(id, .imageNotFound, imageNotFoundReason)
                    continue
                }
                let lists = try listsReferencing(digest)
                guard lists.isEmpty else {
                    fail(id, .imageReferencedByManifestList, referencedReason(lists))
                    continue
                }
                deleted.insert(digest)
                decision.imageIds.append(ImageIdentifier(imageDigest: digest))
                decision.events.append(.imageDeleted(ImageDeleted(registryId: ref.registryId, repositoryName: ref.repositoryName, imageDigest: digest)))

            case (let digest, let tag?):
                guard !untagged.contains(Array(tag.utf8)), let target = try state.tag(ref, tag)?.imageDigest, try image(target) != nil else {
                    fail(id, .imageNotFound, imageNotFoundReason)
                    continue
                }
                if let digest, digest != target {
                    fail(id, .imageTagDoesNotMatchDigest, "The tag '\(tag)' names image \(target), not \(digest)")
                    continue
                }
                let tagCount = try tagsLeft[target] ?? state.tags(of: target, in: ref).count
                guard tagCount > 0 else {  // a tag its image does not list: tables that disagree
                    fail(id, .imageNotFound, imageNotFoundReason)
                    continue
                }
                let remaining = tagCount - 1
                if remaining == 0 && !c.keepsUntaggedImages {
                    let lists = try listsReferencing(target)
                    guard lists.isEmpty else {
                        fail(id, .imageReferencedByManifestList, referencedReason(lists))
                        continue
                    }
                }
                untagged.insert(Array(tag.utf8))
                tagsLeft[target] = remaining
                decision.imageIds.append(ImageIdentifier(imageDigest: target, imageTag: tag))
                decision.events.append(.imageUntagged(ImageUntagged(registryId: ref.registryId, repositoryName: ref.repositoryName, imageDigest: target, imageTag: tag)))
                if remaining == 0 && !c.keepsUntaggedImages {
                    deleted.insert(target)
                    decision.events.append(.imageDeleted(ImageDeleted(registryId: ref.registryId, repositoryName: ref.repositoryName, imageDigest: target)))
                }
            }
        }
        return decision
    }

    static let imageNotFoundReason = "Requested image not found"

    /// The refusal of an id whatever the repository holds: a malformed digest, or neither a digest
    /// nor a tag.
    static func statelessRefusal(_ id: ImageIdentifier) -> ImageFailure? {
        if let digest = id.imageDigest, !Validation.isLayerDigest(digest) {
            return ImageFailure(imageId: id, failureCode: .invalidImageDigest, failureReason: "Invalid image digest '\(Validation.quoted(digest))'")
        }
        guard id.imageDigest != nil || id.imageTag != nil else {
            return ImageFailure(imageId: id, failureCode: .missingDigestAndTag, failureReason: "Invalid request parameters: both tag and digest cannot be null")
        }
        return nil
    }

    /// An id refused with `code` when the first attempt was decided, answered again: its reason
    /// says what held then, where the first answer named the state (a tag's image, the lists).
    static func refusedThen(_ id: ImageIdentifier, _ code: ImageFailure.Code) -> ImageFailure {
        if let refusal = statelessRefusal(id), refusal.failureCode == code { return refusal }
        let reason = switch code {
        case .imageReferencedByManifestList: "The image was referenced by a manifest list when the request was decided; delete the lists first"
        case .imageTagDoesNotMatchDigest: "The tag '\(id.imageTag ?? "")' named another image than \(id.imageDigest ?? "") when the request was decided"
        case .imageNotFound, .invalidImageDigest, .missingDigestAndTag: imageNotFoundReason
        }
        return ImageFailure(imageId: id, failureCode: code, failureReason: reason)
    }

    /// The answer to an exact retry of `c`, whose first attempt recorded `recorded` (its events,
    /// in order): read back from its events alone when they tell it, which is when it recorded no
    /// ``CallAnswered`` (``needsItsOutcomesRecorded(_:_:)``); otherwise with each requested id's
    /// outcome, which that CallAnswered holds (its refusal code, or empty where the id succeeded).
    ///
    /// A call recorded by a binary up to 7ca8032 kept no outcomes when it deleted something: the
    /// ids its events do not account for are refused as
    /// ``refusalsDecidedAgain(_:_:recorded:decidedAt:state:settings:)`` decides.
    /// - Throws: when the store cannot be read.
    static func batchDeleteAnsweredAgain(
        _ c: BatchDeleteImage, recorded: [Event], decidedAt: Timestamp, state: some ProjectionState, settings: DecisionSettings
    ) throws -> Decision {
        if let codes = recorded.last?.answeredCall?.failureCodes, codes.count == c.imageIds.count,
           let answer = readBack(c, recorded, codes: codes) {
            return answer
        }
        let read = readBack(c, recorded)
        var answer = Decision(recorded, imageIds: read.deleted)
        answer.imageFailures = try refusalsDecidedAgain(c, read.refused, recorded: recorded, decidedAt: decidedAt, state: state, settings: settings)
        return answer
    }

    /// Whether `decision`, a BatchDeleteImage's, must record each requested id's outcome for its
    /// retry to be answered as it was: when it refused an id (no event says which, or why), or when
    /// its events read back (``readBack(_:_:)``) otherwise than it decided (an untag of an image
    /// that kept other tags, followed by the image's deletion by digest, reads as the untag of its
    /// last tag).
    static func needsItsOutcomesRecorded(_ c: BatchDeleteImage, _ decision: Decision) -> Bool {
        guard decision.imageFailures.isEmpty else { return true }
        let read = readBack(c, decision.events)
        return !read.refused.isEmpty || read.deleted != decision.imageIds
    }

    /// `c`'s ids as its `recorded` events alone answer them, in request order: those deleted or
    /// untagged, and those no event accounts for, each with the index of the first event recorded
    /// after its place. An untag followed by its image's deletion reads as the untag of its last tag.
    private static func readBack(
        _ c: BatchDeleteImage, _ recorded: [Event]
    ) -> (deleted: [ImageIdentifier], refused: [(id: ImageIdentifier, next: Int)]) {
        var next = recorded.startIndex
        var deleted: [ImageIdentifier] = [], refused: [(id: ImageIdentifier, next: Int)] = []
        func deletes(_ digest: String) -> Bool {
            guard next < recorded.endIndex, case .imageDeleted(let deleted) = recorded[next], deleted.imageDigest == digest else { return false }
            next += 1
            return true
        }
        for id in c.imageIds {
            let digest = id.imageDigest?.lowercased()
            if let tag = id.imageTag {
                guard next < recorded.endIndex, case .imageUntagged(let untagged) = recorded[next], untagged.imageTag.sameBytes(as: tag),
                      digest == nil || digest == untagged.imageDigest else {
                    refused.append((id, next))
                    continue
                }
                next += 1
                deleted.append(ImageIdentifier(imageDigest: untagged.imageDigest, imageTag: tag))
                _ = deletes(untagged.imageDigest)  // with its last tag
            } else if let digest, deletes(digest) {
                deleted.append(ImageIdentifier(imageDigest: digest))
            } else {
                refused.append((id, next))
            }
        }
        return (deleted, refused)
    }

    /// `c`'s answer from its `recorded` events and each requested id's refusal code (empty where
    /// it succeeded), or `nil` when the events do not fit them (a record no binary writes). An untag is followed by its image's
    /// deletion when it removed the last tag, unless a later id deleted that image by digest (it
    /// could not have, had the untag deleted it).
    private static func readBack(_ c: BatchDeleteImage, _ recorded: [Event], codes: [String]) -> Decision? {
        var answer = Decision(recorded)
        var next = recorded.startIndex
        func take<E>(_ event: (Event) -> E?) -> E? {
            guard next < recorded.endIndex, let taken = event(recorded[next]) else { return nil }
            next += 1
            return taken
        }
        let deletion = { (event: Event) -> String? in if case .imageDeleted(let e) = event { e.imageDigest } else { nil } }
        for (place, (id, code)) in zip(c.imageIds, codes).enumerated() {
            guard code.isEmpty else {
                answer.imageFailures.append(refusedThen(id, ImageFailure.Code(rawValue: code) ?? .imageNotFound))  // a later binary's code
                continue
            }
            if let tag = id.imageTag {
                guard let untagged = take({ if case .imageUntagged(let e) = $0, e.imageTag.sameBytes(as: tag) { e } else { nil } }) else { return nil }
                answer.imageIds.append(ImageIdentifier(imageDigest: untagged.imageDigest, imageTag: tag))
                let deletedLater = zip(c.imageIds, codes).dropFirst(place + 1).contains {
                    $0.1.isEmpty && $0.0.imageTag == nil && $0.0.imageDigest?.lowercased() == untagged.imageDigest
                }
                if !deletedLater { _ = take { deletion($0) == untagged.imageDigest ? () : nil } }  // with its last tag
            } else {
                guard let digest = take(deletion), digest == id.imageDigest?.lowercased() else { return nil }
                answer.imageIds.append(ImageIdentifier(imageDigest: digest))
            }
        }
        return next == recorded.endIndex - 1 ? answer : nil  // all but the CallAnswered read
    }

    /// The refusals of an attempt whose codes no event holds (binaries up to 7ca8032 recorded
    /// none beside deletions, and their untag of an image that kept other tags, followed by its
    /// deletion by digest, reads as the digest refused): the `refused` ids are decided again at
    /// `state` (the log's tail), which refuses them as the first attempt did unless the repository
    /// changed since. An id that `state` would now accept was refused then either as named by a
    /// manifest list the request deleted after it (a multi-arch clean-up that names the images
    /// before their list), answered ImageReferencedByManifestList, or as not there
    /// (ImageNotFound): the first only when what it names now was there then (tagged or pushed
    /// not after `decidedAt`, the first attempt's time, and not deleted by it) and an image was
    /// deleted after its place; a tag or image pushed since was not there. The records keep no
    /// history, so this reads times: a push in the first attempt's millisecond reads as there
    /// then, and a tag refused for a list and moved before the retry as not there.
    private static func refusalsDecidedAgain(
        _ c: BatchDeleteImage, _ refused: [(id: ImageIdentifier, next: Int)], recorded: [Event], decidedAt: Timestamp,
        state: some ProjectionState, settings: DecisionSettings
    ) throws -> [ImageFailure] {
        guard !refused.isEmpty else { return [] }
        var again = try BatchDeleteImage(registryId: c.registryId, repositoryName: c.repositoryName, imageIds: refused.map(\.id))
        again.keepsUntaggedImages = c.keepsUntaggedImages
        let decided: Decision?
        do { decided = try batchDelete(again, state: state, settings: settings) } catch is CommandError { decided = nil }  // the repository is gone
        let deletedThen = Set(recorded.compactMap { if case .imageDeleted(let e) = $0 { e.imageDigest } else { nil } })
        /// Whether what `id` names at `state` was there when the first attempt was decided.
        func wasThen(_ id: ImageIdentifier) throws -> Bool {
            let ref = try Decider.existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
            let named: (digest: String, since: Timestamp)?
            if let tag = id.imageTag {
                named = try state.tag(ref, tag).map { ($0.imageDigest, $0.createdAt) }
            } else {
                named = try id.imageDigest.flatMap { try state.image(ref, $0.lowercased()) }.map { ($0.imageDigest, $0.pushedAt) }
            }
            guard let named else { return false }
            return named.since <= decidedAt && !deletedThen.contains(named.digest)
        }
        return try refused.map { id, next in
            if let refusal = statelessRefusal(id) { return refusal }  // refused so whatever the repository holds, or whether it is gone
            let deletedAfter = recorded[next...].contains { if case .imageDeleted = $0 { true } else { false } }
            return try decided?.imageFailures.first { $0.imageId == id }
                ?? (decided != nil && deletedAfter && wasThen(id)
                    ? refusedThen(id, .imageReferencedByManifestList) : refusedThen(id, .imageNotFound))
        }
    }
}
