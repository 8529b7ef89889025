import ArgumentParser
import Coppice
import Foundation

/// `train`'s checkpoint options.
struct CheckpointOptions: ParsableArguments {
  @Option(help: "Write checkpoints (safetensors) to this directory.") var checkpointDir: String?
  @Option(help: "Checkpoint every N epochs (and at the end, and on Ctrl-C).")
  var checkpointEvery = 1
  @Option(help: "Keep the newest N checkpoints.") var keepCheckpoints = 3
  @Flag(help: "Continue from the newest checkpoint in --checkpoint-dir (same settings).")
  var resume = false

  func validate() throws {
    if checkpointEvery < 1 { throw ValidationError("--checkpoint-every must be >= 1") }
    if keepCheckpoints < 1 { throw ValidationError("--keep-checkpoints must be >= 1") }
    if resume && checkpointDir == nil {
      throw ValidationError("--resume needs --checkpoint-dir")
    }
  }
}

/// Ctrl-C (SIGINT) and SIGTERM during training: the first asks the trainer to stop after the
/// current step (a checkpoint is then written); a second one ends the process at once.
enum Interrupt {
  nonisolated(unsafe) private static var flag: sig_atomic_t = 0

  static var requested: Bool { flag != 0 }

  static func install() {
    let handler: @convention(c) (Int32) -> Void = { signal in
      if Interrupt.flag != 0 { _exit(128 + signal) }
      Interrupt.flag = 1
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
    // A file-size limit must fail the write (the checkpoint is then skipped), not kill us.
    signal(SIGXFSZ, SIG_IGN)
  }
}
