/// The product's version, which both executables print (`--version`) and the CLI's own requests
/// record in their user agent.
public enum ProductVersion {
    public static let current = "0.1.0"
}
