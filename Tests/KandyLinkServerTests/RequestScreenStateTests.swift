import KandyLinkProtocol
import Testing

@testable import KandyLinkServer

/// ``RequestScreen/State`` played without a channel: each row is a connection's parts, read and
/// written in order, with the action the state answers each with.
@Suite struct RequestScreenStateTests {
    typealias State = RequestScreen.State

    enum Step: Equatable {
        case head(State.Head, keepAlive: Bool = true)
        case body, end, parseError, bodyDeadline
        case respondHead(closing: Bool = false)
        case respondBody, respondEnd
    }

    enum Action: Equatable {
        case inbound(State.Inbound)
        case outbound(State.Outbound)
        case tellsReader(Bool)
    }

    static let broken = State.Refusal(PlatformError(.malformedRequest, "not HTTP/1.1"))
    static let noHost = State.Refusal(PlatformError(.malformedRequest, "no Host"), origin: "https://app.example.org")

    static let pass = Action.inbound(.pass)
    static let drop = Action.inbound(.drop)
    static let write = Action.outbound(.write)

    /// A request answered, from head to the response's end.
    static let exchange: [(Step, Action)] = [
        (.head(.request), pass), (.end, .inbound(.passStoppingBodyDeadline)),
        (.respondHead(), write), (.respondEnd, write),
    ]

    static let rows: [(name: String, steps: [(Step, Action)])] = [
        ("a kept-alive request and its answer leave the connection open", exchange + exchange),
        (
            "a body's first part starts its deadline, its end stops it",
            [
                (.head(.request), pass), (.body, .inbound(.passStartingBodyDeadline)), (.body, pass),
                (.end, .inbound(.passStoppingBodyDeadline)),
            ]
        ),
        (
            "a body too slow in coming: its reader is told, then nothing more is read",
            [
                (.head(.request), pass), (.body, .inbound(.passStartingBodyDeadline)),
                (.bodyDeadline, .tellsReader(true)), (.body, drop), (.end, drop), (.parseError, drop),
                (.respondHead(closing: true), write), (.respondEnd, .outbound(.writeAndClose)),
            ]
        ),
        (
            "a deadline that fires after the end is nothing",
            [
                (.head(.request), pass), (.body, .inbound(.passStartingBodyDeadline)),
                (.end, .inbound(.passStoppingBodyDeadline)), (.bodyDeadline, .tellsReader(false)),
            ]
        ),
        ("the first request's handshake ends the screen's work", [(.head(.handshake), .inbound(.passAndLeave))]),
        ("a later handshake is passed on, to be redirected", exchange + [(.head(.handshake), pass)]),
        ("a refused first head is answered at once", [(.head(.refused(noHost)), .inbound(.answer(noHost)))]),
        (
            "a refused head behind an unanswered request waits for its answer",
            [
                (.head(.request), pass), (.end, .inbound(.passStoppingBodyDeadline)),
                (.head(.refused(noHost)), drop), (.body, drop), (.respondHead(), write),
                (.respondEnd, .outbound(.writeThenAnswer(noHost))), (.head(.request), drop),
            ]
        ),
        (
            "bytes that are not HTTP between requests are answered in turn",
            exchange + [(.parseError, .inbound(.answer(broken))), (.head(.request), drop)]
        ),
        (
            "behind two pipelined requests, after both answers",
            [
                (.head(.request), pass), (.end, .inbound(.passStoppingBodyDeadline)),
                (.head(.request), pass), (.end, .inbound(.passStoppingBodyDeadline)),
                (.parseError, drop), (.respondHead(), write), (.respondEnd, write),
                (.respondHead(), write), (.respondEnd, .outbound(.writeThenAnswer(broken))),
            ]
        ),
        (
            "inside a body they go on to its reader",
            [(.head(.request), pass), (.body, .inbound(.passStartingBodyDeadline)), (.parseError, pass)]
        ),
        (
            "a response that says Connection: close ends the connection; what follows goes unanswered",
            [
                (.head(.request), pass), (.end, .inbound(.passStoppingBodyDeadline)),
                (.head(.request), pass), (.end, .inbound(.passStoppingBodyDeadline)), (.parseError, drop),
                (.respondHead(closing: true), write), (.respondEnd, .outbound(.writeAndClose)),
                (.head(.request), drop), (.parseError, drop),
            ]
        ),
        (
            "a request that did not ask to keep the connection ends it",
            [
                (.head(.request, keepAlive: false), pass), (.end, .inbound(.passStoppingBodyDeadline)),
                (.respondHead(), write), (.respondEnd, .outbound(.writeAndClose)),
            ]
        ),
        (
            "a response to no request is dropped and ends the connection",
            [
                (.respondHead(), .outbound(.discard)), (.respondBody, .outbound(.discard)),
                (.respondEnd, .outbound(.discardAndClose)),
            ]
        ),
        (
            "a second response to one request is dropped",
            exchange + [(.respondHead(), .outbound(.discard)), (.respondEnd, .outbound(.discardAndClose))]
        ),
    ]

    @Test(arguments: rows)
    func eachPartMeetsTheRulesInTurn(name: String, steps: [(Step, Action)]) {
        var state = State()
        for (index, (step, expected)) in steps.enumerated() {
            let action: Action =
                switch step {
                case .head(let head, let keepAlive): .inbound(state.read(head, keepAlive: keepAlive))
                case .body: .inbound(state.readBody())
                case .end: .inbound(state.readEnd())
                case .parseError: .inbound(state.readError(Self.broken))
                case .bodyDeadline: .tellsReader(state.bodyDeadlinePassed())
                case .respondHead(let closing): .outbound(state.writeHead(closing: closing))
                case .respondBody: .outbound(state.writeBody())
                case .respondEnd: .outbound(state.writeEnd())
                }
            #expect(action == expected, "\(name), step \(index + 1) (\(step))")
        }
    }
}
