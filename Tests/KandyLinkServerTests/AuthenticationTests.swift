import Foundation
import KandyLinkProtocol
import HummingbirdBcrypt
import Synchronization
import Testing

@testable import KandyLinkServer

@Suite(.timeLimit(.minutes(1))) struct AuthenticationTests {
    let path = LinkPath.subscriptions(user: TestPlatform.alice)

    @Test func credentialsAreRequiredAndChecked() async throws {
        try await TestPlatform.with { test in
            let body = TestPlatform.subscribeBody()
            let cases: [(CredentialHeader?, Int, StatusCode)] = [
                (nil, 401, .authenticationRequired),
                (.basic(login: TestPlatform.alice, password: "wrong"), 401, .invalidCredentials),
                (.basic(login: "nobody@example.com", password: TestPlatform.password), 401, .invalidCredentials),
                (.bearer("kl1.bogus.1.sig"), 401, .invalidCredentials),
                (.token("not-a-token"), 401, .invalidCredentials),
                (.basic(login: TestPlatform.bob, password: TestPlatform.password), 403, .forbiddenUser),
            ]
            for (credential, status, code) in cases {
                let reply = try await test.request(.POST, path, body: body, credential: credential)
                #expect(reply.status == status, "\(String(describing: credential))")
                #expect(reply.subscribeResponse?.statusCode == code.rawValue, "\(String(describing: credential))")
                #expect(reply.subscribeResponse?.reason?.isEmpty == false)
            }
            let unsupported = try await test.request(
                .POST, path, body: body, credential: nil, headers: [("Authorization", "Digest x")])
            #expect(unsupported.status == 401)
            #expect(try await test.platform.subscriptionCount() == 0)
        }
    }

    @Test func authnameLogsInForItsUser() async throws {
        try await TestPlatform.with(users: []) { test in
            try await test.platform.accounts.add(
                username: "carol@example.com", password: "secret", authname: "carol-auth")
            let reply = try await test.request(
                .POST, LinkPath.subscriptions(user: "carol@example.com"), body: TestPlatform.subscribeBody(),
                credential: .basic(login: "carol-auth", password: "secret"))
            #expect(reply.status == 200)
            #expect(reply.subscribeResponse?.subscription?.contains("/user/carol@example.com/") == true)
        }
    }

    @Test func platformTokensWorkAsBearerAndXTokenUntilTheyExpire() async throws {
        try await TestPlatform.with { test in
            let (token, expiresAt) = try await test.platform.accounts.token(for: TestPlatform.alice)
            #expect(expiresAt == test.clock.now() + 3600)
            let bearer = try await test.request(
                .POST, path, body: TestPlatform.subscribeBody(), credential: .bearer(token))
            #expect(bearer.status == 200)
            let xToken = try await test.request(
                .POST, path, body: TestPlatform.subscribeBody(), credential: .token(token))
            #expect(xToken.status == 200)

            // A token is for its own user only, and cannot be altered.
            let forBob = try await test.request(
                .POST, LinkPath.subscriptions(user: TestPlatform.bob), body: TestPlatform.subscribeBody(),
                credential: .bearer(token))
            #expect(forBob.status == 403)
            // Alter a character of the MAC (its last one only carries spare bits in part).
            var parts = token.split(separator: ".").map(String.init)
            parts[3] = (parts[3].hasPrefix("A") ? "B" : "A") + parts[3].dropFirst()
            let tampered = parts.joined(separator: ".")
            #expect(
                try await test.request(.POST, path, body: TestPlatform.subscribeBody(), credential: .bearer(tampered))
                    .status == 401)

            test.clock.advance(by: 3601)
            let expired = try await test.request(
                .POST, path, body: TestPlatform.subscribeBody(), credential: .bearer(token))
            #expect(expired.status == 401)
            #expect(expired.subscribeResponse?.statusCode == StatusCode.tokenExpired.rawValue)
        }
    }

    @Test func removedUsersAndChangedPasswordsTakeEffectAtOnce() async throws {
        try await TestPlatform.with { test in
            _ = try await test.subscribe()  // the login is now cached
            try await test.platform.accounts.setPassword(username: TestPlatform.alice, password: "new one")
            let old = try await test.request(.POST, path, body: TestPlatform.subscribeBody())
            #expect(old.status == 401)
            let new = try await test.request(
                .POST, path, body: TestPlatform.subscribeBody(),
                credential: .basic(login: TestPlatform.alice, password: "new one"))
            #expect(new.status == 200)
            let (token, _) = try await test.platform.accounts.token(for: TestPlatform.alice)
            try await test.platform.accounts.remove(username: TestPlatform.alice)
            let gone = try await test.request(
                .POST, path, body: TestPlatform.subscribeBody(),
                credential: .basic(login: TestPlatform.alice, password: "new one"))
            #expect(gone.status == 401)
            // A token signed while the user existed proves nothing once they are gone.
            let orphaned = try await test.request(
                .POST, path, body: TestPlatform.subscribeBody(), credential: .bearer(token))
            #expect(orphaned.status == 401)
            #expect(orphaned.subscribeResponse?.statusCode == StatusCode.invalidCredentials.rawValue)
        }
    }

    @Test func failedLoginsAreThrottledWithGrowingDelays() async throws {
        try await TestPlatform.with(configure: {
            $0.loginThrottle = .init(freeFailures: 2, baseDelay: 10, maxDelay: 60, forgetAfter: 3600)
        }) { test in
            let wrong = CredentialHeader.basic(login: TestPlatform.alice, password: "wrong")
            for _ in 0..<3 {
                #expect(
                    try await test.request(.POST, path, body: TestPlatform.subscribeBody(), credential: wrong).status
                        == 401)
            }
            // Third failure: blocked for 10 s, even with the right password.
            let blocked = try await test.request(.POST, path, body: TestPlatform.subscribeBody())
            #expect(blocked.status == 429)
            #expect(blocked.subscribeResponse?.statusCode == StatusCode.throttled.rawValue)
            #expect(blocked.headers.first(name: "Retry-After") == "10")
            // Bob, on the same address, is not yet blocked (addresses get more room).
            _ = try await test.subscribe(user: TestPlatform.bob)

            test.clock.advance(by: 10)
            #expect(
                try await test.request(.POST, path, body: TestPlatform.subscribeBody(), credential: wrong).status == 401
            )
            let longer = try await test.request(.POST, path, body: TestPlatform.subscribeBody())
            #expect(longer.headers.first(name: "Retry-After") == "20")
            test.clock.advance(by: 20)
            _ = try await test.subscribe()
            // A success clears the account's count.
            #expect(
                try await test.request(.POST, path, body: TestPlatform.subscribeBody(), credential: wrong).status == 401
            )
            _ = try await test.subscribe()
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct LoginThrottleTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func delaysGrowAndAreCapped() {
        let policy = LoginThrottle.Policy(freeFailures: 3, baseDelay: 1, maxDelay: 300, forgetAfter: 3600)
        // failures so far → seconds blocked after the latest
        let table: [(Int, TimeInterval)] = [
            (1, 0), (2, 0), (3, 0), (4, 1), (5, 2), (6, 4), (7, 8), (12, 256), (13, 300), (40, 300),
        ]
        for (failures, delay) in table {
            #expect(policy.delay(afterFailures: failures) == delay, "\(failures)")
        }
    }

    @Test func blocksUntilTheDelayPassesAndForgetsAfterSuccess() {
        var throttle = LoginThrottle(policy: .init(freeFailures: 1, baseDelay: 5, maxDelay: 60, forgetAfter: 3600))
        throttle.recordFailure("a", now: start)
        #expect(throttle.retryAfter("a", now: start) == nil)
        throttle.recordFailure("a", now: start)
        #expect(throttle.retryAfter("a", now: start) == 5)
        #expect(throttle.retryAfter("a", now: start + 4) == 1)
        #expect(throttle.retryAfter("a", now: start + 5) == nil)
        #expect(throttle.retryAfter("b", now: start) == nil)
        throttle.recordSuccess("a")
        throttle.recordFailure("a", now: start + 6)
        #expect(throttle.retryAfter("a", now: start + 6) == nil)
    }

    @Test func quietKeysAreForgotten() {
        var throttle = LoginThrottle(policy: .init(freeFailures: 1, baseDelay: 5, maxDelay: 60, forgetAfter: 100))
        throttle.recordFailure("a", now: start)
        throttle.recordFailure("a", now: start + 101)
        #expect(throttle.retryAfter("a", now: start + 101) == nil)  // counted from 1 again
    }

    @Test func capacityIsBounded() {
        var throttle = LoginThrottle(
            policy: .init(freeFailures: 1, baseDelay: 5, maxDelay: 60, forgetAfter: 100), capacity: 10)
        for index in 0..<25 { throttle.recordFailure("k\(index)", now: start + Double(index)) }
        #expect(throttle.entries.count <= 10)
        #expect(throttle.entries["k24"] != nil)
    }
}

