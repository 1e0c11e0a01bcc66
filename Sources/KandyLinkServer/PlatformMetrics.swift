import Prometheus

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
    }

    private static var requests: MetricNameDescriptor {
        .init(
            namespace: "kandylink", subsystem: "http", metricName: "requests", unitName: "total",
            helpText: "HTTP responses by status.")
    }

    func countRequest(status: Int) {
        registry.makeCounter(descriptor: Self.requests, labels: [("status", String(status))]).increment()
    }

    func render(subscriptionCount: Int, channelCount: Int) -> String {
        subscriptions.set(Double(subscriptionCount))
        openChannels.set(Double(channelCount))
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
