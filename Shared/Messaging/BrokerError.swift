/// An error from the broker or the AMQP client, with a stable code and the underlying message.
public struct BrokerError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The TCP connection or the AMQP handshake failed.
        public static let connectionFailed = Code(name: "connectionFailed")
        /// The connection was lost (socket closed, heartbeat missed, broker closed it).
        public static let connectionLost = Code(name: "connectionLost")
        /// The broker closed the channel or connection because of a request (for example a bad declaration).
        public static let brokerRejected = Code(name: "brokerRejected")
        /// The broker answered a publish with basic.nack: it did not take responsibility for the message.
        public static let publishNacked = Code(name: "publishNacked")
        /// The broker did not confirm a publish before its deadline (even across reconnections).
        public static let publishTimedOut = Code(name: "publishTimedOut")
        /// The publisher or consumer was closed before the operation finished.
        public static let closed = Code(name: "closed")
        /// A queue exists with another type or arguments than declared (a classic queue where a quorum queue is
        /// declared): `QueueMigration` moves it.
        public static let queueTypeMismatch = Code(name: "queueTypeMismatch")
        /// A configuration value (URL, credentials) is invalid.
        public static let invalidConfiguration = Code(name: "invalidConfiguration")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "BrokerError(\(code)): \(message)" }
}
