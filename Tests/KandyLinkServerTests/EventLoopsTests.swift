import Testing

@testable import KandyLinkServer

@Suite struct EventLoopsTests {
    @Test(arguments: [
        ("Name:\tkandy-link\nCpus_allowed_list:\t0\n", 1),
        ("Cpus_allowed_list:\t0-1\nMems_allowed:\t1\n", 2),
        ("Cpus_allowed_list:\t0-3,8,10-11\n", 7),
        ("Cpus_allowed_list:\t5\n", 1),
    ])
    func countsTheCPUsAllowed(status: String, expected: Int) {
        #expect(EventLoops.allowedCPUs(status: status) == expected)
    }

    @Test(arguments: [
        "Name:\tkandy-link\n", "Cpus_allowed_list:\t\n", "Cpus_allowed_list:\t3-1\n", "Cpus_allowed_list:\t0-\n",
        "Cpus_allowed_list:\tx\n", "Cpus_allowed_list:\t0-1-2\n",
    ])
    func refusesWhatIsNotACPUList(status: String) {
        #expect(EventLoops.allowedCPUs(status: status) == nil)
    }

    /// This process's own list, as the kernel writes it, parses to at least one CPU.
    @Test func readsThisProcess() throws {
        let count = try #require(EventLoops.allowedCPUs())
        #expect(count >= 1)
    }
}
