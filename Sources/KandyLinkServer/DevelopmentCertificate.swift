import Crypto
import Foundation
import SwiftASN1
import X509

/// The self-signed certificate of `serve --dev-tls`: for `localhost`, `127.0.0.1` and `::1`,
/// created once and kept next to the database, so a browser is told to trust it only once.
public enum DevelopmentCertificate {
    public static let chainFileName = "dev-tls-certificate.pem"
    public static let keyFileName = "dev-tls-key.pem"

    public struct Files: Sendable {
        public var chainPath: String
        public var keyPath: String
    }

    /// The certificate in `directory`, made there first if it is missing or expires within a week.
    public static func loadOrCreate(in directory: URL, now: Date = Date()) throws -> Files {
        let files = Files(
            chainPath: directory.appendingPathComponent(chainFileName).path,
            keyPath: directory.appendingPathComponent(keyFileName).path)
        if let pem = try? String(contentsOfFile: files.chainPath, encoding: .utf8),
            let existing = try? Certificate(pemEncoded: pem), existing.notValidAfter > now + 7 * 86400,
            FileManager.default.fileExists(atPath: files.keyPath)
        {
            return files
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            CommonName("KandyLink development platform")
            OrganizationName("KandyLink")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now - 3600,
            notValidAfter: now + 365 * 86400,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                // No KeyUsage: with one lacking keyCertSign, BoringSSL will not accept the
                // certificate as its own issuer, i.e. as a trust root for itself.
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([
                    .dnsName("localhost"),
                    .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                    .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))),
                ])
            },
            issuerPrivateKey: .init(key))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try (try certificate.serializeAsPEM().pemString + "\n").write(
            toFile: files.chainPath, atomically: true, encoding: .utf8)
        guard
            FileManager.default.createFile(
                atPath: files.keyPath, contents: Data((key.pemRepresentation + "\n").utf8),
                attributes: [.posixPermissions: 0o600])
        else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: files.keyPath]) }
        return files
    }
}
