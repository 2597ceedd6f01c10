import Foundation
import Synchronization

/// A fixed team of threads that run one network pass together, each member on its own share of every layer's
/// units (model parallelism). Members meet at a barrier after every time step: at batch 32 one LSTM step is far
/// too short for a thread pool's hand-off, and splitting the units halves what each thread's GEMM packs per step.
///
/// The caller's thread is member 0; the other members are threads of the team's own (never the cooperative pool),
/// which spin briefly for the next pass and then park. Members flush denormals for their whole life.
/// `@unchecked Sendable`: `job` is written only by the caller before a pass is published (release) and read by the
/// members after they see it (acquire).
final class ComputeTeam: @unchecked Sendable {
    let size: Int
    private let barrier: SpinBarrier
    private nonisolated(unsafe) var job: (@Sendable (TeamMember) -> Void)?
    /// Bumped once per pass; a member runs the pass whose number it sees.
    private let passNumber = Atomic<Int>(0)
    private let finishedMembers = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let parking: [ParkingSpot]
    /// One pass at a time: the team may be shared by callers on different threads (forecasts).
    private let passLock = NSLock()

    /// A team of `size` members (at least 1); a team of one runs every pass on the caller's thread alone.
    init(size: Int) {
        self.size = max(1, size)
        barrier = SpinBarrier(parties: self.size)
        parking = (1..<self.size).map { _ in ParkingSpot() }
        for member in 1..<self.size {
            let thread = Thread { [self] in workerLoop(member: member) }
            thread.name = "candlecast-model-\(member)"
            thread.start()
        }
    }

    /// The team forecasts share: as many members as the model's work can use on this machine (2 at most: one
    /// forecast's steps are a few microseconds of work per member).
    static let forecasting = ComputeTeam(size: min(2, ProcessInfo.processInfo.activeProcessorCount))

    /// Runs `body` once on every member at the same time and returns when all have finished. Blocks the caller:
    /// call it from a dedicated thread, not the cooperative pool.
    func run(_ body: @escaping @Sendable (TeamMember) -> Void) {
        guard size > 1 else {
            body(.alone)
            return
        }
        passLock.lock()
        defer { passLock.unlock() }
        job = body
        finishedMembers.store(0, ordering: .relaxed)
        // Sequentially consistent, as the parking flag: a member parking now either sees this pass or is woken.
        passNumber.add(1, ordering: .sequentiallyConsistent)
        for spot in parking { spot.wake() }
        body(TeamMember(index: 0, count: size, barrier: barrier))
        var spins = 0
        while finishedMembers.load(ordering: .acquiring) < size - 1 { SpinBarrier.pause(&spins) }
        job = nil
    }

    /// Stops the member threads once they finish the pass they are in; the team must not run again.
    func shutdown() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        passNumber.add(1, ordering: .sequentiallyConsistent)
        for spot in parking { spot.wake() }
    }

    private func workerLoop(member: Int) {
        _ = DenormalFlushing.enable()
        let spot = parking[member - 1]
        // Pass 0 is "no pass yet": a member that starts late still runs the first pass published before it started.
        var seen = 0
        while true {
            var spins = 0
            // Spin a few tens of microseconds for the next pass (training batches follow each other closely), then
            // park: a forecasting team must not burn a core between forecasts.
            while passNumber.load(ordering: .acquiring) == seen {
                spins += 1
                if spins > 200_000 {
                    spot.park { self.passNumber.load(ordering: .sequentiallyConsistent) != seen }
                    spins = 0
                }
            }
            seen = passNumber.load(ordering: .acquiring)
            if stopping.load(ordering: .acquiring) { return }
            if let job { job(TeamMember(index: member, count: size, barrier: barrier)) }
            finishedMembers.add(1, ordering: .releasing)
        }
    }
}

/// One member's view of a pass: which share of a dimension is its own, and the barrier all members meet at.
struct TeamMember: Sendable {
    let index: Int
    let count: Int
    fileprivate let barrier: SpinBarrier

    var isLeader: Bool { index == 0 }

    /// The only member of a pass run without a team.
    static let alone = TeamMember(index: 0, count: 1, barrier: SpinBarrier(parties: 1))

    /// This member's contiguous share of `0..<total` (shares differ by at most one; some may be empty).
    func share(of total: Int) -> Range<Int> {
        let base = total / count
        let extra = total % count
        let lower = index * base + min(index, extra)
        return lower..<(lower + base + (index < extra ? 1 : 0))
    }

    /// Waits until every member has reached this point (writes before it are visible to all after it).
    func synchronize() {
        if count > 1 { barrier.wait() }
    }
}

/// A reusable sense-reversing barrier that spins (the members run on cores of their own), yielding the core after a
/// while so that an oversubscribed machine still makes progress.
final class SpinBarrier: Sendable {
    private let parties: Int
    private let arrived = Atomic<Int>(0)
    private let generation = Atomic<Int>(0)

    init(parties: Int) { self.parties = parties }

    func wait() {
        let current = generation.load(ordering: .acquiring)
        if arrived.add(1, ordering: .acquiringAndReleasing).newValue == parties {
            arrived.store(0, ordering: .relaxed)
            generation.add(1, ordering: .releasing)
            return
        }
        var spins = 0
        while generation.load(ordering: .acquiring) == current { Self.pause(&spins) }
    }

    @inline(__always)
    static func pause(_ spins: inout Int) {
        spins += 1
        if spins > 20_000 { sched_yield() }
    }
}

/// Where an idle member sleeps until the next pass is published.
private final class ParkingSpot: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let parked = Atomic<Bool>(false)

    /// Sleeps unless `ready` turns true meanwhile.
    func park(until ready: () -> Bool) {
        parked.store(true, ordering: .sequentiallyConsistent)
        if ready() {
            // Take the parking back; if a waker already claimed it, its signal must be consumed.
            if parked.exchange(false, ordering: .sequentiallyConsistent) { return }
        }
        semaphore.wait()
    }

    func wake() {
        if parked.exchange(false, ordering: .sequentiallyConsistent) { semaphore.signal() }
    }
}

/// A read-only pointer handed to a pass's members. `@unchecked Sendable`: the memory outlives the pass and nobody
/// writes it meanwhile.
struct SharedPointer<Pointee>: @unchecked Sendable {
    let pointer: UnsafePointer<Pointee>
}

/// A pointer a pass's members write through, each to its own part. `@unchecked Sendable` for the same reason.
struct SharedMutablePointer<Pointee>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Pointee>
}
