import CRabbitMQ
import Foundation

/// One AMQP connection with one channel, as rabbitmq-c sees it.
///
/// Not thread-safe by design: rabbitmq-c forbids using a connection from two threads, so an
/// `AMQPSession` is created, used and closed by the single I/O thread of its `Publisher` or `Consumer`.
final class AMQPSession {
    static let channel: amqp_channel_t = 1

    private let connection: amqp_connection_state_t
    private(set) var isOpen = true

    /// What a frame read from the socket means to Candlecast.
    enum Event {
        case confirmed(deliveryTag: UInt64, multiple: Bool)
        case rejected(deliveryTag: UInt64, multiple: Bool)
        case delivery(ReceivedMessage)
        case consumerCancelled
        case blocked(reason: String)
        case unblocked
        case ignored
    }

    /// A delivered message, copied out of rabbitmq-c's buffers.
    struct ReceivedMessage {
        var deliveryTag: UInt64
        var redelivered: Bool
        var exchange: String
        var routingKey: String
        var body: [UInt8]
        var properties: MessageProperties
    }

    /// The node this session is connected to.
    let endpoint: BrokerConfiguration.Endpoint

    /// Connects to the first of the configuration's nodes that answers, trying them in order from `preferred`
    /// (wrapping around). Returns the session and the index of its node.
    static func connect(_ configuration: BrokerConfiguration, preferring preferred: Int = 0) throws -> (AMQPSession, Int) {
        let count = configuration.endpoints.count
        guard count > 0 else { throw BrokerError(.invalidConfiguration, "the broker configuration names no node") }
        var failures: [String] = []
        for offset in 0..<count {
            let index = (max(0, preferred) + offset) % count
            do {
                return (try AMQPSession(configuration: configuration, endpoint: configuration.endpoints[index]), index)
            } catch let error as BrokerError where count > 1 && error.code == .connectionFailed {
                failures.append(error.message)
            }
        }
        throw BrokerError(.connectionFailed, "no broker node answered: " + failures.joined(separator: "; "))
    }

    convenience init(configuration: BrokerConfiguration) throws {
        guard let first = configuration.endpoints.first else {
            throw BrokerError(.invalidConfiguration, "the broker configuration names no node")
        }
        try self.init(configuration: configuration, endpoint: first)
    }

