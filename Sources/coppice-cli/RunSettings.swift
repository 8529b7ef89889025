import Coppice
import Foundation

/// The settings of a run as plain JSON values, for the `--json` summary: every training and
/// sparse-training option that decides the run, with enums as their names and schedules,
/// distributions and partitions as small objects (never a Swift description). Step counts are
/// optimizer steps; `null` means "the method's default, resolved at run time".
struct TrainingSettings: Encodable {
  let epochs: Int
  let batchSize: Int
  let stepsPerEpoch: Int
  let learningRate: Float
  let lrSchedule: LearningRateScheduleRecord
  let warmupEpochs: Int
  let optimizer: String
  let momentum: Float
  let nesterov: Bool
  let weightDecay: Float
  let labelSmoothing: Float
  let cropPadding: Int
  let horizontalFlip: Bool
  let seed: UInt64

  init(_ c: TrainingConfig, stepsPerEpoch: Int) {
    epochs = c.epochs
    batchSize = c.batchSize
    self.stepsPerEpoch = stepsPerEpoch
    learningRate = c.learningRate
    lrSchedule = LearningRateScheduleRecord(c.schedule)
    warmupEpochs = c.warmupEpochs
    optimizer = c.optimizer.rawValue
    momentum = c.momentum
    nesterov = c.nesterov
    weightDecay = c.weightDecay
    labelSmoothing = c.labelSmoothing
    cropPadding = c.augmentation?.cropPadding ?? 0
    horizontalFlip = c.augmentation?.horizontalFlip ?? false
    seed = c.seed
  }

  enum CodingKeys: String, CodingKey {
    case epochs, optimizer, momentum, nesterov, seed
    case batchSize = "batch_size"
    case stepsPerEpoch = "steps_per_epoch"
    case learningRate = "learning_rate"
    case lrSchedule = "lr_schedule"
    case warmupEpochs = "warmup_epochs"
    case weightDecay = "weight_decay"
    case labelSmoothing = "label_smoothing"
    case cropPadding = "crop_padding"
    case horizontalFlip = "horizontal_flip"
  }
}

/// {"kind": "cosine", "minimum": 0}, {"kind": "step", "step_size": 1410, "gamma": 0.1} or
/// {"kind": "constant"}.
struct LearningRateScheduleRecord: Encodable {
  let kind: String
  var minimum: Float?
  var stepSize: Int?
  var gamma: Float?

  init(_ schedule: LearningRateSchedule) {
    switch schedule {
    case .constant: kind = "constant"
    case .cosine(let m):
      kind = "cosine"
      minimum = m
    case .step(let size, let g):
      kind = "step"
      stepSize = size
      gamma = g
    }
  }

  enum CodingKeys: String, CodingKey {
    case kind, minimum, gamma
    case stepSize = "step_size"
  }
}

/// The sparse-training configuration (`SparsityConfig`) as plain values, plus the partitions
/// that took effect.
struct SparsitySettings: Encodable {
  let config: SparsityConfig
  let stepsPerEpoch: Int
  /// The GaP partitions as they took effect (layer names), empty for the other methods.
  let effectivePartitions: [[String]]

  enum CodingKeys: String, CodingKey {
    case method, sparsity, distribution, partitions, rounds
    case keepFirstDense = "keep_first_dense"
    case keepLastDense = "keep_last_dense"
    case effectivePartitions = "effective_partitions"
    case gapStepLength = "gap_step_length"
    case gapStepEpochs = "gap_step_epochs"
    case gapPrune = "gap_prune"
    case pgapMerge = "pgap_merge"
    case restartLrPerStep = "restart_lr_per_step"
    case restartWarmupPerStep = "restart_warmup_per_step"
    case restartOptimizerPerStep = "restart_optimizer_per_step"
    case resetOptimizerState = "reset_optimizer_state"
    case globalMagnitude = "global_magnitude"
    case pruneStep = "prune_step"
    case initialSparsity = "initial_sparsity"
    case pruningBeginStep = "pruning_begin_step"
    case pruningEndStep = "pruning_end_step"
    case pruningFrequency = "pruning_frequency"
    case updateInterval = "update_interval"
    case dropFraction = "drop_fraction"
    case dropFractionDecay = "drop_fraction_decay"
    case updateEndFraction = "update_end_fraction"
    case referenceMaskUpdates = "reference_mask_updates"
  }

