/// Everything that configures a sparse-training run, with each method's standard defaults.
/// Step counts are optimizer steps; callers convert epochs with `stepsPerEpoch`. Options that
/// a method does not use are ignored.
///
/// This is the one configuration type of every front end: the CLI's options, the C ABI's
/// `coppice_sparsifier_config_init` (and so Python's `Sparsifier` and C++'s `SparsifierConfig`)
/// take their defaults from `SparsityConfig.defaults`, and `validate()` is the one place that
/// checks the ranges.
public struct SparsityConfig: Equatable, Sendable, Codable {
  public var method: SparsityMethod
  /// Global target sparsity in [0, 1).
  public var sparsity: Double
  /// nil: the method's default (`SparsityMethod.defaultDistribution`).
  public var distribution: SparsityDistribution?
  public var keepFirstDense = false
  public var keepLastDense = false

  // oneshot, gmp
  /// One-shot prune step; nil: half of training.
  public var pruneStep: Int?
  /// Rank magnitudes over all layers at once instead of per layer (oneshot, gmp).
  public var globalMagnitude = false
  /// GMP: initial sparsity, first and last pruning steps (nil: 25% and 75% of training),
  /// pruning frequency.
  public var initialSparsity = 0.0
  public var pruningBeginStep: Int?
  public var pruningEndStep: Int?
  public var pruningFrequency = 100

  // set, rigl
  public var updateInterval = 100
  public var dropFraction = 0.3
  /// nil: cosine for RigL, constant for SET.
  public var dropFractionDecay: DropFractionDecay?
  /// Mask updates stop at this fraction of training (RigL: 0.75).
  public var updateEndFraction = 0.75
  /// SET/RigL update steps as in the RigL reference code: an update step does the mask update
  /// instead of the optimizer step (the caller skips the step; `Sparsifier.skipsOptimizerStep`)
  /// and the drop count is floor(α·nonzeros) instead of rounded (default false).
  public var referenceMaskUpdates = false

  // cgap, pgap
  public var partitions = PartitionSpec.default
  /// Optimizer steps per GaP step (for P-GaP: per worker per round); nil: the GaP rounds fill
  /// the first 75% of training. C-GaP needs κ·R·length ≤ total steps; P-GaP counts in parallel
  /// time and needs R·length ≤ total steps.
  public var gapStepLength: Int?
  /// GaP rounds R: each grows every partition once (C-GaP) or runs every worker once (P-GaP).
  public var rounds = 1
  /// Whether the trainer restarts its learning-rate schedule at every GaP step and again for
  /// the fine-tune (read by the trainer; default one continuous schedule). The restarted
  /// schedule has no warm-up unless `restartWarmupPerStep` is set.
  public var restartLearningRatePerStep = false
  /// With `restartLearningRatePerStep`: every restarted schedule begins with the configured
  /// warm-up, as the official GaP code restarts training (default false: no warm-up).
  public var restartWarmupPerStep = false
  /// Whether every GaP step starts with fresh optimizer state (all momentum / moments zero and
  /// the optimizer's step count reset), as the official GaP code does (default false). For
  /// P-GaP the merged model starts each round with fresh state.
  public var restartOptimizerPerStep = false
  /// How a GaP prune chooses the weights it keeps: per layer (default) or by one global
  /// magnitude ranking (non-uniform GaP).
  public var gapPrune = GaPPruneMode.layer
  /// How P-GaP merges the workers' tensors other than the partitions' weights.
  public var pgapMerge = ParallelGaPMerge.average

  /// Whether the caller should zero optimizer state of weights whose mask status changed.
  public var resetOptimizerState = true

  public init(method: SparsityMethod, sparsity: Double = 0.9) {
    self.method = method
    self.sparsity = sparsity
  }

  /// The defaults every front end reports: C-GaP at 90% sparsity, 4 FLOP-balanced partitions,
  /// 1 round filling 75% of training, SET/RigL updates every 100 steps dropping 30%.
  public static let defaults = SparsityConfig(method: .cgap)

  /// Upper bounds that keep step arithmetic far from overflow (and absurd runs out).
  public static let maxPartitions = 1024
  public static let maxRounds = 1_000_000
  public static let maxUpdateInterval = 1 << 40

  /// GaP steps that run one after another with `partitionCount` partitions: κ·R for C-GaP;
  /// R for P-GaP, whose κ workers run each round in parallel (counted in parallel time, even
  /// when one process runs them one after another). nil for other methods or on overflow.
  public func sequentialGaPSteps(partitionCount: Int) -> Int? {
    switch method {
    case .cgap:
      let (steps, overflow) = partitionCount.multipliedReportingOverflow(by: rounds)
      return overflow ? nil : steps
    case .pgap: return rounds
    default: return nil
    }
  }

  public var resolvedDistribution: SparsityDistribution {
    distribution ?? method.defaultDistribution
  }