@Suite(.timeLimit(.minutes(1))) struct TokenIssuerTests {
    let issuer = TokenIssuer(secret: Array("0123456789abcdef0123456789abcdef".utf8))
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func issuesAndVerifies() {
        let token = issuer.issue(for: "alice@example.com", expiresAt: now + 60)
        #expect(token.hasPrefix("kl1."))
        #expect(issuer.verify(token, now: now) == .valid(username: "alice@example.com"))
        #expect(issuer.verify(token, now: now + 60) == .expired)
        #expect(TokenIssuer(secret: Array(repeating: 1, count: 32)).verify(token, now: now) == .invalid)
        // The same MAC bytes, spelled with a spare bit set: the lowest bit of the last character.
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let last = alphabet.firstIndex(of: token.last!)!
        let spareBits = String(token.dropLast()) + String(alphabet[last ^ 1])
        let plus = String(token.dropLast()) + "+"
        for bad in [
            "", "kl1", "kl1.a.b", "kl1.YQ.1.", "kl2" + token.dropFirst(3), token + "x", spareBits, token + "=", plus,
            "kl1." + token.dropFirst(4) + ".x",
        ] {
            #expect(issuer.verify(String(bad), now: now) == .invalid, "\(bad)")
        }
    }

    /// What the issuer spells, the verifier reads back byte for byte, at every length's padding.
    @Test func base64urlReadsBackWhatItWrites() {
        var random = SystemRandomNumberGenerator()
        for count in 0..<40 {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            var text = TokenIssuer.base64url(Data(bytes))
            #expect(!text.contains("=") && text.count % 4 != 1)
            #expect(text.withUTF8 { TokenIssuer.bytes(base64url: $0[...]) } == bytes, "\(count) bytes")
        }
    }
}

