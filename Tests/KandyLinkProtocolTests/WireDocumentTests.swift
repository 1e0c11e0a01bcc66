import Foundation
import KandyLinkProtocol
import Testing

/// The documents of the spec, byte for byte as the Kandy.js 4.20.0 client sends and reads them.
@Suite struct WireDocumentTests {
    /// Spec §5.2, key order as sent.
    static let subscribePOST = #"""
        {"subscribeRequest":{"expires":3600,"service":["call","Presence","IM"],"localization":"English_US","useTurn":true,"notificationType":"WebSocket","supported":["RingingFeedback"],"forceLogOut":"true"}}
        """#

    /// Spec §6.2: the refresh PUT has no `supported` and no `forceLogOut`.
    static let refreshPUT = #"""
        {"subscribeRequest":{"expires":3600,"service":["call","Presence","IM"],"localization":"English_US","useTurn":true,"notificationType":"WebSocket"}}
        """#

    /// Spec §5.3.
    static let subscribeResponse = #"""
        {"subscribeResponse":{"statusCode":0,"subscription":"/rest/version/1/user/alice@example.com/subscription/sub0","subscriptionParams":{"service":["call","Presence","IM"],"notificationChannel":"/rest/version/1/user/alice@example.com/websocket/ch0","expires":3600,"turnCredentials":{"username":"turnuser","password":"turnpass"}}}}
        """#

    @Test func subscribeRequestDecodesAsSent() throws {
        let document = try WireJSON.decode(SubscribeRequestDocument.self, from: Data(Self.subscribePOST.utf8))
        let request = document.subscribeRequest
        #expect(request.expires == 3600)
        #expect(request.service == [.call, .presence, .im])
        #expect(request.service.map(\.rawValue) == ["call", "Presence", "IM"])
        #expect(request.localization == "English_US")
        #expect(request.useTurn == true)
        #expect(request.notificationType == "WebSocket")
        #expect(request.supported == ["RingingFeedback"])
        #expect(request.forceLogOut == .true)
        #expect(request.forceLogOut?.isForced == true)
    }

    @Test func subscribeRequestRoundTripsToTheSameJSON() throws {
        let decoded = try WireJSON.decode(SubscribeRequestDocument.self, from: Data(Self.subscribePOST.utf8))
        let reencoded = try WireJSON.decode(SubscribeRequestDocument.self, from: WireJSON.encode(decoded))
        #expect(reencoded == decoded)
        #expect(try Self.canonical(WireJSON.encode(decoded)) == Self.canonical(Data(Self.subscribePOST.utf8)))
    }

    @Test func refreshBodyHasNoForceLogOut() throws {
        let document = try WireJSON.decode(SubscribeRequestDocument.self, from: Data(Self.refreshPUT.utf8))
        #expect(document.subscribeRequest.forceLogOut == nil)
        #expect(document.subscribeRequest.supported == nil)
        #expect(try Self.canonical(WireJSON.encode(document)) == Self.canonical(Data(Self.refreshPUT.utf8)))
    }

    @Test func forceLogOutIsAStringNeverABoolean() throws {
        let request = SubscribeRequest(service: [.call], forceLogOut: ForceLogOut(false))
        let json = String(decoding: try WireJSON.encode(request), as: UTF8.self)
        #expect(json.contains(#""forceLogOut":"false""#))
        let boolean = #"{"subscribeRequest":{"service":["call"],"forceLogOut":true}}"#
        #expect(throws: DecodingError.self) {
            try WireJSON.decode(SubscribeRequestDocument.self, from: Data(boolean.utf8))
        }
    }

    @Test func subscribeResponseRoundTrips() throws {
        let document = try WireJSON.decode(SubscribeResponseDocument.self, from: Data(Self.subscribeResponse.utf8))
        let response = document.subscribeResponse
        #expect(response.statusCode == 0)
        #expect(response.subscription == "/rest/version/1/user/alice@example.com/subscription/sub0")
        #expect(
            response.subscriptionParams?.notificationChannel == "/rest/version/1/user/alice@example.com/websocket/ch0")
        #expect(response.subscriptionParams?.expires == 3600)
        #expect(
            response.subscriptionParams?.turnCredentials == TurnCredentials(username: "turnuser", password: "turnpass"))
        let encoded = try WireJSON.encode(document)
        // Paths stay readable: no "\/" escapes.
        #expect(!String(decoding: encoded, as: UTF8.self).contains(#"\/"#))
        #expect(try Self.canonical(encoded) == Self.canonical(Data(Self.subscribeResponse.utf8)))
    }

    @Test func errorDocumentsHaveTheShapesTheClientReads() throws {
        let subscribeError = SubscribeResponseDocument(
            subscribeResponse: .init(
                statusCode: StatusCode.invalidCredentials.rawValue, reason: "Wrong username or password."))
        #expect(
            try Self.canonical(WireJSON.encode(subscribeError))
                == Self.canonical(
                    Data(#"{"subscribeResponse":{"statusCode":21,"reason":"Wrong username or password."}}"#.utf8)))
        let status = StatusDocument(statusCode: 40, reason: "No such resource.")
        #expect(
            try Self.canonical(WireJSON.encode(status))
                == Self.canonical(Data(#"{"statusCode":40,"reason":"No such resource."}"#.utf8)))
    }

    /// Every endpoint's error, written once for all envelopes, reads back as that endpoint's own
    /// document, where Kandy.js looks for the code.
    @Test func envelopedErrorsReadAsEachEndpointsDocument() throws {
        let status = ResponseStatus(statusCode: 47, reason: "No such contact.")
        func written(_ envelope: EnvelopedStatus.Envelope) throws -> Data {
            try WireJSON.encode(EnvelopedStatus(envelope, status))
        }
        #expect(
            try Self.canonical(written(.logRecord))
                == Self.canonical(Data(#"{"logRecord":{"statusCode":47,"reason":"No such contact."}}"#.utf8)))
        #expect(
            try WireJSON.decode(SubscribeResponseDocument.self, from: written(.subscribeResponse)).subscribeResponse
                .statusCode == 47)
        #expect(
            try WireJSON.decode(PresenceResponseDocument.self, from: written(.presenceResponse)).presenceResponse
                == status)
        #expect(
            try WireJSON.decode(PresenceWatcherResponseDocument.self, from: written(.presenceWatcherResponse))
                .presenceWatcherResponse == status)
        #expect(
            try WireJSON.decode(InstantMessageResponseDocument.self, from: written(.imResponse)).imResponse.reason
                == status.reason)
        #expect(
            try WireJSON.decode(CallControlResponseDocument.self, from: written(.callControlResponse))
                .callControlResponse.statusCode == 47)
        #expect(
            try WireJSON.decode(AddressBookResponseDocument.self, from: written(.addressBookResponse))
                .addressBookResponse == AddressBookResponse(statusCode: 47, reason: status.reason))
        #expect(
            try WireJSON.decode(DirectoryResponseDocument.self, from: written(.directory)).directory
                == DirectoryResponse(statusCode: 47, reason: status.reason))
        #expect(
            try WireJSON.decode(UserProfileDataDocument.self, from: written(.userProfileData)).userProfileData
                == UserProfileData(statusCode: 47, reason: status.reason))
        #expect(
            try WireJSON.decode(LogHistoryDocument.self, from: written(.logHistory)).logHistory
                == LogHistory(statusCode: 47, reason: status.reason))
        #expect(try WireJSON.decode(LogRecordDocument.self, from: written(.logRecord)).logRecord == status)
    }

    /// Spec §4.5 and §4.6.
    @Test func goneNotificationEnvelope() throws {
        let gone = NotificationDocument(notificationMessage: .gone(eventId: "17"))
        #expect(
            try Self.canonical(WireJSON.encode(gone))
                == Self.canonical(Data(#"{"notificationMessage":{"eventType":"gone","eventId":"17"}}"#.utf8)))
        let decoded = try WireJSON.decode(
            NotificationDocument.self, from: Data(#"{"notificationMessage":{"eventType":"gone","eventId":"e1"}}"#.utf8))
        #expect(decoded.notificationMessage.eventType == .gone)
        #expect(decoded.notificationMessage.eventId == "e1")
    }

    @Test func keepaliveText() throws {
        #expect(
            try Self.canonical(WireJSON.encode(KeepaliveMessage())) == Self.canonical(Data(KeepaliveMessage.text.utf8)))
    }

    @Test func decodingErrorsNameTheField() {
        let cases: [(String, String)] = [
            (
                #"{"subscribeRequest":{"expires":"soon","service":["call"]}}"#,
                "subscribeRequest.expires must be a number."
            ),
            (#"{"subscribeRequest":{"expires":60}}"#, "subscribeRequest.service is missing."),
            (#"{"subscribeRequest":{"service":"call"}}"#, "subscribeRequest.service must be an array."),
            (
                #"{"subscribeRequest":{"service":["call"],"forceLogOut":"maybe"}}"#,
                "subscribeRequest.forceLogOut has an invalid value."
            ),
            (#"{"subscribeRequest":"#, "The body is not valid JSON."),
            (#"{"other":{}}"#, "subscribeRequest is missing."),
        ]
        for (body, reason) in cases {
            do {
                _ = try WireJSON.decode(SubscribeRequestDocument.self, from: Data(body.utf8))
                Issue.record("\(body) decoded")
            } catch {
                #expect(WireJSON.explain(error) == reason, "\(body)")
            }
        }
    }

    @Test func statusCodesAvoidTheClientsSuccessValues() {
        // 0 is success everywhere and 2 is success on PUT for Kandy.js: no error may use them.
        for code in StatusCode.allCases where code != .success {
            #expect(code.rawValue != 0 && code.rawValue != 2)
            #expect(code.httpStatus >= 400)
        }
        #expect(Set(StatusCode.allCases.map(\.rawValue)).count == StatusCode.allCases.count)
    }

    /// Spec §12.1–§12.2, as Kandy.js sends them.
    @Test func presenceAndMessageRequestsDecodeAsSent() throws {
        let presence = try WireJSON.decode(
            PresenceRequestDocument.self,
            from: Data(#"{"presenceRequest":{"status":"open","activity":"on-the-phone","note":"hi"}}"#.utf8))
        #expect(presence.presenceRequest == PresenceState(status: .open, activity: .onThePhone, note: "hi"))
        let watch = try WireJSON.decode(
            PresenceWatcherRequestDocument.self,
            from: Data(#"{"presenceWatcherRequest":{"userList":["bob@x"],"action":"stopwatch"}}"#.utf8))
        #expect(watch.presenceWatcherRequest == PresenceWatcherRequest(userList: ["bob@x"], action: .stopwatch))
        let im = try WireJSON.decode(
            InstantMessageRequestDocument.self,
            from: Data(#"{"imRequest":{"charset":"UTF-8","toUrl":"sip:bob@x","message":"hé","type":"A2"}}"#.utf8))
        #expect(im.imRequest.recipient == "bob@x")
        #expect(im.imRequest.message == "hé")
    }

    /// The shapes Kandy.js reads: `presenceContact` at the top level with `overriding-willingness`,
    /// and notifications whose absent parameters are left out, not null.
    @Test func presenceAndMessageAnswersHaveTheShapesKandyJSReads() throws {
        let get = PresenceWatcherResponseDocument(
            presenceWatcherResponse: .success,
            presenceContact: [.init(user: "a@x", state: .init(status: .closed, activity: .away, note: "n"))])
        #expect(
            try Self.canonical(WireJSON.encode(get))
                == Self.canonical(
                    Data(
                        #"{"presenceWatcherResponse":{"statusCode":0},"presenceContact":[{"presentityUserId":"a@x","presence":{"person":{"activities":{"activityValue":"away","other":"n"},"overriding-willingness":{"overridingWillingnessValue":"closed"}}}}]}"#
                            .utf8)))
        let presence = NotificationDocument(
            notificationMessage: .presence(eventId: "e1", user: "bob@x", state: .init(status: .open, activity: .active))
        )
        #expect(
            try Self.canonical(WireJSON.encode(presence))
                == Self.canonical(
                    Data(
                        #"{"notificationMessage":{"eventType":"presenceWatcher","eventId":"e1","presenceWatcherNotificationParams":{"name":"bob@x","status":"open","activity":"active"}}}"#
                            .utf8)))
        let im = NotificationDocument(
            notificationMessage: .instantMessage(eventId: "9", from: "bob@x", text: "hello", time: 5))
        #expect(
            try Self.canonical(WireJSON.encode(im))
                == Self.canonical(
                    Data(
                        #"{"notificationMessage":{"eventType":"IM","eventId":"9","imnotificationParams":{"msgText":"hello","primaryContact":"sip:bob@x","time":5}}}"#
                            .utf8)))
        let answer = InstantMessageResponseDocument(imResponse: .init(statusCode: 0, messageId: "9"))
        #expect(
            try Self.canonical(WireJSON.encode(answer))
                == Self.canonical(Data(#"{"imResponse":{"statusCode":0,"messageId":"9"}}"#.utf8)))
    }

    /// Notifications whose text is restamped; fields that carry what looks like an eventId must
    /// come through untouched.
    static let restampable: [NotificationMessage] = [
        .gone(eventId: "5"),
        .missed(eventId: "5", count: 3),
        .presence(
            eventId: "5", user: "bob@x",
            state: .init(status: .open, activity: .active, note: #"{"notificationMessage":{"eventId":"1"}}"#)),
        .instantMessage(eventId: "5", from: "bob@x", text: #"say "eventId":"6" \ and 😀"#, time: 7),
    ]

    @Test(arguments: restampable)
    func aRestampedTextIsTheDocumentUnderItsNewId(message: NotificationMessage) throws {
        let text = try WireJSON.text(NotificationDocument(notificationMessage: message))
        let restamped = try #require(NotificationDocument.restamped(text, eventID: "1234567890"))
        var expected = message
        expected.eventId = "1234567890"
        #expect(
            try WireJSON.decode(NotificationDocument.self, from: Data(restamped.utf8)).notificationMessage == expected)
    }

    @Test func aTextWithoutAnEventIdIsNotRestamped() {
        for text in [#"{"statusCode":40}"#, #"{"notificationMessage":{"eventType":"gone","eventId":"17"#, ""] {
            #expect(NotificationDocument.restamped(text, eventID: "18") == nil, "\(text)")
        }
    }

    static func canonical(_ data: Data) throws -> NSDictionary {
        try JSONSerialization.jsonObject(with: data) as! NSDictionary
    }
}
