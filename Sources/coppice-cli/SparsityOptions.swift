import ArgumentParser
import Coppice
import Foundation

extension SparsityMethod: ExpressibleByArgument {}
extension PartitionBalance: ExpressibleByArgument {}
extension SparseDispatch.Mode: ExpressibleByArgument {}
extension GaPPruneMode: ExpressibleByArgument {}
extension ParallelGaPMerge: ExpressibleByArgument {}
extension DropFractionDecay: ExpressibleByArgument {}

enum DistributionName: String, ExpressibleByArgument, CaseIterable {
  case uniform, erk
}

/// The sparse-training options shared by `train` and `compare`.
struct SparsityOptions: ParsableArguments {
  // Unconditional: "-0.1" is a (refused) value here, not an unknown short option.
  @Option(parsing: .unconditional, help: "Target sparsity of the prunable weights, in [0, 1).")
  var sparsity = SparsityConfig.defaults.sparsity
  @Option(help: "Per-layer sparsity: uniform or erk (default: erk for rigl, uniform otherwise).")
  var distribution: DistributionName?
  @Option(help: "ERK power.") var erkPower = SparsityDistribution.defaultERKPower
  @Option(help: "File with explicit per-layer sparsities ('name sparsity' per line).")
  var sparsityTable: String?
  @Flag(help: "Keep the first prunable layer dense.") var keepFirstDense = false
  @Flag(help: "Keep the last prunable layer dense.") var keepLastDense = false
  @Option(help: "GaP: number of partitions κ.") var partitions = PartitionSpec.defaultCount
  @Option(help: "GaP: balance partitions by parameters or flops.") var partitionBalance:
    PartitionBalance = PartitionSpec.defaultBalance
  @Option(help: "GaP: explicit partitions, layers comma-separated, partitions ';'-separated.")
  var partitionList: String?
  @Option(help: "GaP: epochs per GaP step (per worker step for pgap).") var stepEpochs = 1
  @Option(help: "GaP: optimizer steps per GaP step (instead of --step-epochs; cgap only).")
  var stepSteps: Int?
  @Flag(help: "oneshot/gmp: rank magnitudes over all layers at once instead of per layer.")
  var globalMagnitude = false
  @Option(help: "GaP: rounds (each grows every partition once).")
  var rounds = SparsityConfig.defaults.rounds
  @Option(help: "GaP: fine-tune epochs after the last step (default: the rest of --epochs).")
  var finetuneEpochs: Int?
  @Option(
    help: ArgumentHelp(
      "GaP: prune per layer, or by one global magnitude ranking (non-uniform GaP).",
      discussion:
        "global ranks the pruned partition's layers together under their summed budget, and "
        + "the whole model for the final prune (P-GaP: every merge), so per-layer sparsities "
        + "differ while the total stays exact."))
  var gapPrune = SparsityConfig.defaults.gapPrune
  @Flag(help: "GaP: restart the learning-rate schedule at every GaP step (and for the fine-tune).")
  var restartLrPerStep = false
  @Flag(
    help: "GaP: with --restart-lr-per-step, begin every restart with the --warmup-epochs warm-up.")
  var restartWarmupPerStep = false
  @Flag(help: "GaP: fresh optimizer state (zero momentum/moments) at every GaP step.")
  var restartOptimizerPerStep = false
  @Option(
    help: ArgumentHelp(
      "pgap: average every tensor besides the partitions' weights, or copy a partition's layers' "
        + "parameters, buffers and optimizer state from its worker (partition)."))
  var pgapMerge = SparsityConfig.defaults.pgapMerge
  @Flag(help: "Keep optimizer state of weights whose mask changes (default: reset to zero).")
  var keepOptimizerState = false
  @Option(help: "oneshot: epoch at which to prune (default: half of training).") var pruneEpoch:
    Int?
  @Option(help: "set/rigl: optimizer steps between mask updates.")
  var updateInterval = SparsityConfig.defaults.updateInterval
  @Option(help: "set/rigl: fraction of kept weights dropped per update.")
  var dropFraction = SparsityConfig.defaults.dropFraction
  @Option(help: "set/rigl: drop fraction decay, constant or cosine (default: cosine for rigl).")
  var dropFractionDecay: DropFractionDecay?
  @Option(help: "set/rigl: mask updates stop at this fraction of training.")
  var updateEndFraction = SparsityConfig.defaults.updateEndFraction
  @Flag(
    help: ArgumentHelp(
      "set/rigl: update steps as in the RigL reference: the mask update replaces the optimizer "
        + "step, drop count floored."))
  var referenceMaskUpdates = false
  @Option(help: "gmp: initial sparsity.") var initialSparsity = SparsityConfig.defaults
    .initialSparsity
  @Option(help: "gmp: first pruning step (default: 25% of training).") var pruningBeginStep: Int?
  @Option(help: "gmp: last pruning step (default: 75% of training).") var pruningEndStep: Int?
  @Option(help: "gmp: optimizer steps between prunes.")
  var pruningFrequency = SparsityConfig.defaults.pruningFrequency
  @Option(help: "Kernel choice for masked layers: automatic, alwaysSparse, alwaysDense.")
  var dispatch: SparseDispatch.Mode = .automatic

