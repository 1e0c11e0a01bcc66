import Crypto
import Foundation
import KandyLinkProtocol

/// TURN credentials in the TURN REST scheme that coturn checks with `use-auth-secret`:
/// username `<unix expiry>:<user>`, password `base64(HMAC-SHA1(secret, username))`. The TURN
/// server needs no call to the platform: it recomputes the password from the shared secret and
/// refuses a username whose expiry has passed.
public struct TurnCredentialIssuer: Sendable {
    /// Lifetimes outside a minute to a week are refused: shorter ones expire mid-call, longer
    /// ones outlive any reason to hand them out.
    public static let lifetimeRange: ClosedRange<TimeInterval> = 60...604_800

    private let key: SymmetricKey
    public let lifetime: TimeInterval

    public init(secret: String, lifetime: TimeInterval) {
        key = SymmetricKey(data: Data(secret.utf8))
        self.lifetime = min(max(lifetime, Self.lifetimeRange.lowerBound), Self.lifetimeRange.upperBound)
    }

    public func credentials(for user: String, now: Date) -> TurnCredentials {
        let username = "\(Int64(now.timeIntervalSince1970 + lifetime)):\(user)"
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(username.utf8), using: key)
        return TurnCredentials(username: username, password: Data(mac).base64EncodedString())
    }
}
