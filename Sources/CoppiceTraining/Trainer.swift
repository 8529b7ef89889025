import CoppiceEngine
import CoppiceSparsity
import Foundation

/// Trains an engine model on a dataset with a configured optimizer and schedule, and — when a
/// sparsity configuration is given — with a sparse-training method driven through a
/// `Sparsifier` (the same object the C ABI drives for host-owned models).
public final class Trainer {
  public let model: Model
  public let config: TrainingConfig
  public let sparsity: SparsityConfig?
  public let optimizer: Optimizer
  public private(set) var sparsifier: Sparsifier?
  public internal(set) var history: [EpochRecord] = []
  public internal(set) var stepsTaken = 0
  public internal(set) var trainSeconds = 0.0
  public internal(set) var imagesSeen = 0
  /// Batches per epoch, fixed by the first `prepareSparsity`/`fit` (checkpoints record it).
  public private(set) var stepsPerEpoch: Int?
  /// Whether the last `fit` returned because `shouldStop` said so before finishing.
  public internal(set) var wasInterrupted = false
  private let loss: CrossEntropyLoss
  var shuffleRNG: SeededGenerator
  var augmentRNG: SeededGenerator
  private var batchTensor: Tensor?
  /// Restricts the optimizer to the kept weights of sparse layers.
  private let keptWeightUpdates = KeptWeightUpdates()
  var layerFLOPs: [(flops: Double, inputGradient: Bool, target: SparseTarget?)] = []
  var epochFLOPs = (actual: 0.0, dense: 0.0)
  /// The epoch stopped part-way by `shouldStop`, continued by the next `fit`.
  var inProgress: EpochInProgress?
  /// Set for a distributed run (before `fit`): with more than one rank, every batch is split
  /// across the ranks and gradients are summed (data parallelism), and P-GaP runs worker i on
  /// rank i. Every rank runs the same trainer on the same data with the same configuration.
  public var collective: Collective?
  /// P-GaP's worker phase: ranks train different partitions, not shards of one batch.
  var inWorkerPhase = false
  /// How many times the ranks compared mask checksums and found them identical.
  public internal(set) var maskChecks = 0
  /// When set, `trainStep` adds the wall time of each of its phases to it (profiling).
  public var stepTimes: StepTimes?

  public init(model: Model, config: TrainingConfig, sparsity: SparsityConfig? = nil) throws {
    try config.validate()
    try sparsity?.validate()
    self.model = model
    self.config = config
    self.sparsity = sparsity
    self.optimizer = config.makeOptimizer(for: model.parameters)
    self.loss = CrossEntropyLoss(labelSmoothing: config.labelSmoothing)
    shuffleRNG = SeededGenerator(seed: config.seed, stream: "shuffle")
    augmentRNG = SeededGenerator(seed: config.seed, stream: "augment")
  }

