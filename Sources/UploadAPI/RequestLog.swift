import Hummingbird
import Logging
import UploadCore

/// At `--log-level debug`, one line for every request once it is answered: its method, path (not
/// its query, which may carry a signature), status and time. Outermost, so that it sees every
/// route's answer (the registry's, the pages', the log's) as the client gets it. The AWS API adds
/// a line of its own that names the operation and outcome.
struct RequestLog<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard context.logger.logLevel <= .debug else { return try await next(request, context) }
        let start = ContinuousClock.now
        func log(_ status: String) {
            let milliseconds = Double((ContinuousClock.now - start).nanoseconds) / 1e6
            context.logger.debug("request", metadata: [
                "hb.request.method": "\(request.method.rawValue)", "hb.request.path": "\(request.uri.path)",
                "http.response.status": "\(status)", "duration.ms": "\((milliseconds * 1000).rounded() / 1000)",
            ])
        }
        do {
            let response = try await next(request, context)
            log("\(response.status.code)")
            return response
        } catch {
            log("failed")  // Hummingbird answers it (500, or the error's own status)
            throw error
        }
    }
}