  /// Checks option ranges; messages name the option.
  public func validate() throws {
    func fail(_ message: String) -> CoppiceError { .invalidArgument(message) }
    guard sparsity.isFinite, sparsity >= 0, sparsity < 1 else {
      throw fail("sparsity must be in [0, 1), got \(sparsity)")
    }
    guard initialSparsity.isFinite, initialSparsity >= 0, initialSparsity < 1 else {
      throw fail("initial sparsity must be in [0, 1), got \(initialSparsity)")
    }
    guard dropFraction.isFinite, dropFraction >= 0, dropFraction <= 1 else {
      throw fail("drop fraction (drop_fraction) must be in [0, 1], got \(dropFraction)")
    }
    guard updateEndFraction.isFinite, updateEndFraction > 0, updateEndFraction <= 1 else {
      throw fail("update end fraction must be in (0, 1], got \(updateEndFraction)")
    }
    guard updateInterval >= 1 else {
      throw fail("update interval (update_interval) must be ≥ 1, got \(updateInterval)")
    }
    guard updateInterval <= Self.maxUpdateInterval else {
      throw fail("update interval (update_interval) must be ≤ 2^40, got \(updateInterval)")
    }
    guard pruningFrequency >= 1 else {
      throw fail("pruning frequency must be ≥ 1, got \(pruningFrequency)")
    }
    guard rounds >= 1 else { throw fail("GaP rounds must be ≥ 1, got \(rounds)") }
    guard rounds <= Self.maxRounds else {
      throw fail("GaP rounds must be ≤ \(Self.maxRounds), got \(rounds)")
    }
    // Step options are held to a run's most steps (2^40), so schedules cannot overflow.
    let steps = 0...Sparsifier.maxSteps
    if let gapStepLength, !(1...Sparsifier.maxSteps).contains(gapStepLength) {
      throw fail("GaP step length must be in 1...2^40 optimizer steps, got \(gapStepLength)")
    }
    guard pruningFrequency <= Sparsifier.maxSteps else {
      throw fail("pruning frequency must be ≤ 2^40, got \(pruningFrequency)")
    }
    if let pruneStep, !steps.contains(pruneStep) {
      throw fail("prune step must be in 0...2^40, got \(pruneStep)")
    }
    if let b = pruningBeginStep, !steps.contains(b) {
      throw fail("pruning begin step must be in 0...2^40, got \(b)")
    }
    if let e = pruningEndStep, e > Sparsifier.maxSteps {
      throw fail("pruning end step must be ≤ 2^40, got \(e)")
    }
    if let e = pruningEndStep, e < (pruningBeginStep ?? 0) {
      throw fail("pruning end step \(e) is before the begin step \(pruningBeginStep ?? 0)")
    }
    if case .balanced(let count, _) = partitions {
      guard count >= 1 else { throw fail("number of partitions must be ≥ 1, got \(count)") }
      guard count <= Self.maxPartitions else {
        throw fail("number of partitions must be ≤ \(Self.maxPartitions), got \(count)")
      }
    }
    if case .erk(let power) = resolvedDistribution, !(power.isFinite && power >= 0) {
      throw fail("ERK power (erk_power) must be finite and ≥ 0, got \(power)")
    }
  }
}

/// How a GaP prune keeps weights.
public enum GaPPruneMode: String, Sendable, CaseIterable, Codable {
  /// Every layer pruned to its own target by top-k magnitude (uniform or the distribution's
  /// per-layer sparsities, exactly).
  case layer
  /// One magnitude ranking over the pruned partition's layers under their summed budget (and
  /// over every sparse layer for the final prune, under the model's total budget): per-layer
  /// sparsities become non-uniform, the total stays exact (the paper's non-uniform GaP).
  case global
}

/// How P-GaP assembles a round from its workers, besides the partitions' weights.
public enum ParallelGaPMerge: String, Sendable, CaseIterable, Codable {
  /// Every tensor other than the partitions' weights (biases, norms, running statistics,
  /// optimizer state) averaged over the workers.
  case average
  /// Every parameter and buffer of a partition's layers (weights, biases, norms, running
  /// statistics, their optimizer state) copied from the worker that grew it, as the official
  /// code merges; only what belongs to no partition is averaged.
  case partition
}

extension SparsityConfig {
  /// Decodes a configuration; options added after a checkpoint was written take their
  /// defaults, so older checkpoints still load.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      method: try c.decode(SparsityMethod.self, forKey: .method),
      sparsity: try c.decode(Double.self, forKey: .sparsity))
    let d = SparsityConfig(method: method, sparsity: sparsity)
    func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
      try c.decodeIfPresent(T.self, forKey: key) ?? fallback
    }
    distribution = try c.decodeIfPresent(SparsityDistribution.self, forKey: .distribution)
    keepFirstDense = try value(.keepFirstDense, d.keepFirstDense)
    keepLastDense = try value(.keepLastDense, d.keepLastDense)
    pruneStep = try c.decodeIfPresent(Int.self, forKey: .pruneStep)
    globalMagnitude = try value(.globalMagnitude, d.globalMagnitude)
    initialSparsity = try value(.initialSparsity, d.initialSparsity)
    pruningBeginStep = try c.decodeIfPresent(Int.self, forKey: .pruningBeginStep)
    pruningEndStep = try c.decodeIfPresent(Int.self, forKey: .pruningEndStep)
    pruningFrequency = try value(.pruningFrequency, d.pruningFrequency)
    updateInterval = try value(.updateInterval, d.updateInterval)
    dropFraction = try value(.dropFraction, d.dropFraction)
    dropFractionDecay = try c.decodeIfPresent(DropFractionDecay.self, forKey: .dropFractionDecay)
    updateEndFraction = try value(.updateEndFraction, d.updateEndFraction)
    referenceMaskUpdates = try value(.referenceMaskUpdates, d.referenceMaskUpdates)
    partitions = try value(.partitions, d.partitions)
    gapStepLength = try c.decodeIfPresent(Int.self, forKey: .gapStepLength)
    rounds = try value(.rounds, d.rounds)
    restartLearningRatePerStep = try value(
      .restartLearningRatePerStep, d.restartLearningRatePerStep)
    restartWarmupPerStep = try value(.restartWarmupPerStep, d.restartWarmupPerStep)
    restartOptimizerPerStep = try value(.restartOptimizerPerStep, d.restartOptimizerPerStep)
    gapPrune = try value(.gapPrune, d.gapPrune)
    pgapMerge = try value(.pgapMerge, d.pgapMerge)
    resetOptimizerState = try value(.resetOptimizerState, d.resetOptimizerState)
  }
}
