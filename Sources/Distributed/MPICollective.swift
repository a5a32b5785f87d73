import CMPI
import Foundation
import Tensor

/// The ranks of a job started by Open MPI's `mpirun`, through MPI's collectives. Only the
/// thread that started MPI calls it (MPI_THREAD_FUNNELED): lmtrain's worker threads compute,
/// the main thread communicates between parallel regions.
///
/// MPI's default error handler ends the whole job on a failed call (a rank that died, a broken
/// link), so the calls here return only on success.
public final class MPICollective: Collective, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    private var finalized = false

    /// Largest count one MPI call takes (a C int); longer arrays go in pieces.
    private static let largestCall = Int(Int32.max)

    private init() {
        var provided: Int32 = 0
        Self.check(lmtrain_mpi_init_funneled(&provided), "MPI_Init_thread")
        var rank: Int32 = 0, size: Int32 = 0
        Self.check(lmtrain_mpi_rank(&rank), "MPI_Comm_rank")
        Self.check(lmtrain_mpi_size(&size), "MPI_Comm_size")
        self.rank = Int(rank)
        self.size = Int(size)
    }

    /// Whether this process was started by `mpirun` (Open MPI's launcher sets these).
    public static var isLaunchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// The job's collective: MPI's under `mpirun`, otherwise a single process (MPI is not
    /// started, so a run without `mpirun` needs no MPI daemon and behaves as before).
    public static func start() -> any Collective {
        isLaunchedByMPI ? MPICollective() : SingleProcess.shared
    }

    /// Ends MPI at a normal exit (every rank must call it).
    public func finish() {
        guard !finalized else { return }
        finalized = true
        _ = lmtrain_mpi_finalize()
    }

    /// Takes every rank of the job down with `code` (after this rank printed why).
    public func abort(code: Int32) -> Never {
        _ = lmtrain_mpi_abort(code)
        exit(code)
    }

    public func allReduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        inPieces(count) { Self.check(lmtrain_mpi_sum_floats(values + $0, Int32($1)), "MPI_Allreduce") }
    }

    public func allReduceSum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        inPieces(count) { Self.check(lmtrain_mpi_sum_doubles(values + $0, Int32($1)), "MPI_Allreduce") }
    }

    public func allReduceMax(_ values: UnsafeMutablePointer<Double>, count: Int) {
        inPieces(count) { Self.check(lmtrain_mpi_max_doubles(values + $0, Int32($1)), "MPI_Allreduce") }
    }

    public func allGather(_ values: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) {
        precondition(count * size <= Self.largestCall, "gathering \(count) values from \(size) ranks exceeds one MPI call")
        Self.check(lmtrain_mpi_gather_floats(values, Int32(count), output), "MPI_Allgather")
    }

    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int) {
        inPieces(count) { Self.check(lmtrain_mpi_broadcast_bytes(bytes + $0, Int32($1)), "MPI_Bcast") }
    }

    public func barrier() { Self.check(lmtrain_mpi_barrier(), "MPI_Barrier") }

    private func inPieces(_ count: Int, _ call: (Int, Int) -> Void) {
        var start = 0
        while start < count {
            let piece = min(Self.largestCall, count - start)
            call(start, piece)
            start += piece
        }
    }

    /// MPI returns an error code only under a non-fatal error handler; lmtrain keeps the fatal
    /// default, so this is a guard against a changed default.
    private static func check(_ code: Int32, _ call: String) {
        if code != 0 {
            FileHandle.standardError.write(Data("lmtrain: \(call) failed with MPI error \(code)\n".utf8))
            _ = lmtrain_mpi_abort(1)
            exit(1)
        }
    }
}
