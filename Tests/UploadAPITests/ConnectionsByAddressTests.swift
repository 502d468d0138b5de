import NIOCore
import Testing
@testable import UploadAPI

/// Connections are counted by client address: an IPv4 address, or an IPv6 /64 (what one
/// subscriber is given), an IPv4-mapped IPv6 address as its IPv4 one.
struct ConnectionsByAddressTests {
    static func key(_ ip: String) throws -> [UInt8]? { ConnectionsByAddress.key(of: try SocketAddress(ipAddress: ip, port: 443)) }

    @Test func anIPv6Client_isCountedByItsSlash64_andAMappedIPv4ClientByItsIPv4Address() throws {
        #expect(try Self.key("2001:db8::1") == Self.key("2001:db8::ffff:ffff:ffff"), "one /64")
        #expect(try Self.key("2001:db8::1") != Self.key("2001:db8:0:1::1"), "the next /64")
        #expect(try Self.key("2001:db8::1")?.count == 8)
        #expect(try Self.key("::ffff:10.0.0.1") == Self.key("10.0.0.1"))
        #expect(try Self.key("10.0.0.1") == [10, 0, 0, 1])
        #expect(try Self.key("10.0.0.1") != Self.key("10.0.0.2"))
        #expect(ConnectionsByAddress.key(of: nil) == nil)
    }
}
