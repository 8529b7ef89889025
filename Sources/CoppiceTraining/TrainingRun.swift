import CoppiceEngine
import CoppiceSparsity
import Foundation

/// One training run of an engine model, the way every front end runs it — the `coppice`
/// command, `coppice_train` / `coppice_train_checkpointed` of the C ABI, and Swift programs:
///
/// ```
/// let run = try TrainingRun(model: model, config: config, sparsity: sparsity,
///                           trainCount: train.count, checkpoints: .init(directory: dir))
/// let outcome = try run.run(train: train, test: test, onEvent: { event in … })
/// ```
///
/// It owns what used to be written once per front end: resuming from the newest loadable
/// checkpoint (on every rank of a distributed run), the checkpoint cadence (every N epochs, at
/// the end, and when stopped), the sparse-training log forwarded line by line, and a
/// divergence error that names the last good checkpoint. Front ends only turn events into
/// output (a table, log callbacks).
public final class TrainingRun {
  /// Where and how checkpoints are kept.
  public struct Checkpointing {
    public var directory: CheckpointDirectory
    /// Continue from the newest loadable checkpoint in `directory` (same settings).
    public var resume: Bool
    /// A failed save stops the run with its error (true), or is reported as
    /// `Event.checkpointFailed` while training goes on, the previous checkpoint intact (false).
    public var stopOnSaveFailure: Bool

    public init(
      directory: CheckpointDirectory, resume: Bool = false, stopOnSaveFailure: Bool = true
    ) {
      self.directory = directory
      self.resume = resume
      self.stopOnSaveFailure = stopOnSaveFailure
    }
  }

  /// What happens during a run, in order.
  public enum Event {
    /// A line of the sparse-training log (masks initialised, GaP steps, RigL updates, …).
    case sparsity(String)
    /// The state was restored from this checkpoint.
    case resumed(path: String)
    /// Resuming was asked for, but the directory holds no checkpoint yet.
    case nothingToResume(directory: String)
    /// Something was skipped but the run goes on (e.g. a damaged checkpoint on resume).
    case warning(String)
    /// After every optimizer step (on rank 0 only in a distributed run).
    case batch(BatchProgress)
    /// After every epoch (P-GaP: every round), with its test accuracy.
    case epoch(EpochRecord)
    case checkpointSaved(path: String)
    /// A save failed and `stopOnSaveFailure` is false: the previous checkpoint is intact.
    case checkpointFailed(Error)
  }

  /// How a run ended without an error.
  public enum Outcome: Equatable {
    case finished
    /// `shouldStop` (or an event handler) asked to stop; `checkpoint` holds the state when
    /// checkpointing is on.
    case stopped(checkpoint: String?)
  }

  public let trainer: Trainer
  public let stepsPerEpoch: Int
  public let checkpoints: Checkpointing?
  /// The newest checkpoint this run wrote.
  public private(set) var lastCheckpoint: String?
  private var eventsForwarded = 0
  private var stopRequested = false
  private var saveError: Error?
  private var savedAtStep: Int?

  /// Builds the trainer (and starts its sparsifier) for `trainCount` training samples.
  /// `collective`: the ranks of a distributed run (only rank 0 writes checkpoints).
  public init(
    model: Model, config: TrainingConfig, sparsity: SparsityConfig?, trainCount: Int,
    checkpoints: Checkpointing? = nil, collective: Collective? = nil
  ) throws {
    guard trainCount > 0 else { throw CoppiceError.invalidArgument("training set is empty") }
    trainer = try Trainer(model: model, config: config, sparsity: sparsity)
    trainer.collective = collective
    stepsPerEpoch = TrainingRun.stepsPerEpoch(trainCount: trainCount, batchSize: config.batchSize)
    self.checkpoints = checkpoints
    try trainer.prepareSparsity(stepsPerEpoch: stepsPerEpoch)
  }

  /// Optimizer steps in one epoch of `trainCount` samples (the last batch may be short).
  public static func stepsPerEpoch(trainCount: Int, batchSize: Int) -> Int {
    (trainCount + batchSize - 1) / max(1, batchSize)
  }

  private var isWriter: Bool { (trainer.collective?.rank ?? 0) == 0 }

  /// Asks the run to stop after the current step (from an event handler); a checkpoint is
  /// written when checkpointing is on.
  public func requestStop() { stopRequested = true }

  /// Why the last `run` diverged (the model's weights are then not usable), or nil.
  public private(set) var divergence: String?

