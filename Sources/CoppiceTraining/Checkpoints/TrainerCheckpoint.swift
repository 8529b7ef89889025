import CoppiceEngine
import CoppiceSparsity
import Foundation

/// The trainer's state besides tensors.
struct TrainerRunState: Codable {
  var stepsTaken: Int
  var stepsPerEpoch: Int?
  var trainSeconds: Double
  var imagesSeen: Int
  var history: [EpochRecord]
  var shuffleGenerator: [UInt64]
  var augmentGenerator: [UInt64]
  var epochFLOPs: [Double]
  var inProgress: Trainer.EpochInProgress?
  var optimizerSteps: Int64
  var dropoutCalls: [UInt64]

  enum CodingKeys: String, CodingKey {
    case history
    case stepsTaken = "steps_taken"
    case stepsPerEpoch = "steps_per_epoch"
    case trainSeconds = "train_seconds"
    case imagesSeen = "images_seen"
    case shuffleGenerator = "shuffle_generator"
    case augmentGenerator = "augment_generator"
    case epochFLOPs = "epoch_flops"
    case inProgress = "epoch_in_progress"
    case optimizerSteps = "optimizer_steps"
    case dropoutCalls = "dropout_calls"
  }
}

extension Model {
  /// The dropout layers, in model order.
  var dropoutLayers: [Dropout] { network.allLayers.compactMap { $0 as? Dropout } }
}

extension Trainer {
  func runState() -> TrainerRunState {
    TrainerRunState(
      stepsTaken: stepsTaken, stepsPerEpoch: stepsPerEpoch, trainSeconds: trainSeconds,
      imagesSeen: imagesSeen, history: history, shuffleGenerator: shuffleRNG.state,
      augmentGenerator: augmentRNG.state, epochFLOPs: [epochFLOPs.actual, epochFLOPs.dense],
      inProgress: inProgress, optimizerSteps: optimizer.stepCount,
      dropoutCalls: model.dropoutLayers.map(\.calls))
  }

  /// Throws unless `s` can be applied to this trainer.
  func validate(runState s: TrainerRunState) throws {
    func bad(_ what: String) -> CoppiceError { .invalidArgument("trainer state: \(what)") }
    guard SeededGenerator(state: s.shuffleGenerator) != nil,
      SeededGenerator(state: s.augmentGenerator) != nil
    else { throw bad("malformed generator state") }
    // Counters stay far from overflow (steps within 2^40 as a sparsifier's, images within
    // 2^62), times and FLOPs are finite.
    let steps = 0...Sparsifier.maxSteps
    guard steps.contains(s.stepsTaken), steps.contains(Int(clamping: s.optimizerSteps)),
      (0...(1 << 62)).contains(s.imagesSeen), s.trainSeconds.isFinite, s.trainSeconds >= 0,
      s.epochFLOPs.count == 2, s.epochFLOPs.allSatisfy({ $0.isFinite && $0 >= 0 })
    else {
      throw bad(
        "malformed counters (steps \(s.stepsTaken), optimizer steps \(s.optimizerSteps), "
          + "images \(s.imagesSeen))")
    }
    // Completed epochs count up from 1 to at most this run's epochs (P-GaP's records may skip).
    var previous = 0
    for record in s.history {
      guard record.epoch > previous, record.epoch <= config.epochs else {
        throw bad(
          "history records epoch \(record.epoch) after epoch \(previous) in a run of "
            + "\(config.epochs) epochs")
      }
      previous = record.epoch
    }
    let dropouts = model.dropoutLayers.count
    guard s.dropoutCalls.count == dropouts else {
      throw bad("\(s.dropoutCalls.count) dropout layers saved, the model has \(dropouts)")
    }
    guard s.dropoutCalls.allSatisfy({ $0 <= 1 << 62 }) else { throw bad("malformed dropout calls") }
    if let p = s.inProgress {
      let counts = 0...(1 << 62)
      guard p.batchesDone >= 0, p.batchesDone <= (s.stepsPerEpoch ?? 0), p.epoch >= 0,
        p.epoch < config.epochs, counts.contains(p.run.seen), counts.contains(p.run.correct),
        p.run.lossSum.isFinite, p.run.seconds.isFinite,
        SeededGenerator(state: p.shuffleState) != nil
      else { throw bad("malformed epoch in progress") }
    }
  }

