import CoppiceEngine
import CoppiceSparsity
import Foundation

/// Progress of a running epoch, reported after every batch.
public struct BatchProgress: Sendable {
  public let epoch: Int
  public let epochs: Int
  public let batch: Int
  public let batches: Int
  /// Mean training loss over the epoch so far.
  public let loss: Double
  public let imagesPerSecond: Double
  /// Estimated seconds left in the whole run.
  public let etaSeconds: Double
  public let learningRate: Float
  /// What the sparse-training schedule is doing ("" when dense).
  public var phase: String = ""
}

/// What one epoch produced.
public struct EpochRecord: Codable, Sendable {
  public let epoch: Int
  public let loss: Double
  public let trainAccuracy: Double
  public let testAccuracy: Double
  public let testLoss: Double
  public let seconds: Double
  public let imagesPerSecond: Double
  public let learningRate: Float
  /// Global sparsity of the prunable weights at the end of the epoch (0 when dense).
  public var sparsity: Double = 0
  /// Conv/linear FLOPs this epoch actually needed (forward, input and weight gradients at the
  /// densities in force at each step) and what dense training would need.
  public var trainFLOPs: Double = 0
  public var trainFLOPsDense: Double = 0
  /// Inference FLOPs per image at the end of the epoch, actual and dense.
  public var inferenceFLOPs: Double = 0
  public var inferenceFLOPsDense: Double = 0
  /// What the sparse-training schedule was doing (e.g. "C-GaP round 1/2, partition 3 dense").
  public var phase: String = ""

  enum CodingKeys: String, CodingKey {
    case epoch, loss, seconds, sparsity, phase
    case trainFLOPs = "train_flops"
    case trainFLOPsDense = "train_flops_dense"
    case inferenceFLOPs = "inference_flops"
    case inferenceFLOPsDense = "inference_flops_dense"
    case trainAccuracy = "train_accuracy"
    case testAccuracy = "test_accuracy"
    case testLoss = "test_loss"
    case imagesPerSecond = "images_per_second"
    case learningRate = "learning_rate"
  }
}

/// Accuracy (percent) and mean loss of a model on a dataset.
public struct Evaluation: Sendable {
  public let accuracy: Double
  public let loss: Double
}

