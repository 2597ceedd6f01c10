import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension URLSession {
    /// `data(for:)` through the completion-handler API. swift-corelibs-foundation's async `data(for:)` can trap
    /// ("Trying to access a behaviour for a task that in not in the registry") when the calling task is cancelled
    /// mid-request, as happens at shutdown; this path has no cancellation hook, so it cannot.
    public func fetch(_ request: URLRequest) async throws -> (Data, URLResponse) {
        try await withCheckedThrowingContinuation { continuation in
            dataTask(with: request) { data, response, error in
                if let error {
                    continuation.resume(throwing: error)
                } else if let response {
                    continuation.resume(returning: (data ?? Data(), response))
                } else {
                    continuation.resume(throwing: URLError(.badServerResponse))
                }
            }.resume()
        }
    }
}
