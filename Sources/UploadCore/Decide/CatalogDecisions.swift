extension Decider {
    /// RepositoryPolicyNotFoundException, as GetRepositoryPolicy and DeleteRepositoryPolicy answer it.
    public static func policyNotFound(_ ref: RepositoryRef) -> CommandError {
        CommandError(.repositoryPolicyNotFound, "Repository policy does not exist for the repository with name '\(ref.repositoryName)' in the registry with id '\(ref.registryId)'")
    }

    /// The repository an ARN names, which must be of this registry and exist
    /// (ListTagsForResource reads by it as TagResource and UntagResource decide by it).
    public static func repository(_ arn: RepositoryARN, state: some ProjectionState, settings: DecisionSettings) throws -> RepositoryRef {
        try CatalogDecisions.repository(arn, state: state, settings: settings)
    }
}

/// Decisions for what a repository carries besides images and uploads: catalog data and tags, and
/// the registry's catalog data.
enum CatalogDecisions {
    /// What CreateRepository records after RepositoryCreated: its catalog data and tags, if given.
    static func initialDetails(of ref: RepositoryRef, catalog: RepositoryCatalogInput?, tags: ResourceTags) throws -> [Event] {
        try checkCount(tags.count)
        return (catalog.map { [catalogEvent(ref, $0)] } ?? []) + (tags.count > 0 ? [taggedEvent(ref, tags)] : [])
    }

    static func putCatalog(_ c: PutRepositoryCatalogData, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = try Decider.existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
        return Decision([catalogEvent(ref, c.catalog)])
    }

    /// Each key takes its value; the resource may then hold at most 50 tags.
    static func tag(_ c: TagResource, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = try repository(c.resource, state: state, settings: settings)
        guard c.tags.count > 0 else { return Decision([]) }
        var details = try state.details(ref) ?? RepositoryDetails()
        details.put(tags: c.tags.pairs)
        try checkCount(details.tagKeys.count)
        return Decision([taggedEvent(ref, c.tags)])
    }

    /// Keys the repository has no tag of are ignored, as in ECR; no event when none is left (`decide`
    /// records CallAnswered for a call that sent an invocation id).
    static func untag(_ c: UntagResource, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = try repository(c.resource, state: state, settings: settings)
        let details = try state.details(ref) ?? RepositoryDetails()
        let present = c.tagKeys.filter { details.tag($0) != nil }
        guard !present.isEmpty else { return Decision([]) }
        return Decision([.repositoryUntagged(RepositoryUntagged(
            registryId: ref.registryId, repositoryName: ref.repositoryName, tagKeys: present))])
    }

    static func setPolicy(_ c: SetRepositoryPolicy, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = try Decider.existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
        return Decision([.repositoryPolicySet(RepositoryPolicySet(registryId: ref.registryId, repositoryName: ref.repositoryName, policyText: c.policyText))])
    }

    static func deletePolicy(_ c: DeleteRepositoryPolicy, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = try Decider.existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
        guard let text = try state.details(ref)?.policyText else { throw Decider.policyNotFound(ref) }
        return Decision([.repositoryPolicyDeleted(RepositoryPolicyDeleted(registryId: ref.registryId, repositoryName: ref.repositoryName, policyText: text))])
    }

    static func putRegistryCatalog(_ c: PutRegistryCatalogData, settings: DecisionSettings) -> Decision {
        guard let displayName = c.displayName else { return Decision([]) }
        return Decision([.registryCatalogDataPut(RegistryCatalogDataPut(registryId: settings.defaultRegistryId, displayName: displayName))])
    }

    /// The repository an ARN names: it must be of this registry (InvalidParameterException
    /// otherwise, as an ARN of a resource this service cannot hold) and exist.
    static func repository(_ arn: RepositoryARN, state: some ProjectionState, settings: DecisionSettings) throws -> RepositoryRef {
        guard arn.registryId == settings.defaultRegistryId else {
            throw CommandError(.invalidParameter, "The ARN names the registry '\(arn.registryId)'; this coordinator serves the registry with id '\(settings.defaultRegistryId)'")
        }
        return try Decider.existingRepository(arn.registryId, arn.repositoryName, state: state, settings: settings)
    }

    private static func checkCount(_ count: Int) throws(CommandError) {
        guard count <= ResourceTags.mostPerResource else {
            throw CommandError(.tooManyTags, "A repository may have at most \(ResourceTags.mostPerResource) tags; this request would leave it with \(count)")
        }
    }

    private static func catalogEvent(_ ref: RepositoryRef, _ catalog: RepositoryCatalogInput) -> Event {
        .repositoryCatalogDataPut(RepositoryCatalogDataPut(
            registryId: ref.registryId, repositoryName: ref.repositoryName, description: catalog.description,
            architectures: catalog.architectures, operatingSystems: catalog.operatingSystems,
            logoImageDigest: catalog.logoImageDigest, aboutText: catalog.aboutText, usageText: catalog.usageText))
    }

    private static func taggedEvent(_ ref: RepositoryRef, _ tags: ResourceTags) -> Event {
        .repositoryTagged(RepositoryTagged(
            registryId: ref.registryId, repositoryName: ref.repositoryName, tagKeys: tags.keys, tagValues: tags.values))
    }
}
