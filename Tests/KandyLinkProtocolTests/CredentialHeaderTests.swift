import KandyLinkProtocol
import Testing

@Suite struct CredentialHeaderTests {
    /// Spec §2: UTF-8 then base64.
    @Test func basicIsUTF8ThenBase64() {
        let field = CredentialHeader.basic(login: "alice@example.com", password: "pä ss").field
        #expect(field.name == "Authorization")
        #expect(field.value == "Basic YWxpY2VAZXhhbXBsZS5jb206cMOkIHNz")
    }

    @Test func bearerAndToken() {
        #expect(CredentialHeader.bearer("t1").field == ("Authorization", "Bearer t1"))
        #expect(CredentialHeader.token("t2").field == ("x-token", "t2"))
    }

    @Test(
        arguments: [
            (
                "Basic YWxpY2VAZXhhbXBsZS5jb206cMOkIHNz", nil,
                CredentialHeader.basic(login: "alice@example.com", password: "pä ss")
            ),
            ("basic YTpiOmM=", nil, .basic(login: "a", password: "b:c")),
            ("Bearer abc.def", nil, .bearer("abc.def")),
            ("Basic YTpi", "tok", .token("tok")),
        ] as [(String?, String?, CredentialHeader)])
    func parses(authorization: String?, token: String?, expected: CredentialHeader) throws {
        #expect(try CredentialHeader.parse(authorization: authorization, token: token) == expected)
    }

    @Test func absentIsNil() throws {
        #expect(try CredentialHeader.parse(authorization: nil, token: nil) == nil)
    }

    @Test(arguments: [
        ("Basic", CredentialParseError.malformed),
        ("Basic !!!", .malformed),
        ("Basic YWJj", .malformed),  // "abc": no colon
        ("Bearer ", .malformed),
        ("Digest abc", .unsupportedScheme),
    ])
    func refuses(authorization: String, error: CredentialParseError) {
        #expect(throws: error) { try CredentialHeader.parse(authorization: authorization, token: nil) }
    }
}
