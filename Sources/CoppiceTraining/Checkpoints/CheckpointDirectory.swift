import CoppiceEngine
import CoppiceSparsity
import Foundation

/// A directory of a run's checkpoints, "checkpoint-<step>.safetensors" (step zero-padded to
/// nine digits), written every `every` epochs and of which the newest `keep` are kept. Each is
/// written atomically, so a crash or a full disk during a save leaves the earlier checkpoints
/// as they were.
///
/// A directory belongs to one run: `TrainingRun` holds its `DirectoryLock` while it trains (a
/// second run on the same directory fails at once, naming the first), and a fresh run refuses
/// a directory that already holds checkpoints (`requireNoCheckpoints`) — continue that run by
/// resuming, or use another directory.
public struct CheckpointDirectory: Sendable {
  public let path: String
  public let keep: Int
  public let every: Int

  public init(path: String, keep: Int = 3, every: Int = 1) throws {
    guard keep >= 1 else {
      throw CoppiceError.invalidArgument("keep at least 1 checkpoint, got \(keep)")
    }
    guard every >= 1 else {
      throw CoppiceError.invalidArgument("checkpoint every epoch or more, got every \(every)")
    }
    self.path = path
    self.keep = keep
    self.every = every
    do {
      try FileManager.default.createDirectory(
        atPath: path, withIntermediateDirectories: true)
    } catch {
      throw CoppiceError.io(
        "cannot create checkpoint directory \(path): \(error.localizedDescription)")
    }
  }

  /// Whether a checkpoint is due after `epoch` of `epochs`: every `every` epochs and after the
  /// last.
  public func isDue(afterEpoch epoch: Int, of epochs: Int) -> Bool {
    epoch % every == 0 || epoch >= epochs
  }

  /// The checkpoints present, oldest first: regular files (or links to them) named
  /// checkpoint-<step>.safetensors. A directory, FIFO or device under such a name is not a
  /// checkpoint: resume never opens it and pruning never removes it.
  public func checkpoints() -> [(step: Int, path: String)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return names.compactMap { name -> (Int, String)? in
      guard name.hasPrefix("checkpoint-"), name.hasSuffix(".safetensors"),
        let step = Int(name.dropFirst("checkpoint-".count).dropLast(".safetensors".count)),
        Self.isRegularFile("\(path)/\(name)")
      else { return nil }
      return (step, "\(path)/\(name)")
    }.sorted { $0.0 < $1.0 }
  }

  private static func isRegularFile(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
  }

  /// Saves `trainer` as the checkpoint of its current step (first removing any temporary file
  /// an interrupted save left behind), then removes the oldest others so that `keep` remain,
  /// the one just written always among them. Returns the file's path.
  @discardableResult
  public func save(_ trainer: Trainer) throws -> String {
    removeTemporaryFiles()
    let file = String(format: "%@/checkpoint-%09d.safetensors", path, trainer.stepsTaken)
    try trainer.saveCheckpoint(path: file)
    for old in checkpoints().filter({ $0.path != file }).dropLast(keep - 1) {
      try? FileManager.default.removeItem(atPath: old.path)
    }
    return file
  }

  /// Takes this directory's lock for one run (see `DirectoryLock`).
  public func lock() throws -> DirectoryLock { try DirectoryLock(directory: path) }

  /// Throws `CoppiceError.invalidState` when the directory already holds checkpoints: a new
  /// run there would mix its checkpoints with an earlier run's and prune them.
  public func requireNoCheckpoints() throws {
    guard let newest = checkpoints().last else { return }
    throw CoppiceError.invalidState(
      "checkpoint directory \(path) already holds checkpoints of an earlier run (newest: "
        + "\((newest.path as NSString).lastPathComponent)); resume that run, or use another "
        + "directory")
  }

  /// Removes what saves killed part-way left (one run writes to a directory at a time).
  private func removeTemporaryFiles() {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    for name in names where name.hasPrefix(".checkpoint-") && name.hasSuffix(".tmp") {
      try? FileManager.default.removeItem(atPath: "\(path)/\(name)")
    }
  }

  /// Restores `trainer` from the newest checkpoint that loads, trying older ones when a newer
  /// one is damaged (each skipped file is reported through `warn`). Returns the file used, or
  /// nil when the directory has none. Throws when none loads, or when one loads but does not
  /// match this run (`CoppiceError.runMismatch`: a different configuration is an error, not
  /// damage).
  public func resume(
    _ trainer: Trainer, stepsPerEpoch: Int, warn: (String) -> Void = { _ in }
  ) throws -> String? {
    let all = checkpoints()
    guard !all.isEmpty else { return nil }
    var failures: [String] = []
    for candidate in all.reversed() {
      do {
        try trainer.restoreCheckpoint(path: candidate.path, stepsPerEpoch: stepsPerEpoch)
        return candidate.path
      } catch CoppiceError.invalidFile(let file, let reason) {
        warn("skipping damaged checkpoint \(file): \(reason)")
        failures.append("\(file): \(reason)")
      }
    }
    throw CoppiceError.invalidFile(
      path: path, reason: "no checkpoint could be loaded (\(failures.joined(separator: "; ")))")
  }
}