    init(configuration: BrokerConfiguration, endpoint: BrokerConfiguration.Endpoint) throws {
        guard let connection = amqp_new_connection() else {
            throw BrokerError(.connectionFailed, "amqp_new_connection returned nil")
        }
        self.connection = connection
        self.endpoint = endpoint
        do {
            let socket = try Self.socket(on: connection, tls: configuration.tls)
            var timeout = timeval(configuration.connectTimeout)
            let status = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout)
            guard status == AMQP_STATUS_OK.rawValue else {
                throw BrokerError(
                    .connectionFailed,
                    "cannot reach \(endpoint)\(configuration.tls == nil ? "" : " over TLS"): \(String(cString: amqp_error_string2(status)))"
                )
            }
            amqp_set_handshake_timeout(connection, &timeout)
            // The broker lists the connection under this name (rabbitmqctl list_connections, the management UI).
            var properties = FieldTableBuilder()
            defer { properties.deallocate() }
            var table = properties.table(["connection_name": .string(configuration.connectionName)])
            try Self.check(
                candlecast_amqp_login_with_properties(
                    connection, configuration.virtualHost, 0, 131_072, Int32(configuration.heartbeatSeconds), &table,
                    configuration.user, configuration.password),
                context: "login as \(configuration.user) to vhost \(configuration.virtualHost)", code: .connectionFailed)
            amqp_channel_open(connection, Self.channel)
            try checkLastReply("channel.open", code: .connectionFailed)
        } catch {
            amqp_connection_close(connection, AMQP_REPLY_SUCCESS)
            amqp_destroy_connection(connection)
            isOpen = false
            throw error
        }
    }

    /// A plain TCP socket, or a TLS one that verifies the broker's certificate chain and host name.
    private static func socket(on connection: amqp_connection_state_t, tls: BrokerConfiguration.TLS?) throws -> OpaquePointer {
        guard let tls else {
            guard let socket = amqp_tcp_socket_new(connection) else {
                throw BrokerError(.connectionFailed, "amqp_tcp_socket_new returned nil")
            }
            return socket
        }
        guard let socket = amqp_ssl_socket_new(connection) else {
            throw BrokerError(.connectionFailed, "amqp_ssl_socket_new returned nil")
        }
        amqp_ssl_socket_set_verify_peer(socket, 1)
        amqp_ssl_socket_set_verify_hostname(socket, 1)
        let status = amqp_ssl_socket_set_cacert(socket, tls.caFile)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw BrokerError(
                .invalidConfiguration, "cannot load the CA file \(tls.caFile): \(String(cString: amqp_error_string2(status)))")
        }
        if let certificate = tls.certificateFile, let key = tls.keyFile {
            let status = amqp_ssl_socket_set_key(socket, certificate, key)
            guard status == AMQP_STATUS_OK.rawValue else {
                throw BrokerError(
                    .invalidConfiguration,
                    "cannot load the client certificate \(certificate): \(String(cString: amqp_error_string2(status)))")
            }
        }
        return socket
    }

    /// Closes the channel and connection politely, then frees rabbitmq-c's state. Safe to call twice.
    func close() {
        guard isOpen else { return }
        isOpen = false
        amqp_channel_close(connection, Self.channel, AMQP_REPLY_SUCCESS)
        amqp_connection_close(connection, AMQP_REPLY_SUCCESS)
        amqp_destroy_connection(connection)
    }

    /// Frees the connection without the closing handshake, after the socket is already gone.
    func abandon() {
        guard isOpen else { return }
        isOpen = false
        amqp_destroy_connection(connection)
    }

    var socketDescriptor: Int32 { amqp_get_sockfd(connection) }

    /// Whether rabbitmq-c already holds bytes or frames that a poll on the socket would not announce.
    var hasBufferedInput: Bool { amqp_frames_enqueued(connection) != 0 || amqp_data_in_buffer(connection) != 0 }

    // MARK: Declarations

    func declare(_ topology: Topology) throws {
        // rabbitmq-c keeps the pointers of amqp_bytes_t: the names must outlive the call.
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        for exchange in topology.exchanges {
            amqp_exchange_declare(
                connection, Self.channel, names.bytes(exchange.name), names.bytes(exchange.kind.rawValue),
                0, 1, 0, 0, amqp_empty_table)
            try checkLastReply("exchange.declare \(exchange.name)", code: .brokerRejected)
        }
        for queue in topology.queues {
            let arguments = names.table(queue.arguments)
            amqp_queue_declare(connection, Self.channel, names.bytes(queue.name), 0, 1, 0, 0, arguments)
            do {
                try checkLastReply("queue.declare \(queue.name)", code: .brokerRejected)
            } catch let error as BrokerError where error.message.contains("inequivalent arg") {
                // A queue's type and arguments cannot change in place: an older deployment's classic queue blocks the
                // quorum one.
                throw BrokerError(
                    .queueTypeMismatch,
                    "\(error.message); an earlier version declared the queue with other arguments (a classic queue): stop the "
                        + "services and run `candlecast queues migrate` (README, Scaling out)")
            }
        }
        for binding in topology.bindings {
            amqp_queue_bind(
                connection, Self.channel, names.bytes(binding.queue), names.bytes(binding.exchange),
                names.bytes(binding.routingKey), amqp_empty_table)
            try checkLastReply("queue.bind \(binding.queue) to \(binding.exchange) on \(binding.routingKey)", code: .brokerRejected)
        }
    }

    /// Number of messages ready in a queue (passive declare).
    func messageCount(queue: String) throws -> UInt32 {
        // rabbitmq-c keeps the pointers of amqp_bytes_t: the names must outlive the call.
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        let reply = amqp_queue_declare(connection, Self.channel, names.bytes(queue), 1, 0, 0, 0, amqp_empty_table)
        try checkLastReply("queue.declare passive \(queue)", code: .brokerRejected)
        return reply?.pointee.message_count ?? 0
    }

    /// Messages ready and consumers attached (passive declare); nil when the queue does not exist. A missing
    /// queue closes the channel, so the session is no longer usable after nil.
    func queueState(_ queue: String) throws -> (messages: Int, consumers: Int)? {
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        let reply = amqp_queue_declare(connection, Self.channel, names.bytes(queue), 1, 0, 0, 0, amqp_empty_table)
        do {
            try checkLastReply("queue.declare passive \(queue)", code: .brokerRejected)
        } catch let error as BrokerError where error.message.contains("channel closed by broker: 404 NOT_FOUND") {
            return nil
        }
        return (Int(reply?.pointee.message_count ?? 0), Int(reply?.pointee.consumer_count ?? 0))
    }

    func unbind(_ binding: Topology.Binding) throws {
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        amqp_queue_unbind(
            connection, Self.channel, names.bytes(binding.queue), names.bytes(binding.exchange), names.bytes(binding.routingKey),
            amqp_empty_table)
        try checkLastReply("queue.unbind \(binding.queue) from \(binding.exchange) on \(binding.routingKey)", code: .brokerRejected)
    }

    /// One message taken from the queue (basic.get, to be acked), or nil when the queue is empty.
    func get(queue: String) throws -> ReceivedMessage? {
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        let reply = amqp_basic_get(connection, Self.channel, names.bytes(queue), 0)
        try Self.check(reply, context: "basic.get \(queue)", code: .brokerRejected)
        guard reply.reply.id == CANDLECAST_BASIC_GET_OK_METHOD else { return nil }
        let ok = reply.reply.decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        return try readContent(
            channel: Self.channel, deliveryTag: ok.delivery_tag, redelivered: ok.redelivered != 0, exchange: ok.exchange.string,
            routingKey: ok.routing_key.string)
    }

    /// Reads the content frames that follow a basic.deliver or basic.get-ok. The method's fields are passed in,
    /// copied already: reading the content reuses the pool they live in.
    private func readContent(channel: amqp_channel_t, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
        throws -> ReceivedMessage
    {
        var message = amqp_message_t()
        let reply = amqp_read_message(connection, channel, &message, 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else { throw lost("read message content", status: reply.library_error) }
        defer { amqp_destroy_message(&message) }
        return ReceivedMessage(
            deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange, routingKey: routingKey,
            body: message.body.byteArray, properties: Self.properties(message.properties))
    }

    /// Waits until the broker confirms every publish up to `deliveryTag` (after `enablePublisherConfirms`).
    func awaitConfirm(_ deliveryTag: UInt64, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            switch try nextEvent(timeout: .milliseconds(200)) {
            case .confirmed(let tag, let multiple) where tag == deliveryTag || (multiple && tag >= deliveryTag):
                return
            case .rejected(let tag, let multiple) where tag == deliveryTag || (multiple && tag >= deliveryTag):
                throw BrokerError(.publishNacked, "the broker nacked message \(deliveryTag)")
            default:
                continue
            }
        }
        throw BrokerError(.publishTimedOut, "no confirm for message \(deliveryTag) within \(timeout)")
    }

    func purge(queue: String) throws {
        // rabbitmq-c keeps the pointers of amqp_bytes_t: the names must outlive the call.
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        amqp_queue_purge(connection, Self.channel, names.bytes(queue))
        try checkLastReply("queue.purge \(queue)", code: .brokerRejected)
    }

    func delete(queue: String) throws {
        // rabbitmq-c keeps the pointers of amqp_bytes_t: the names must outlive the call.
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        amqp_queue_delete(connection, Self.channel, names.bytes(queue), 0, 0)
        try checkLastReply("queue.delete \(queue)", code: .brokerRejected)
    }

    /// Declares a queue only this connection may use, deleted when it closes; refused (405 RESOURCE_LOCKED) while
    /// another connection has it: a lock across processes.
    func declareExclusive(_ queue: String) throws {
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        amqp_queue_declare(connection, Self.channel, names.bytes(queue), 0, 0, 1, 1, amqp_empty_table)
        try checkLastReply("queue.declare exclusive \(queue)", code: .brokerRejected)
    }

    // MARK: Publishing

    func enablePublisherConfirms() throws {
        amqp_confirm_select(connection, Self.channel)
        try checkLastReply("confirm.select", code: .brokerRejected)
        confirmsEnabled = true
    }

    private var confirmsEnabled = false
    /// Publishes on this channel so far: in confirm mode, the delivery tag of the last one.
    private(set) var lastPublishTag: UInt64 = 0

    func enablePublisherConfirmsOnce() throws {
        if !confirmsEnabled { try enablePublisherConfirms() }
    }

    func publish(_ message: OutgoingMessage) throws {
        var builder = FieldTableBuilder()
        defer { builder.deallocate() }
        var properties = amqp_basic_properties_t()
        let fields = message.properties
        var flags: UInt32 = 0
        if let contentType = fields.contentType {
            properties.content_type = builder.bytes(contentType)
            flags |= UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG)
        }
        if let deliveryMode = fields.deliveryMode {
            properties.delivery_mode = deliveryMode
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if let messageID = fields.messageID {
            properties.message_id = builder.bytes(messageID)
            flags |= UInt32(AMQP_BASIC_MESSAGE_ID_FLAG)
        }
        if let correlationID = fields.correlationID {
            properties.correlation_id = builder.bytes(correlationID)
            flags |= UInt32(AMQP_BASIC_CORRELATION_ID_FLAG)
        }
        if let type = fields.type {
            properties.type = builder.bytes(type)
            flags |= UInt32(AMQP_BASIC_TYPE_FLAG)
        }
        if let timestamp = fields.timestamp {
            properties.timestamp = timestamp
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        if !fields.headers.isEmpty {
            properties.headers = builder.table(fields.headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        properties._flags = flags
        let exchange = builder.bytes(message.exchange)
        let routingKey = builder.bytes(message.routingKey)
        // The body is only read during the call: lend rabbitmq-c the array's storage instead of copying it.
        let status = message.body.withUnsafeBytes { body in
            amqp_basic_publish(
                connection, Self.channel, exchange, routingKey, 0, 0, &properties,
                amqp_bytes_t(len: body.count, bytes: body.count > 0 ? UnsafeMutableRawPointer(mutating: body.baseAddress) : nil))
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw lost("basic.publish", status: status)
        }
        lastPublishTag += 1
    }

    // MARK: Consuming

    func consume(queue: String, prefetch: UInt16, consumerTag: String) throws {
        // rabbitmq-c keeps the pointers of amqp_bytes_t: the names must outlive the call.
        var names = FieldTableBuilder()
        defer { names.deallocate() }
        amqp_basic_qos(connection, Self.channel, 0, prefetch, 0)
        try checkLastReply("basic.qos", code: .brokerRejected)
        amqp_basic_consume(
            connection, Self.channel, names.bytes(queue), names.bytes(consumerTag), 0, 0, 0, amqp_empty_table)
        try checkLastReply("basic.consume \(queue)", code: .brokerRejected)
    }

    func ack(_ deliveryTag: UInt64) throws {
        let status = amqp_basic_ack(connection, Self.channel, deliveryTag, 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw lost("basic.ack", status: status) }
    }

    func reject(_ deliveryTag: UInt64, requeue: Bool) throws {
        let status = amqp_basic_nack(connection, Self.channel, deliveryTag, 0, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw lost("basic.nack", status: status) }
    }

    // MARK: Reading frames

    /// Reads at most one frame, waiting up to `timeout`. Returns nil when nothing arrived in time.
    /// Also sends a heartbeat when one is due, and fails when the broker's heartbeats stopped.
    func nextEvent(timeout: Duration) throws -> Event? {
        amqp_maybe_release_buffers(connection)
        var frame = amqp_frame_t()
        var wait = timeval(timeout)
        let status = amqp_simple_wait_frame_noblock(connection, &frame, &wait)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
        guard status == AMQP_STATUS_OK.rawValue else { throw lost("wait frame", status: status) }
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return .ignored }
        let method = frame.payload.method
        switch method.id {
        case CANDLECAST_BASIC_ACK_METHOD:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .confirmed(deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0)
        case CANDLECAST_BASIC_NACK_METHOD:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .rejected(deliveryTag: nack.delivery_tag, multiple: nack.multiple != 0)
        case CANDLECAST_BASIC_DELIVER_METHOD:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            return .delivery(
                try readContent(
                    channel: frame.channel, deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0,
                    exchange: deliver.exchange.string, routingKey: deliver.routing_key.string))
        case CANDLECAST_BASIC_CANCEL_METHOD:
            return .consumerCancelled
        case CANDLECAST_CONNECTION_BLOCKED_METHOD:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            return .blocked(reason: blocked.reason.string)
        case CANDLECAST_CONNECTION_UNBLOCKED_METHOD:
            return .unblocked
        case CANDLECAST_CHANNEL_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            throw BrokerError(.brokerRejected, "broker closed the channel: \(close.reply_code) \(close.reply_text.string)")
        case CANDLECAST_CONNECTION_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            throw BrokerError(.connectionLost, "broker closed the connection: \(close.reply_code) \(close.reply_text.string)")
        default:
            return .ignored
        }
    }

    private static func properties(_ properties: amqp_basic_properties_t) -> MessageProperties {
        let flags = properties._flags
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        return MessageProperties(
            contentType: has(AMQP_BASIC_CONTENT_TYPE_FLAG) ? properties.content_type.string : nil,
            deliveryMode: has(AMQP_BASIC_DELIVERY_MODE_FLAG) ? properties.delivery_mode : nil,
            messageID: has(AMQP_BASIC_MESSAGE_ID_FLAG) ? properties.message_id.string : nil,
            correlationID: has(AMQP_BASIC_CORRELATION_ID_FLAG) ? properties.correlation_id.string : nil,
            type: has(AMQP_BASIC_TYPE_FLAG) ? properties.type.string : nil,
            timestamp: has(AMQP_BASIC_TIMESTAMP_FLAG) ? properties.timestamp : nil,
            headers: has(AMQP_BASIC_HEADERS_FLAG) ? FieldTableReader.headers(properties.headers) : [:])
    }

    // MARK: Errors

    private func lost(_ operation: String, status: Int32) -> BrokerError {
        BrokerError(.connectionLost, "\(operation) failed: \(String(cString: amqp_error_string2(status)))")
    }

    private func checkLastReply(_ operation: String, code: BrokerError.Code) throws {
        try Self.check(amqp_get_rpc_reply(connection), context: operation, code: code)
    }

    private static func check(_ reply: amqp_rpc_reply_t, context: String, code: BrokerError.Code) throws {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            throw BrokerError(
                reply.library_error == AMQP_STATUS_TIMEOUT.rawValue ? code : (code == .brokerRejected ? .connectionLost : code),
                "\(context): \(String(cString: amqp_error_string2(reply.library_error)))")
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            switch reply.reply.id {
            case CANDLECAST_CONNECTION_CLOSE_METHOD:
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                throw BrokerError(code, "\(context): connection closed by broker: \(close.reply_code) \(close.reply_text.string)")
            case CANDLECAST_CHANNEL_CLOSE_METHOD:
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                throw BrokerError(code, "\(context): channel closed by broker: \(close.reply_code) \(close.reply_text.string)")
            default:
                throw BrokerError(code, "\(context): unexpected server method \(reply.reply.id)")
            }
        default:
            throw BrokerError(code, "\(context): no reply")
        }
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
