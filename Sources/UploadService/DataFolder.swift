/// Files of a data folder beside the store, the blobs and staging (``BlobStore``) and the log's
/// signing key (`LogSigningKey.defaultFileName`): the names every command spells them by.
public enum DataFolder {
    /// The registry front end's token-signing key, made at the first `serve`.
    public static let registryTokenKey = "registry-token.key"
    /// The access key `serve` makes when given no `--credentials`.
    public static let generatedCredentials = "credentials"
    /// When each access key last signed out of the pages (`PageSignOuts`).
    public static let pageSignOuts = "page-sign-outs"
}