  /// Installs a state produced by `runState()` or checked by `validate(runState:)`.
  func apply(runState s: TrainerRunState) {
    setRunState(
      stepsTaken: s.stepsTaken, trainSeconds: s.trainSeconds, imagesSeen: s.imagesSeen,
      history: s.history)
    shuffleRNG = SeededGenerator(state: s.shuffleGenerator)!
    augmentRNG = SeededGenerator(state: s.augmentGenerator)!
    epochFLOPs = (s.epochFLOPs[0], s.epochFLOPs[1])
    inProgress = s.inProgress
    optimizer.stepCount = s.optimizerSteps
    for (layer, calls) in zip(model.dropoutLayers, s.dropoutCalls) { layer.calls = calls }
  }

  /// Everything needed to continue this run exactly: see `CoppiceFile`.
  public func checkpointData() throws -> Data {
    guard stepsPerEpoch != nil else {
      throw CoppiceError.invalidArgument("nothing to checkpoint before training starts")
    }
    if let bad = model.parameters.first(where: { !$0.value.isFinite }) {
      throw CoppiceError.invalidArgument(
        "not saving a checkpoint: \(bad.name) holds NaN or infinity")
    }
    var entries = model.tensorEntries(masks: sparsifier?.targets ?? [])
    for (name, tensor) in stateTensors.suffix(optimizer.state.count) {
      entries.append(
        .init(name: name, shape: tensor.shape, floats: UnsafeBufferPointer(tensor.buffer)))
    }
    var metadata: [String: String] = [
      "format": "coppice", "kind": CoppiceFile.Kind.checkpoint.rawValue,
      "checkpoint_version": String(CoppiceFile.version), "coppice_version": Version.string,
      "model": model.name, "classes": String(model.numberOfClasses),
      "training_config": try CoppiceFile.json(config),
      "trainer_state": try CoppiceFile.json(runState()),
    ]
    if let sparsity, let sparsifier {
      metadata["sparsity_config"] = try CoppiceFile.json(sparsity)
      metadata["sparsifier_state"] = String(decoding: try sparsifier.stateData(), as: UTF8.self)
      metadata["phase"] = sparsifier.phase
    }
    return try CoppiceFile.encode(entries, metadata: metadata)
  }

  /// Writes `checkpointData()` to `path` atomically: the previous file at `path` stays intact
  /// if anything fails.
  public func saveCheckpoint(path: String) throws {
    try AtomicFile.write(try checkpointData(), to: path)
  }

  /// Continues from a checkpoint written by a trainer with the same model architecture,
  /// training and sparsity configuration. `stepsPerEpoch` must match the checkpoint's (same
  /// data size and batch size). Nothing in the trainer changes unless the whole file is valid
  /// and matches.
  public func restoreCheckpoint(path: String, stepsPerEpoch: Int) throws {
    try restoreCheckpoint(data: nil, path: path, stepsPerEpoch: stepsPerEpoch)
  }