  /// Resumes when asked to (once, before training), then trains the remaining epochs.
  /// `shouldStop` is polled after every step. Throws `CoppiceError.diverged` (naming the last
  /// good checkpoint) when training diverges, and a save error when `stopOnSaveFailure`.
  public func run(
    train: Dataset, test: Dataset, onEvent: @escaping (Event) -> Void = { _ in },
    shouldStop: () -> Bool = { false }
  ) throws -> Outcome {
    forwardSparsityEvents(onEvent)
    let lock = try claimCheckpointDirectory()
    defer { withExtendedLifetime(lock) {} }
    if let checkpoints, checkpoints.resume, trainer.stepsTaken == 0 {
      if let path = try resume(from: checkpoints.directory, warn: { onEvent(.warning($0)) }) {
        eventsForwarded = trainer.sparsifier?.events.count ?? 0
        onEvent(.resumed(path: path))
      } else {
        onEvent(.nothingToResume(directory: checkpoints.directory.path))
      }
    }
    do {
      try trainer.fit(
        train: train, test: test,
        progress: isWriter ? { onEvent(.batch($0)) } : nil,
        epochEnd: { record in
          onEvent(.epoch(record))
          self.forwardSparsityEvents(onEvent)
          let due = self.checkpoints?.directory.isDue(
            afterEpoch: record.epoch, of: self.trainer.config.epochs)
          if due == true || self.stopRequested { self.saveCheckpoint(onEvent) }
        },
        shouldStop: { self.stopRequested || self.saveError != nil || shouldStop() })
    } catch CoppiceError.diverged(let message) {
      let kept = lastCheckpoint ?? checkpoints?.directory.checkpoints().last?.path
      divergence = message
      throw CoppiceError.diverged(
        message + (kept.map { "; the last good checkpoint, \($0), is intact" } ?? ""))
    }
    divergence = nil
    if let saveError { throw saveError }
    guard trainer.wasInterrupted || stopRequested else { return .finished }
    if trainer.wasInterrupted { saveCheckpoint(onEvent) }
    if let saveError { throw saveError }
    return .stopped(checkpoint: lastCheckpoint)
  }

  /// Locks the checkpoint directory for this run (the writing rank only) and, for a fresh run,
  /// checks it holds no earlier run's checkpoints. Every rank fails when the writer does.
  private func claimCheckpointDirectory() throws -> DirectoryLock? {
    guard let checkpoints else { return nil }
    var lock: DirectoryLock?
    var failure: Error?
    if isWriter {
      do {
        lock = try checkpoints.directory.lock()
        if !checkpoints.resume && trainer.stepsTaken == 0 {
          try checkpoints.directory.requireNoCheckpoints()
        }
      } catch { failure = error }
    }
    if let world = trainer.collective, world.size > 1 {
      if try world.any(failure != nil) {
        throw failure
          ?? CoppiceError.invalidState(
            "rank 0 cannot use checkpoint directory \(checkpoints.directory.path)")
      }
    } else if let failure {
      throw failure
    }
    return lock
  }

  /// Lines the sparsifier logged since the last call.
  private func forwardSparsityEvents(_ onEvent: (Event) -> Void) {
    guard let s = trainer.sparsifier else { return }
    for line in s.events.dropFirst(eventsForwarded) { onEvent(.sparsity(line)) }
    eventsForwarded = s.events.count
  }

  /// Saves the current state (rank 0 only, once per step); a failure stops the run or is
  /// reported.
  private func saveCheckpoint(_ onEvent: (Event) -> Void) {
    guard let checkpoints, isWriter, saveError == nil, savedAtStep != trainer.stepsTaken else {
      return
    }
    do {
      let path = try checkpoints.directory.save(trainer)
      lastCheckpoint = path
      savedAtStep = trainer.stepsTaken
      onEvent(.checkpointSaved(path: path))
    } catch {
      if checkpoints.stopOnSaveFailure {
        saveError = error
      } else {
        onEvent(.checkpointFailed(error))
      }
    }
  }

  /// Restores the newest loadable checkpoint of `store`. In a distributed run rank 0 picks it
  /// and sends its bytes to the other ranks, so every rank continues from the same state.
  /// Returns the file, or nil when there is none.
  private func resume(from store: CheckpointDirectory, warn: @escaping (String) -> Void) throws
    -> String?
  {
    guard let world = trainer.collective, world.size > 1 else {
      return try store.resume(trainer, stepsPerEpoch: stepsPerEpoch, warn: warn)
    }
    var chosen: String?
    var failure: Error?
    if world.rank == 0 {
      do { chosen = try store.resume(trainer, stepsPerEpoch: stepsPerEpoch, warn: warn) } catch {
        failure = error
      }
    }
    if try world.any(failure != nil) {
      throw failure ?? CoppiceError.io("rank 0 could not resume from \(store.path)")
    }
    let path = String(
      decoding: try world.broadcast(Array((chosen ?? "").utf8), from: 0), as: UTF8.self)
    guard !path.isEmpty else { return nil }
    let bytes = try world.broadcast(
      world.rank == 0 ? [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) : [], from: 0)
    if world.rank != 0 {
      try trainer.restoreCheckpoint(data: Data(bytes), path: path, stepsPerEpoch: stepsPerEpoch)
    }
    return path
  }
}