  func encode(to encoder: Encoder) throws {
    let c = config
    var e = encoder.container(keyedBy: CodingKeys.self)
    try e.encode(c.method.rawValue, forKey: .method)
    try e.encode(c.sparsity, forKey: .sparsity)
    try e.encode(DistributionRecord(c.resolvedDistribution), forKey: .distribution)
    try e.encode(c.keepFirstDense, forKey: .keepFirstDense)
    try e.encode(c.keepLastDense, forKey: .keepLastDense)
    try e.encode(PartitionsRecord(c.partitions), forKey: .partitions)
    try e.encode(effectivePartitions, forKey: .effectivePartitions)
    try e.encode(c.rounds, forKey: .rounds)
    try e.encode(c.gapStepLength, forKey: .gapStepLength)
    try e.encode(
      c.gapStepLength.map { Double($0) / Double(max(1, stepsPerEpoch)) }, forKey: .gapStepEpochs)
    try e.encode(c.gapPrune.rawValue, forKey: .gapPrune)
    try e.encode(c.pgapMerge.rawValue, forKey: .pgapMerge)
    try e.encode(c.restartLearningRatePerStep, forKey: .restartLrPerStep)
    try e.encode(c.restartWarmupPerStep, forKey: .restartWarmupPerStep)
    try e.encode(c.restartOptimizerPerStep, forKey: .restartOptimizerPerStep)
    try e.encode(c.resetOptimizerState, forKey: .resetOptimizerState)
    try e.encode(c.globalMagnitude, forKey: .globalMagnitude)
    try e.encode(c.pruneStep, forKey: .pruneStep)
    try e.encode(c.initialSparsity, forKey: .initialSparsity)
    try e.encode(c.pruningBeginStep, forKey: .pruningBeginStep)
    try e.encode(c.pruningEndStep, forKey: .pruningEndStep)
    try e.encode(c.pruningFrequency, forKey: .pruningFrequency)
    try e.encode(c.updateInterval, forKey: .updateInterval)
    try e.encode(c.dropFraction, forKey: .dropFraction)
    try e.encode(c.dropFractionDecay?.rawValue, forKey: .dropFractionDecay)
    try e.encode(c.updateEndFraction, forKey: .updateEndFraction)
    try e.encode(c.referenceMaskUpdates, forKey: .referenceMaskUpdates)
  }
}

/// {"kind": "uniform"}, {"kind": "erk", "power": 1} or {"kind": "table", "layers": {...}}.
struct DistributionRecord: Encodable {
  let kind: String
  var power: Double?
  var layers: [String: Double]?

  init(_ d: SparsityDistribution) {
    switch d {
    case .uniform: kind = "uniform"
    case .erk(let p):
      kind = "erk"
      power = p
    case .table(let t):
      kind = "table"
      layers = t
    }
  }
}

/// {"kind": "balanced", "count": 4, "balance": "flops"} or {"kind": "explicit", "layers": [[...]]}.
struct PartitionsRecord: Encodable {
  let kind: String
  var count: Int?
  var balance: String?
  var layers: [[String]]?

  init(_ p: PartitionSpec) {
    switch p {
    case .balanced(let n, let by):
      kind = "balanced"
      count = n
      balance = by.rawValue
    case .explicit(let lists):
      kind = "explicit"
      count = lists.count
      layers = lists
    }
  }
}

/// One schedule event (`SparsityEvent`) as plain values: kind name, the optimizer steps done
/// when it happened, the same in epochs, the partition (0-based, null when none), the layers
/// concerned and their sparsity right after it.
struct ScheduleEventRecord: Encodable {
  let event: SparsityEvent
  let stepsPerEpoch: Int

  enum CodingKeys: String, CodingKey {
    case kind, step, epoch, partition, layers, sparsity
  }

  func encode(to encoder: Encoder) throws {
    var e = encoder.container(keyedBy: CodingKeys.self)
    try e.encode(event.kind.name, forKey: .kind)
    try e.encode(event.step, forKey: .step)
    try e.encode(Double(event.step) / Double(max(1, stepsPerEpoch)), forKey: .epoch)
    try e.encode(event.partition, forKey: .partition)
    try e.encode(event.layers, forKey: .layers)
    try e.encode(event.sparsity, forKey: .sparsity)
  }
}
