/// Runs `body`, then `cleanup`, whether `body` returned or threw: the `defer` for cleanup that
/// must be awaited (stopping a platform, closing a store, destroying a client).
public func withCleanup<T>(_ body: () async throws -> T, cleanup: () async -> Void) async throws -> T {
    let result: T
    do {
        result = try await body()
    } catch {
        await cleanup()
        throw error
    }
    await cleanup()
    return result
}
