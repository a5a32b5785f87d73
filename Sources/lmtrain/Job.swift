import ArgumentParser
import Distributed
import Foundation
import Tensor

/// The processes this command runs as: one, or the ranks of an `mpirun` job
/// (Docs/distributed.md). Set once by `LMTrain.main` before any command runs.
enum Job {
    nonisolated(unsafe) static var collective: any Collective = SingleProcess.shared

    /// Starts MPI when `mpirun` started this process. The ranks other than 0 print nothing on
    /// standard output (rank 0 speaks for the job); errors still reach standard error.
    static func start() {
        collective = MPICollective.start()
        if collective.rank > 0 {
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 { _ = dup2(null, STDOUT_FILENO) }
        }
    }

    /// Refuses, under `mpirun`, a command that runs as one process only.
    static func requireSingleProcess(unless command: any ParsableCommand) throws {
        guard collective.isDistributed, !(command is any DataParallelCommand) else { return }
        let name = type(of: command).configuration.commandName ?? String(describing: type(of: command)).lowercased()
        throw ValidationError("lmtrain \(name) runs as one process: start it without mpirun (train, eval and bench run under mpirun)")
    }

    /// A normal end: every rank leaves MPI.
    static func finish() { (collective as? MPICollective)?.finish() }

    /// An error on this rank: its line names the rank, then the whole job ends (MPI takes every
    /// rank down, so none waits forever for this one).
    static func fail(_ line: String, code: Int32) -> Never {
        guard let mpi = collective as? MPICollective, mpi.isDistributed else {
            FileHandle.standardError.write(Data("lmtrain: \(line)\n".utf8))
            exit(code)
        }
        FileHandle.standardError.write(Data("lmtrain: rank \(mpi.rank) of \(mpi.size): \(line)\n".utf8))
        mpi.abort(code: code)
    }
}

/// A command that runs under `mpirun` as a data-parallel job.
protocol DataParallelCommand {}