  /// Creates and starts the sparsifier for `stepsPerEpoch` batches per epoch (once; `fit`
  /// calls it). Masks are attached to the model's layers so sparse layers run sparse kernels.
  public func prepareSparsity(stepsPerEpoch: Int) throws {
    if let fixed = self.stepsPerEpoch, fixed != stepsPerEpoch {
      throw CoppiceError.invalidArgument(
        "this trainer runs \(fixed) batches per epoch, not \(stepsPerEpoch) (same data and "
          + "batch size as before, please)")
    }
    self.stepsPerEpoch = stepsPerEpoch
    if sparsifier == nil, let sparsity {
      let targets = model.sparseTargets()
      let s = try Sparsifier(
        targets: targets, config: sparsity, stepsPerEpoch: stepsPerEpoch,
        totalSteps: max(1, stepsPerEpoch * config.epochs), seed: config.seed)
      try s.start()
      s.snapshotsWorkerPartition = false  // P-GaP rounds pass every worker's weights
      // SGD and AdamW keep a pruned weight at zero when its gradient and state are zero:
      // gradients are masked every step and the state is zeroed at mask changes, except
      // when the configuration keeps the state or P-GaP merges state across workers.
      s.reappliesMasks = !sparsity.resetOptimizerState || sparsity.method == .pgap
      model.attachMasks(targets)
      sparsifier = s
    }
    if layerFLOPs.isEmpty {
      let byName = Dictionary(
        (sparsifier?.targets ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
      layerFLOPs = model.weightFLOPs.map { ($0.flops, $0.inputGradient, byName[$0.name]) }
    }
  }

  /// Runs the remaining epochs, evaluating on `test` after each. `progress` is called after
  /// every batch, `epochEnd` after every epoch. P-GaP runs its workers one after another and
  /// records one entry per round (its epoch number counts epochs per worker).
  ///
  /// `shouldStop` is asked after every step: when it says yes, `fit` returns at once with
  /// `wasInterrupted` set, and the trainer (and a checkpoint taken from it) holds the exact
  /// state of that step, mid-epoch included; the next `fit` continues from there. A P-GaP
  /// round cannot stop part-way: its work is discarded and the trainer is back at the round's
  /// start.
  @discardableResult
  public func fit(
    train: Dataset, test: Dataset,
    progress: ((BatchProgress) -> Void)? = nil,
    epochEnd: ((EpochRecord) -> Void)? = nil,
    shouldStop: () -> Bool = { false }
  ) throws -> [EpochRecord] {
    guard train.sampleShape == model.inputShape, test.sampleShape == model.inputShape else {
      throw CoppiceError.invalidArgument(
        "data samples \(train.sampleShape) do not match model input \(model.inputShape)")
    }
    guard train.count > 0 else { throw CoppiceError.invalidArgument("training set is empty") }
    let batchesPerEpoch = (train.count + config.batchSize - 1) / config.batchSize
    try prepareSparsity(stepsPerEpoch: batchesPerEpoch)
    wasInterrupted = false
    if let c = collective, c.size > 1 { try synchronizeStart(c) }
    if let gap = sparsifier?.parallelGaP, !gap.isFinished {
      try runParallelGaP(
        gap, train: train, test: test, batchesPerEpoch: batchesPerEpoch, progress: progress,
        epochEnd: epochEnd, shouldStop: shouldStop)
      if wasInterrupted { return history }
    }
    while epochsDone < config.epochs {
      guard
        let run = try trainEpoch(
          train: train, epoch: epochsDone, batchesPerEpoch: batchesPerEpoch, progress: progress,
          shouldStop: shouldStop)
      else {
        wasInterrupted = true
        break
      }
      if let c = dataParallel { try averageBuffers(c) }
      // Non-finite weights make the next loss non-finite (checked every step); this catches
      // them at the epoch's end too, before anything reports or saves them.
      if let bad = model.parameters.first(where: { !$0.value.isFinite }) {
        throw CoppiceError.diverged(
          "training diverged: \(bad.name) holds NaN or infinity after step \(stepsTaken) "
            + "(lower the learning rate)")
      }
      let record = makeRecord(epoch: epochsDone + 1, run: run, test: test)
      history.append(record)
      epochEnd?(record)
      if try epochsDone < config.epochs && agreed(shouldStop()) {
        wasInterrupted = true
        break
      }
    }
    return history
  }

  func setRunState(stepsTaken: Int, trainSeconds: Double, imagesSeen: Int, history: [EpochRecord]) {
    self.stepsTaken = stepsTaken
    self.trainSeconds = trainSeconds
    self.imagesSeen = imagesSeen
    self.history = history
  }

  /// Epochs completed (per worker, for P-GaP).
  public var epochsDone: Int { history.last?.epoch ?? 0 }

  struct EpochRun: Codable {
    var lossSum = 0.0
    var correct = 0
    var seen = 0
    var seconds = 0.0
    var learningRate: Float = 0
    /// The schedule's phase when the epoch began.
    var phase = ""
  }

  /// An epoch part-way through: where it stopped and what it has summed so far. The batch
  /// order is drawn again from the shuffle generator's state at the epoch's start.
  struct EpochInProgress: Codable {
    var epoch: Int
    var batchesDone: Int
    var shuffleState: [UInt64]
    var run: EpochRun
  }

  /// One pass over the training set (or the rest of an interrupted one). Returns nil when
  /// `shouldStop` stopped it before the end; `inProgress` then says where.
  func trainEpoch(
    train: Dataset, epoch: Int, batchesPerEpoch: Int, progress: ((BatchProgress) -> Void)?,
    shouldStop: () -> Bool
  ) throws -> EpochRun? {
    let start = Date()
    var state =
      inProgress.flatMap { $0.epoch == epoch ? $0 : nil }
      ?? EpochInProgress(
        epoch: epoch, batchesDone: 0, shuffleState: shuffleRNG.state,
        run: EpochRun(phase: sparsifier?.phase ?? ""))
    var shuffle = SeededGenerator(state: state.shuffleState) ?? shuffleRNG
    var order = Array(0..<train.count)
    order.shuffle(using: &shuffle)
    shuffleRNG = shuffle
    var run = state.run
    let secondsBefore = run.seconds
    let seenBefore = run.seen
    defer {
      let elapsed = Date().timeIntervalSince(start)
      trainSeconds += elapsed
      imagesSeen += run.seen - seenBefore
    }
    let totalSteps = batchesPerEpoch * config.epochs
    for b in state.batchesDone..<batchesPerEpoch {
      let lo = b * config.batchSize
      let hi = min(train.count, lo + config.batchSize)
      run.learningRate = learningRate(
        atStep: stepsTaken, totalSteps: totalSteps, batchesPerEpoch: batchesPerEpoch)
      optimizer.learningRate = run.learningRate
      let result = try trainStep(train: train, indices: order[lo..<hi])
      run.lossSum += result.loss * Double(hi - lo)
      run.correct += result.correct
      run.seen += hi - lo
      run.seconds = secondsBefore + Date().timeIntervalSince(start)
      state.batchesDone = b + 1
      state.run = run
      inProgress = state
      if let progress {
        let rate = Double(run.seen - seenBefore) / max(run.seconds - secondsBefore, 1e-9)
        let remaining =
          Double(train.count - run.seen) + Double(max(0, config.epochs - epoch - 1))
          * Double(train.count)
        progress(
          BatchProgress(
            epoch: epoch + 1, epochs: config.epochs, batch: b + 1, batches: batchesPerEpoch,
            loss: run.lossSum / Double(run.seen), imagesPerSecond: rate,
            etaSeconds: remaining / max(rate, 1e-9), learningRate: run.learningRate,
            phase: sparsifier?.phase ?? ""))
      }
      if try b + 1 < batchesPerEpoch && agreed(shouldStop()) { return nil }
    }
    inProgress = nil
    return run
  }

  func makeRecord(epoch: Int, run: EpochRun, test: Dataset) -> EpochRecord {
    let evaluation = evaluate(on: test)
    var record = EpochRecord(
      epoch: epoch, loss: run.lossSum / Double(max(run.seen, 1)),
      trainAccuracy: 100 * Double(run.correct) / Double(max(run.seen, 1)),
      testAccuracy: evaluation.accuracy, testLoss: evaluation.loss, seconds: run.seconds,
      imagesPerSecond: Double(run.seen) / max(run.seconds, 1e-9), learningRate: run.learningRate)
    record.sparsity = sparsifier?.report.sparsity ?? 0
    record.trainFLOPs = epochFLOPs.actual
    record.trainFLOPsDense = epochFLOPs.dense
    record.inferenceFLOPs = layerFLOPs.reduce(0) { $0 + $1.flops * ($1.target?.density ?? 1) }
    record.inferenceFLOPsDense = layerFLOPs.reduce(0) { $0 + $1.flops }
    record.phase = run.phase
    epochFLOPs = (0, 0)
    return record
  }

  /// One optimizer step on the samples at `indices`; returns the batch's loss and hits.
  /// In a data-parallel run, `indices` is the global batch: this rank takes its share, and
  /// the returned loss and hits are the whole batch's.
  public func trainStep(train: Dataset, indices: ArraySlice<Int>) throws -> (
    loss: Double, correct: Int
  ) {
    let times = stepTimes
    let stepStart = times == nil ? 0 : monotonicSeconds()  // the clock is read only when profiling
    var t = stepStart
    /// Closes the current phase (when profiling).
    func mark(_ phase: StepTimes.Phase) { if let times { t = times.add(phase, since: t) } }
    defer { times?.addStep(since: stepStart) }

    let parallel = dataParallel
    let local = try parallel.map { try shard(indices, $0) } ?? indices
    let x = Tensor.reuse(batchTensor, shape: [local.count] + train.sampleShape)
    batchTensor = x
    let labels = train.fill(
      x, indices: local, augmentation: config.augmentation, rng: &augmentRNG)
    countFLOPs(batch: indices.count)
    mark(.data)
    let logits = model.forward(x, training: true)
    mark(.forward)
    var (value, correct, gradient) = loss(logits, labels: labels)
    mark(.loss)
    model.backward(gradient)
    mark(.backward)
    if let parallel {
      try synchronizeGradients(parallel, localCount: local.count, globalCount: indices.count)
      let totals = try parallel.sum([value * Double(local.count), Double(correct)])
      value = totals[0] / Double(indices.count)
      correct = Int(totals[1])
      mark(.synchronize)
    }
    guard value.isFinite else {
      throw CoppiceError.diverged(
        "training diverged: loss is \(value) at step \(stepsTaken + 1) (lower the learning rate)")
    }
    let skipOptimizer = sparsifier?.skipsOptimizerStep ?? false
    sparsifier?.maskGradients()
    mark(.masking)
    if !skipOptimizer {
      if let s = sparsifier { keptWeightUpdates.refresh(s, optimizer: optimizer) }
      optimizer.step()
    }
    mark(.optimizer)
    if let s = sparsifier, try s.step() {
      optimizer.resetState(afterMaskChangesOf: s)
      if let parallel { try verifyMasks(parallel) }
    }
    if let s = sparsifier, s.config.restartOptimizerPerStep, s.endedGaPStep {
      optimizer.resetAllState()
    }
    mark(.sparsifier)
    stepsTaken += 1
    return (value, correct)
  }

}
