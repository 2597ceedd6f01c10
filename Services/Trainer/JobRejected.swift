/// Why a job could not run: it is reported as a failed run, not retried. `code` for programs, `message`
/// (the failed run's reason) for people.
struct JobRejected: Error, CustomStringConvertible, Equatable {
    struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        var description: String { name }

        /// A newer dataset version superseded the job's sweep.
        static let superseded = Code(name: "superseded")
        /// The job names a dataset version that does not exist.
        static let unknownDataset = Code(name: "unknownDataset")
        /// The job's or its dataset's spec is unreadable or contradicts the other.
        static let invalidSpec = Code(name: "invalidSpec")
        /// The dataset is too small for the job's window.
        static let insufficientData = Code(name: "insufficientData")
    }

    let code: Code
    let message: String
    var description: String { message }

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}
