import ArgumentParser
import Coppice
import CoppiceDistributed
import Foundation

/// How `coppice train` joins a distributed run: started by mpirun/mpiexec with more than one
/// process (or with --distributed), it initialises MPI; only rank 0 prints and writes files.
enum DistributedRun {
  /// The world collective, or nil for a single-process run. Throws a clear error when the run
  /// asks for MPI and this build has none.
  static func start(requested: Bool) throws -> MPICollective? {
    guard requested || MPICollective.launchedWithRanks else { return nil }
    guard MPICollective.isAvailable else {
      throw CoppiceError.invalidArgument(
        "MPI support is not compiled in: this coppice was built without MPI (install "
          + "libopenmpi-dev, run `make build` again), so it cannot join an mpirun job")
    }
    let world: MPICollective
    world = try MPICollective()
    if world.rank != 0 {
      // Only rank 0 reports; the others keep stderr for their errors.
      let null = open("/dev/null", O_WRONLY)
      if null >= 0 {
        dup2(null, STDOUT_FILENO)
        close(null)
      }
    }
    return world
  }

  /// Kernel threads per rank by default: the cores shared among the ranks on this machine.
  static func defaultThreads(ranks: MPICollective?) -> Int {
    guard ranks != nil else { return Threads.availableCores }
    let env = ProcessInfo.processInfo.environment
    let local =
      ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
      .compactMap { env[$0].flatMap(Int.init) }.first ?? 1
    return max(1, Threads.availableCores / max(1, local))
  }
}