  /// `restoreCheckpoint(path:stepsPerEpoch:)` from a checkpoint's bytes (`path` names it in
  /// errors), e.g. bytes one rank read and broadcast to the others.
  public func restoreCheckpoint(data: Data?, path: String, stepsPerEpoch: Int) throws {
    let (entries, metadata) = try CoppiceFile.read(path: path, data: data)
    func fail(_ reason: String) -> CoppiceError { .invalidFile(path: path, reason: reason) }
    try CoppiceFile.checkHeader(metadata, path: path, expect: .checkpoint)
    guard metadata["model"] == model.name else {
      throw CoppiceError.runMismatch(
        path: path,
        reason: "checkpoint of model \(metadata["model"] ?? "?"), this run trains \(model.name)")
    }
    let savedConfig = try CoppiceFile.decodeJSON(
      TrainingConfig.self, metadata, key: "training_config", path: path)
    try CoppiceFile.requireSame(saved: savedConfig, current: config, what: "training", path: path)
    let savedSparsity =
      metadata["sparsity_config"] == nil
      ? nil
      : try CoppiceFile.decodeJSON(
        SparsityConfig.self, metadata, key: "sparsity_config", path: path)
    try CoppiceFile.requireSame(
      saved: savedSparsity, current: sparsity, what: "sparsity", path: path)
    let state = try CoppiceFile.decodeJSON(
      TrainerRunState.self, metadata, key: "trainer_state", path: path)
    do { try validate(runState: state) } catch { throw fail("\(error)") }
    guard state.stepsPerEpoch == stepsPerEpoch else {
      throw CoppiceError.runMismatch(
        path: path,
        reason: "checkpoint taken with \(state.stepsPerEpoch ?? 0) batches per epoch, this run has "
          + "\(stepsPerEpoch) (use the same data and batch size)")
    }
    // Every tensor, validated before anything is written.
    var tensors: [(Tensor, [Float])] = []
    for (name, tensor) in stateTensors {
      tensors.append(
        (tensor, try CoppiceFile.floats(entries, name: name, shape: tensor.shape, path: path)))
    }
    // Starting the sparsifier masks the weights: put them back if its state is refused.
    let untouched = sparsifier == nil && sparsity != nil ? stateTensors.map(\.tensor.array) : nil
    do {
      try prepareSparsity(stepsPerEpoch: stepsPerEpoch)
      try restoreSparsifier(entries, metadata, path: path)
    } catch {
      if let untouched {
        for ((_, tensor), values) in zip(stateTensors, untouched) { tensor.assign(values) }
      }
      throw error
    }
    for (tensor, values) in tensors { tensor.assign(values) }
    apply(runState: state)
  }

  /// Installs the sparsifier state and masks of a checkpoint, validated against each other.
  private func restoreSparsifier(
    _ entries: [String: SafeTensors.Entry], _ metadata: [String: String], path: String
  ) throws {
    func fail(_ reason: String) -> CoppiceError { .invalidFile(path: path, reason: reason) }
    if let sparsifier {
      guard let text = metadata["sparsifier_state"] else {
        throw fail("metadata has no sparsifier_state")
      }
      var masks: [[UInt8]] = []
      for t in sparsifier.targets {
        guard let m = try CoppiceFile.mask(entries, of: t.name, shape: t.shape, path: path) else {
          throw fail("missing mask tensor \(t.name).mask")
        }
        masks.append(m)
      }
      do {
        try sparsifier.restore(from: Data(text.utf8))
      } catch let error as CoppiceError {
        throw fail("\(error)")
      }
      for (t, m) in zip(sparsifier.targets, masks) where m != t.mask {
        throw fail("mask tensor \(t.name).mask disagrees with the sparsifier state")
      }
    }
  }
}

extension CoppiceFile {
  /// Throws, naming the differing settings, unless a saved configuration equals the current.
  static func requireSame<T: Codable & Equatable>(
    saved: T?, current: T?, what: String, path: String
  ) throws {
    guard saved != current else { return }
    func fields(_ v: T?) -> [String: String] {
      guard let v, let data = try? JSONEncoder().encode(v),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
      else { return [:] }
      return object.mapValues { "\($0)" }
    }
    let a = fields(saved)
    let b = fields(current)
    let differing = Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
    let detail =
      saved == nil || current == nil
      ? (saved == nil ? "the checkpoint has none, this run has one" : "this run has none")
      : differing.map { "\($0): saved \(a[$0] ?? "-"), now \(b[$0] ?? "-")" }.joined(
        separator: "; ")
    throw CoppiceError.runMismatch(
      path: path,
      reason: "the run's \(what) configuration differs from the checkpoint's (\(detail)); "
        + "resume with the same settings")
  }
}
