import Prometheus
import Synchronization

/// What `/metrics` reports, in Prometheus text format. Each platform has its own registry, so
/// several platforms in one process (tests, the embedded demo) do not mix their numbers.
final class PlatformMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let subscriptions: Gauge
    let openChannels: Gauge
    let notificationsSent: Counter
    let evictions: Counter
    let expirations: Counter
    let idleChannelsClosed: Counter
    let instantMessages: Counter
    let notificationsQueued: Counter
    let callsActive: Gauge
    let callsStarted: Counter
    let callsAnswered: Counter
    let callSetup: DurationHistogram
    /// Each status's counter once made: the registry's lookup (its lock, the labels' key, the
    /// descriptor's name) was 1.5 % of an instant message's CPU.
    private let requestCounters = Mutex<[Int: Counter]>([:])

    init() {
        subscriptions = registry.makeGauge(
            descriptor: .init(
                namespace: "kandylink", metricName: "subscriptions", unitName: "", helpText: "Live subscriptions."))
        openChannels = registry.makeGauge(
            descriptor: .init(
                namespace: "kandylink", metricName: "open_channels", unitName: "",
                helpText: "Open notification channel sockets."))
        notificationsSent = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "notifications_sent", unitName: "total",
                helpText: "Notifications queued on an open channel."))
        evictions = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "forced_logouts", unitName: "total",
                helpText: "Sessions ended by another session's forceLogOut."))
        expirations = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "expired_subscriptions", unitName: "total",
                helpText: "Subscriptions ended because they were not refreshed."))
        idleChannelsClosed = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "idle_channels_closed", unitName: "total",
                helpText: "Channel sockets closed for missing keepalives."))
        instantMessages = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "instant_messages", unitName: "total",
                helpText: "Instant messages accepted for delivery."))
        notificationsQueued = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "notifications_queued", unitName: "total",
                helpText: "Notifications stored for a channel whose socket was down."))
        callsActive = registry.makeGauge(
            descriptor: .init(
                namespace: "kandylink", metricName: "calls_active", unitName: "",
                helpText: "Calls ringing or answered (on every node sharing the store)."))
        callsStarted = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "calls_started", unitName: "total",
                helpText: "Calls that rang a callee."))
        callsAnswered = registry.makeCounter(
            descriptor: .init(
                namespace: "kandylink", metricName: "calls_answered", unitName: "total", helpText: "Calls answered."))
        callSetup = registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "kandylink", metricName: "call_setup", unitName: "seconds",
                helpText: "From callStart to the callee's answer."),
            buckets: [.seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(20), .seconds(30), .seconds(60)])
    }

    private static var callsFailed: MetricNameDescriptor {
        .init(
            namespace: "kandylink", metricName: "calls_failed", unitName: "total",
            helpText: "Calls that were refused or ended unanswered, by reason.")
    }

    /// A call refused at its start, or ended before it was answered.
    func countFailedCall(_ reason: CallFailure) {
        registry.makeCounter(descriptor: Self.callsFailed, labels: [("reason", reason.rawValue)]).increment()
    }

    enum CallFailure: String {
        case unknownCallee = "unknown_callee"
        case unavailable, busy, declined, cancelled
        case noAnswer = "no_answer"
        case partyGone = "party_gone"
    }

    private static var requests: MetricNameDescriptor {
        .init(
            namespace: "kandylink", subsystem: "http", metricName: "requests", unitName: "total",
            helpText: "HTTP responses by status.")
    }

    func countRequest(status: Int) {
        let counter = requestCounters.withLock { counters in
            if let made = counters[status] { return made }
            let made = registry.makeCounter(descriptor: Self.requests, labels: [("status", String(status))])
            counters[status] = made
            return made
        }
        counter.increment()
    }

    func render(subscriptionCount: Int, channelCount: Int, callCount: Int) -> String {
        subscriptions.set(Double(subscriptionCount))
        callsActive.set(Double(callCount))
        openChannels.set(Double(channelCount))
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
