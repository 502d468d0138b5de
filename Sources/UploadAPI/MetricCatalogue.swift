/// Every metric `/metrics` serves, with the `# HELP` line it carries: one place to read what
/// each means. A metric made under a name not listed here is served without help.
enum MetricCatalogue {
    static let help: [String: String] = [
        // Requests.
        "upload_coordinator_requests_total": "AWS API requests answered, by operation (ECR Public's name, or unknown) and outcome (ok, or the error's __type).",
        "upload_coordinator_request_seconds": "AWS API requests' time from head to answer, by operation.",
        "upload_coordinator_registry_requests_total": "Registry (/v2/, /token) requests answered, by endpoint and outcome (ok, or the spec's error code; OAuth2's for a refused POST /token).",
        "upload_coordinator_registry_request_seconds": "Registry requests' time from head to the answer's head (a blob's bytes follow), by endpoint.",
        // Connections.
        "upload_coordinator_connections_open": "Connections open now.",
        "upload_coordinator_answer_bytes_held": "Bytes of answers held in memory until their clients read them (past --max-answer-bytes, reads' large answers are refused).",
        "upload_coordinator_connections_closed_total": "Connections the server ended or refused itself, by reason (slow or stalled clients, caps reached).",
        // Streams.
        "upload_feed_streams_open": "Live event streams (/events/stream) open now.",
        "upload_pages_audit_streams_open": "Live audit page streams (/gallery/audit/stream) open now.",
        // The data folder's disk.
        "upload_coordinator_disk_free_bytes": "Bytes free on the disk that holds the data folder.",
        "upload_coordinator_disk_total_bytes": "Bytes in all on the disk that holds the data folder.",
        "upload_coordinator_disk_reserved_bytes": "Bytes of the disk that layer bytes stop short of (--reserved-disk-bytes).",
        // The store's writer.
        "upload_store_commit_seconds": "Committed write batches' time in the store, from the writer taking them to their commit.",
        "upload_store_batch_commands": "Commands in each committed write batch.",
        "upload_store_failed_batches_total": "Write batches whose commit failed (their callers were told so).",
        // The store's figures, read at each scrape.
        "upload_store_statistics_up": "Whether this scrape read the store's figures (1), or serves those last read (0).",
        "upload_store_log_position": "The log's last position: events recorded.",
        "upload_store_checkpoint_lag": "Events in the log that the projections do not yet reflect.",
        "upload_store_active_sessions": "Uploads initiated and not yet completed, aborted or expired.",
        "upload_store_map_size_bytes": "The log's LMDB map size (0 on PostgreSQL).",
        "upload_store_map_used_bytes": "Bytes of the log's LMDB map in use (0 on PostgreSQL).",
        "upload_store_readers": "LMDB reader slots held now (0 on PostgreSQL).",
        "upload_store_projections_map_size_bytes": "The projections' LMDB map size (0 on PostgreSQL).",
        "upload_store_projections_map_used_bytes": "Bytes of the projections' LMDB map in use (0 on PostgreSQL).",
    ]

    /// Buckets of a metric given none of its own (swift-prometheus's defaults).
    static let defaultDurationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    static let defaultValueBuckets: [Double] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
}