/// Trains an engine model on a dataset with a configured optimizer and schedule, and — when a
/// sparsity configuration is given — with a sparse-training method driven through a
/// `Sparsifier` (the same object the C ABI drives for host-owned models).
public final class Trainer {
  public let model: Model
  public let config: TrainingConfig
  public let sparsity: SparsityConfig?
  public let optimizer: Optimizer
  public private(set) var sparsifier: Sparsifier?
  public private(set) var history: [EpochRecord] = []
  public private(set) var stepsTaken = 0
  public private(set) var trainSeconds = 0.0
  public private(set) var imagesSeen = 0
  /// Batches per epoch, fixed by the first `prepareSparsity`/`fit` (checkpoints record it).
  public private(set) var stepsPerEpoch: Int?
  /// Whether the last `fit` returned because `shouldStop` said so before finishing.
  public private(set) var wasInterrupted = false
  private let loss: CrossEntropyLoss
  var shuffleRNG: SeededGenerator
  var augmentRNG: SeededGenerator
  private var batchTensor: Tensor?
  private var layerFLOPs: [(flops: Double, inputGradient: Bool, target: SparseTarget?)] = []
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
  private func trainEpoch(
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

  /// The learning rate at a step: one continuous schedule, or — with
  /// `restartLearningRatePerStep` — restarted at every GaP step and again for the fine-tune.
  private func learningRate(atStep step: Int, totalSteps: Int, batchesPerEpoch: Int) -> Float {
    let warmup = batchesPerEpoch * config.warmupEpochs
    if let sparsity, sparsity.restartLearningRatePerStep,
      let length = sparsity.gapStepLength, let s = sparsifier, !s.masksFrozen
    {
      return config.schedule.rate(
        base: config.learningRate, step: step % length, totalSteps: length)
    }
    if let sparsity, sparsity.restartLearningRatePerStep, let s = sparsifier,
      s.schedule.lastMaskChangeStep > 0, s.masksFrozen
    {
      let begin = s.schedule.lastMaskChangeStep
      return config.schedule.rate(
        base: config.learningRate, step: step - begin, totalSteps: max(1, totalSteps - begin))
    }
    return config.schedule.rate(
      base: config.learningRate, step: step, totalSteps: totalSteps, warmupSteps: warmup)
  }

  private func makeRecord(epoch: Int, run: EpochRun, test: Dataset) -> EpochRecord {
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
    let parallel = dataParallel
    let local = try parallel.map { try shard(indices, $0) } ?? indices
    let x = Tensor.reuse(batchTensor, shape: [local.count] + train.sampleShape)
    batchTensor = x
    let labels = train.fill(
      x, indices: local, augmentation: config.augmentation, rng: &augmentRNG)
    countFLOPs(batch: indices.count)
    let logits = model.forward(x, training: true)
    var (value, correct, gradient) = loss(logits, labels: labels)
    model.backward(gradient)
    if let parallel {
      try synchronizeGradients(parallel, localCount: local.count, globalCount: indices.count)
      let totals = try parallel.sum([value * Double(local.count), Double(correct)])
      value = totals[0] / Double(indices.count)
      correct = Int(totals[1])
    }
    guard value.isFinite else {
      throw CoppiceError.diverged(
        "training diverged: loss is \(value) at step \(stepsTaken + 1) (lower the learning rate)")
    }
    sparsifier?.maskGradients()
    optimizer.step()
    if let s = sparsifier, try s.step() {
      optimizer.resetState(afterMaskChangesOf: s)
      if let parallel { try verifyMasks(parallel) }
    }
    stepsTaken += 1
    return (value, correct)
  }

  /// Adds this step's conv/linear FLOPs at the current densities to the epoch's counters.
  private func countFLOPs(batch: Int) {
    let denseGradients = sparsifier?.needsDenseGradients ?? false
    var actual = 0.0
    var dense = 0.0
    for layer in layerFLOPs {
      let d = layer.target?.density ?? 1
      let passes = layer.inputGradient ? 2.0 : 1.0
      actual += layer.flops * (d * passes + (denseGradients ? 1 : d))
      dense += layer.flops * (passes + 1)
    }
    epochFLOPs.actual += actual * Double(batch)
    epochFLOPs.dense += dense * Double(batch)
  }

  /// Test accuracy (percent) and mean loss, in evaluation mode.
  public func evaluate(on data: Dataset) -> Evaluation {
    Trainer.evaluate(model: model, on: data, batchSize: config.evalBatchSize)
  }

  public static func evaluate(model: Model, on data: Dataset, batchSize: Int = 1000) -> Evaluation {
    guard data.count > 0 else { return Evaluation(accuracy: 0, loss: 0) }
    let loss = CrossEntropyLoss()
    var rng = SeededGenerator(seed: 0)
    var correct = 0
    var lossSum = 0.0
    var start = 0
    let x = Tensor(shape: [min(batchSize, data.count)] + data.sampleShape)
    while start < data.count {
      let end = min(data.count, start + batchSize)
      let batch = end - start == x.shape[0] ? x : Tensor(shape: [end - start] + data.sampleShape)
      let labels = data.fill(batch, indices: Array(start..<end)[...], rng: &rng)
      let logits = model.forward(batch, training: false)
      let r = loss(logits, labels: labels)
      correct += r.correct
      lossSum += r.loss * Double(end - start)
      start = end
    }
    return Evaluation(
      accuracy: 100 * Double(correct) / Double(data.count), loss: lossSum / Double(data.count))
  }

  // MARK: P-GaP in one process

  /// The run's tensors with their checkpoint names: parameters, running statistics, optimizer
  /// state (everything a P-GaP worker changes).
  var stateTensors: [(name: String, tensor: Tensor)] {
    model.parameters.map { ($0.name, $0.value) } + model.buffers.map { ($0.name, $0.tensor) }
      + optimizer.state.map { ("optimizer.\($0.name)", $0.tensor) }
  }

  var snapshotTensors: [Tensor] { stateTensors.map(\.tensor) }

  private func snapshot() -> [[Float]] { snapshotTensors.map(\.array) }

  private func restore(_ values: [[Float]]) {
    for (t, v) in zip(snapshotTensors, values) { t.assign(v) }
  }

  /// Runs P-GaP's remaining rounds: every worker grows its partition for one GaP step, starting
  /// from the round's shared model (every worker from the same state: weights, statistics,
  /// optimizer state, generators); then partition i is taken from worker i, every other tensor
  /// (biases, norms, running statistics, optimizer state) is averaged over the workers, and the
  /// result is pruned to target. In one process the workers run one after another; with a
  /// collective of K ranks, rank i runs worker i and the round is assembled from what the ranks
  /// exchange — the same arithmetic in the same order, so the same bits.
  private func runParallelGaP(
    _ gap: ParallelGaP, train: Dataset, test: Dataset, batchesPerEpoch: Int,
    progress: ((BatchProgress) -> Void)?, epochEnd: ((EpochRecord) -> Void)?,
    shouldStop: () -> Bool
  ) throws {
    guard let sparsifier else { return }
    guard gap.stepLength % batchesPerEpoch == 0 else {
      throw CoppiceError.invalidArgument(
        "P-GaP in the engine needs a step length of whole epochs (\(gap.stepLength) steps, "
          + "\(batchesPerEpoch) per epoch)")
    }
    let ranks = collective.map(\.size) ?? 1
    if ranks > 1 && ranks != gap.workerCount {
      throw CoppiceError.invalidArgument(
        "P-GaP runs one worker per rank: \(gap.workerCount) partitions need \(gap.workerCount) "
          + "ranks (mpirun -np \(gap.workerCount)), not \(ranks)")
    }
    let myWorkers = ranks > 1 ? [collective!.rank] : Array(0..<gap.workerCount)
    inWorkerPhase = ranks > 1
    defer { inWorkerPhase = false }
    let epochsPerStep = gap.stepLength / batchesPerEpoch
    let targetIndex = Dictionary(
      uniqueKeysWithValues: sparsifier.targets.enumerated().compactMap { i, t in
        t.parameter.map { (ObjectIdentifier($0), i) }
      })
    let tensors = snapshotTensors
    let isTarget =
      model.parameters.map { targetIndex[ObjectIdentifier($0)] != nil }
      + [Bool](repeating: false, count: tensors.count - model.parameters.count)
    while !gap.isFinished {
      let roundStart = snapshot()
      let stateAtStart = runState()
      let sparsifierAtStart = try sparsifier.stateData()
      var workerWeights = [[[Float]]](repeating: [], count: gap.workerCount)
      var sums = tensors.map { [Double](repeating: 0, count: $0.count) }
      var run = EpochRun()
      run.phase = "P-GaP round \(gap.roundsCompleted + 1)/\(gap.rounds), \(gap.workerCount) workers"
      for worker in myWorkers {
        restore(roundStart)
        startWorker(from: stateAtStart)
        try sparsifier.beginParallelWorker(worker)
        for e in 0..<epochsPerStep {
          guard
            let r = try trainEpoch(
              train: train, epoch: epochsDone + e, batchesPerEpoch: batchesPerEpoch,
              progress: progress, shouldStop: shouldStop)
          else {
            // A round is all or nothing: go back to its start.
            restore(roundStart)
            apply(runState: stateAtStart)
            try sparsifier.restore(from: sparsifierAtStart)
            wasInterrupted = true
            return
          }
          run.lossSum += r.lossSum
          run.correct += r.correct
          run.seen += r.seen
          run.seconds += r.seconds
          run.learningRate = r.learningRate
        }
        workerWeights[worker] = sparsifier.targets.map {
          Array(UnsafeBufferPointer(start: $0.weights, count: $0.count))
        }
        if ranks == 1 {
          for (i, t) in tensors.enumerated() where !isTarget[i] {
            for j in 0..<t.count { sums[i][j] += Double(t[j]) }
          }
        }
      }
      if ranks > 1, let c = collective {
        try exchangeRound(
          c, partitions: gap.partitions, workerWeights: &workerWeights, sums: &sums,
          tensors: tensors, isTarget: isTarget)
        try combine(&run, c)
      }
      restore(roundStart)
      let scale = 1 / Double(gap.workerCount)
      for (i, t) in tensors.enumerated() where !isTarget[i] {
        for j in 0..<t.count { t[j] = Float(sums[i][j] * scale) }
      }
      try sparsifier.finishParallelRound(workerWeights: workerWeights)
      optimizer.resetState(afterMaskChangesOf: sparsifier)
      stepsTaken = stateAtStart.stepsTaken + gap.stepLength
      optimizer.stepCount = stateAtStart.optimizerSteps + Int64(gap.stepLength)
      let record = makeRecord(epoch: epochsDone + epochsPerStep, run: run, test: test)
      history.append(record)
      epochEnd?(record)
    }
  }

  /// Puts a P-GaP worker at the round's start: step counters, generators, dropout draws and
  /// optimizer steps as they were (run time and the epoch's FLOP count keep accumulating).
  private func startWorker(from s: TrainerRunState) {
    let kept = (epochFLOPs, trainSeconds, imagesSeen)
    apply(runState: s)
    (epochFLOPs, trainSeconds, imagesSeen) = kept
  }
}