/// Logins that arrive together with the same credentials share one password check.
@Suite(.timeLimit(.minutes(1))) struct SingleFlightLoginTests {
    /// Holds password checks until opened.
    final class Gate: Sendable {
        let checks = Atomic(0)
        let (joins, joined) = AsyncStream.makeStream(of: Void.self)
        private let state = Mutex<(isOpen: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

        func pass() async {
            await withCheckedContinuation { continuation in
                let isOpen = state.withLock { state in
                    if !state.isOpen { state.waiting.append(continuation) }
                    return state.isOpen
                }
                if isOpen { continuation.resume() }
            }
        }

        func open() {
            let waiting = state.withLock { state in
                state.isOpen = true
                defer { state.waiting = [] }
                return state.waiting
            }
            for continuation in waiting { continuation.resume() }
        }
    }

    @Test func aBurstOfLoginsRunsOnePasswordCheck() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flight-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(path: directory.appendingPathComponent("s.sqlite").path)
        try await store.addUser(
            UserRecord(username: "alice", passwordHash: Bcrypt.hash("pw", cost: 4), createdAt: Date()))
        let gate = Gate()
        let authenticator = Authenticator(
            store: store, clock: ManualPlatformClock(), tokens: TokenIssuer(secret: [1, 2, 3]),
            configuration: PlatformConfiguration(),
            passwordCheck: { password, hash in
                gate.checks.add(1, ordering: .relaxed)
                await gate.pass()
                return Bcrypt.verify(password, hash: hash)
            },
            joinedCheck: { gate.joined.yield() })
        let header = CredentialHeader.basic(login: "alice", password: "pw").field.value
        let wrong = CredentialHeader.basic(login: "alice", password: "nope").field.value

        let logins = 20
        try await withThrowingTaskGroup(of: String?.self) { group in
            for index in 0..<logins {
                group.addTask {
                    try? await authenticator.authenticate(authorization: header, token: nil, address: "10.0.0.\(index)")
                        .username
                }
            }
            group.addTask {
                try? await authenticator.authenticate(authorization: wrong, token: nil, address: "10.0.1.1").username
            }
            // Every login but the first has joined its check before any check may end.
            var joins = 0
            for await _ in gate.joins {
                joins += 1
                if joins == logins - 1 { break }
            }
            gate.open()
            var results: [String?] = []
            for try await result in group { results.append(result) }
            #expect(results.filter { $0 == "alice" }.count == logins)
            #expect(results.filter { $0 == nil }.count == 1)
        }
        // One check for the burst, one for the wrong password.
        #expect(gate.checks.load(ordering: .relaxed) == 2)
        // Later logins are remembered: no check at all.
        _ = try await authenticator.authenticate(authorization: header, token: nil, address: "10.0.0.1")
        #expect(gate.checks.load(ordering: .relaxed) == 2)
        await store.close()
    }
}
