import Testing

@testable import KandyLinkServer

/// What a `postgres://` database URL configures.
@Suite struct PostgresURLTests {
    static let cases: [(url: String, pool: Int?)] = [
        ("postgres://kandy:secret@db.example:5433/platform", 16),
        ("postgres://kandy:secret@db.example/platform?pool_max_conns=8", 8),
        ("postgres://kandy@db.example/platform?sslmode=require&pool_max_conns=1", 1),
        ("postgres://kandy@db.example/platform?pool_max_conns=0", nil),
        ("postgres://kandy@db.example/platform?pool_max_conns=many", nil),
        ("postgres://db.example/platform", nil),
    ]

    @Test(arguments: cases) func poolSizeAndRefusals(url: String, pool: Int?) throws {
        guard let pool else {
            #expect(throws: StoreError.self) { try PostgresStore.configuration(url) }
            return
        }
        let configuration = try PostgresStore.configuration(url)
        #expect(configuration.options.maximumConnections == pool)
    }
}