  /// Every integer option in its range, before any arithmetic uses it.
  func validate() throws {
    guard sparsity >= 0, sparsity < 1 else {
      throw ValidationError("--sparsity must be in [0, 1), got \(sparsity)")
    }
    let epochs = 0...TrainingConfig.maxEpochs
    try requireRange(stepEpochs, 1...TrainingConfig.maxEpochs, "--step-epochs")
    if let n = stepSteps { try requireRange(n, 1...Sparsifier.maxSteps, "--step-steps") }
    try requireRange(rounds, 1...SparsityConfig.maxRounds, "--rounds")
    if let n = finetuneEpochs { try requireRange(n, epochs, "--finetune-epochs") }
    if let n = pruneEpoch { try requireRange(n, epochs, "--prune-epoch") }
    try requireRange(partitions, 1...SparsityConfig.maxPartitions, "--partitions")
    try requireRange(updateInterval, 1...SparsityConfig.maxUpdateInterval, "--update-interval")
  }

  /// Epochs that a GaP method's grow-and-prune phase takes (before fine-tuning): its
  /// sequential GaP steps (`SparsityConfig.sequentialGaPSteps`) of `--step-steps` or
  /// `--step-epochs`, rounded up to whole epochs; 0 for the other methods, nil when the count
  /// overflows. `partitionCount`: the partitions that take effect (default: the requested).
  func gapEpochs(method: SparsityMethod, stepsPerEpoch: Int = 1, partitionCount: Int? = nil)
    -> Int?
  {
    var c = SparsityConfig(method: method)
    c.rounds = rounds
    guard
      let sequential = c.sequentialGaPSteps(partitionCount: partitionCount ?? self.partitionCount)
    else { return 0 }
    let perEpoch = max(1, stepsPerEpoch)
    let (stepLength, o1) = stepEpochs.multipliedReportingOverflow(by: perEpoch)
    let (steps, o2) = sequential.multipliedReportingOverflow(by: stepSteps ?? stepLength)
    guard !o1, !o2 else { return nil }
    return steps / perEpoch + (steps % perEpoch == 0 ? 0 : 1)
  }

  var partitionCount: Int {
    partitionList.map { Partitioning.parseList($0).count } ?? partitions
  }

  /// The number of GaP partitions as it takes effect on `model`: κ reduced to the number of
  /// layers or blocks, dense-by-design layers left out (what the sparsifier resolves).
  func effectivePartitionCount(method: SparsityMethod, model: ReferenceModel) throws -> Int {
    guard method == .cgap || method == .pgap else { return partitionCount }
    let c = try config(method: method, stepsPerEpoch: 1, totalEpochs: 1)
    do {
      return try Sparsifier.gapPartitions(of: model.build(seed: 0).sparseTargets(), config: c)
        .count
    } catch {
      throw ValidationError("\(error)")
    }
  }

  /// Total epochs for `method`: GaP methods add their phase and the fine-tune; the others
  /// use `epochs`. The GaP phase counts the partitions that take effect on `model`.
  func totalEpochs(
    method: SparsityMethod, epochs: Int, stepsPerEpoch: Int, model: ReferenceModel? = nil
  ) throws -> Int {
    if stepSteps != nil && method == .pgap {
      throw ValidationError("--step-steps is for cgap; P-GaP in one process steps whole epochs")
    }
    let most = TrainingConfig.maxEpochs
    let kappa = try model.map { try effectivePartitionCount(method: method, model: $0) }
    guard
      let gap = gapEpochs(method: method, stepsPerEpoch: stepsPerEpoch, partitionCount: kappa),
      gap <= most
    else {
      throw ValidationError(
        "\(method.rawValue)'s rounds take more than \(most) epochs (rounds × "
          + (method == .cgap ? "partitions × " : "") + "step length)")
    }
    guard gap > 0 else { return epochs }
    if let f = finetuneEpochs {
      guard f >= 0, gap + f <= most else {
        throw ValidationError(
          "--finetune-epochs must be in 0...\(most - gap) (the rounds take \(gap) epochs)")
      }
      return gap + f
    }
    guard epochs >= gap else {
      throw ValidationError(
        "\(method.rawValue) needs \(gap) epochs for its rounds (rounds × "
          + (method == .cgap ? "partitions × " : "") + "step epochs) but --epochs is \(epochs)")
    }
    return epochs
  }

  /// The engine configuration for `method`, with epochs converted to optimizer steps.
  func config(method: SparsityMethod, stepsPerEpoch: Int, totalEpochs: Int) throws
    -> SparsityConfig
  {
    var c = SparsityConfig(method: method, sparsity: sparsity)
    if let path = sparsityTable {
      c.distribution = .table(try SparsityTable.load(path: path))
    } else if let d = distribution {
      c.distribution = d == .uniform ? .uniform : .erk(power: erkPower)
    }
    c.keepFirstDense = keepFirstDense
    c.keepLastDense = keepLastDense
    if let list = partitionList {
      c.partitions = .explicit(Partitioning.parseList(list))
    } else {
      c.partitions = .balanced(count: partitions, by: partitionBalance)
    }
    c.gapStepLength = stepSteps ?? stepEpochs * stepsPerEpoch
    c.globalMagnitude = globalMagnitude
    c.rounds = rounds
    c.restartLearningRatePerStep = restartLrPerStep
    c.restartWarmupPerStep = restartWarmupPerStep
    c.restartOptimizerPerStep = restartOptimizerPerStep
    c.gapPrune = gapPrune
    c.pgapMerge = pgapMerge
    c.dropFractionDecay = dropFractionDecay
    c.updateEndFraction = updateEndFraction
    c.referenceMaskUpdates = referenceMaskUpdates
    c.initialSparsity = initialSparsity
    c.pruningBeginStep = pruningBeginStep
    c.pruningEndStep = pruningEndStep
    c.pruningFrequency = pruningFrequency
    c.resetOptimizerState = !keepOptimizerState
    c.pruneStep = (pruneEpoch ?? totalEpochs / 2) * stepsPerEpoch
    c.updateInterval = updateInterval
    c.dropFraction = dropFraction
    return c  // validated once, by the run that uses it
  }
}
