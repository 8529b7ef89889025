/// Parallel scheduled grow-and-prune (P-GaP, Ma et al. ICLR 2022).
///
/// κ workers start each round from the same model, whose targets are all at their target
/// sparsity (initially random masks). Worker i grows partition i (`masks(forWorker:)`) and
/// trains for `stepLength` steps. The round's model is assembled from worker i's weights of
/// partition i, every target pruned to its target by exact top-k magnitude (`assemble`), and
/// becomes the next round's start. After `rounds` rounds the masks are frozen for fine-tuning.
///
/// This schedule does not run workers: the caller does (one after another in one process, or
/// one per MPI rank), through `Sparsifier.beginParallelWorker` and
/// `Sparsifier.finishParallelRound`. Tensors outside the partitions (biases, norms, running
/// statistics) are not the schedule's: the caller averages them over the workers. `update`
/// never changes masks.
///
/// Steps count parallel time: round r covers steps r·stepLength+1 … (r+1)·stepLength for
/// every worker, so the GaP phase ends after rounds·stepLength steps, then fine-tuning.
public final class ParallelGaP: SparsitySchedule {
  public let name = "pgap"
  public let partitions: [[Int]]
  /// Optimizer steps each worker trains per round.
  public let stepLength: Int
  public let rounds: Int
  /// The masks every worker starts the current round from (all targets at target sparsity).
  public private(set) var sharedMasks: [[UInt8]] = []
  public private(set) var roundsCompleted = 0
  /// The worker whose masks are installed, nil between rounds.
  public internal(set) var currentWorker: Int?
  /// Partitions imported from workers elsewhere for the current round: worker → target →
  /// weights (`Sparsifier.importPartition`).
  var imported: [Int: [Int: [Float]]] = [:]

  public init(partitions: [[Int]], stepLength: Int, rounds: Int) {
    self.partitions = partitions
    self.stepLength = max(1, stepLength)
    self.rounds = max(1, rounds)
  }

  public var workerCount: Int { partitions.count }
  public var isFinished: Bool { roundsCompleted >= rounds }

  public func start(_ context: SparsityContext) throws {
    var rng = context.rng("pgap.init", step: 0)
    for t in context.targets.indices { try context.randomizeMask(t, rng: &rng) }
    sharedMasks = context.targets.map(\.mask)
    roundsCompleted = 0
    currentWorker = nil
    context.log("step 0: random masks at target sparsity for all \(workerCount) workers")
  }

  public func update(_ context: SparsityContext, step: Int) throws {}

  /// Worker `worker`'s masks: its partition all ones, every other target at the shared mask.
  public func masks(forWorker worker: Int) -> [[UInt8]] {
    var masks = sharedMasks
    for t in partitions[worker] { masks[t] = [UInt8](repeating: 1, count: masks[t].count) }
    return masks
  }

  /// Assembles a round: target t of partition i comes from `workerWeights[i][t]`, pruned to
  /// exactly `zeros[t]` zeros by top-k magnitude. Returns masked weights and masks per target.
  /// Pure; throws when the snapshot sizes do not match.
  public static func assemble(
    partitions: [[Int]], workerWeights: [[[Float]]], counts: [Int], zeros: [Int]
  ) throws -> (weights: [[Float]], masks: [[UInt8]]) {
    guard workerWeights.count == partitions.count else {
      throw CoppiceError.invalidArgument(
        "P-GaP assemble: \(workerWeights.count) worker snapshots for \(partitions.count) workers")
    }
    var weights = counts.map { [Float](repeating: 0, count: $0) }
    var masks = counts.map { [UInt8](repeating: 0, count: $0) }
    for (worker, partition) in partitions.enumerated() {
      guard workerWeights[worker].count == counts.count else {
        throw CoppiceError.invalidArgument(
          "P-GaP assemble: worker \(worker) has \(workerWeights[worker].count) tensors, "
            + "expected \(counts.count)")
      }
      for t in partition {
        let w = workerWeights[worker][t]
        guard w.count == counts[t] else {
          throw CoppiceError.invalidArgument(
            "P-GaP assemble: worker \(worker) tensor \(t) has \(w.count) weights, "
              + "expected \(counts[t])")
        }
        let mask = TopKMagnitude.mask(keeping: counts[t] - zeros[t], of: w)
        masks[t] = mask
        weights[t] = zip(w, mask).map { $1 == 0 ? 0 : $0 }
      }
    }
    return (weights, masks)
  }

  func finishRound(masks: [[UInt8]]) {
    sharedMasks = masks
    roundsCompleted += 1
    currentWorker = nil
  }

  public var lastMaskChangeStep: Int { rounds * stepLength }

  public func phase(afterStep step: Int) -> String {
    if isFinished { return "fine-tune" }
    let round = "P-GaP round \(roundsCompleted + 1)/\(rounds)"
    guard let w = currentWorker else { return round }
    return "\(round), worker \(w) (partition \(w) dense)"
  }

  public func masksFrozen(afterStep step: Int) -> Bool { isFinished }

  // MARK: State for checkpoints

  public func saveState() -> [String: [UInt8]] {
    var state: [String: [UInt8]] = [
      "rounds_completed": withUnsafeBytes(of: Int64(roundsCompleted).littleEndian, Array.init),
      "current_worker": withUnsafeBytes(of: Int64(currentWorker ?? -1).littleEndian, Array.init),
    ]
    for (t, mask) in sharedMasks.enumerated() {
      state["shared_mask.\(t)"] = MaskPacking.pack(mask)
    }
    return state
  }

  public func restoreState(_ state: [String: [UInt8]], context: SparsityContext) throws {
    func integer(_ key: String) throws -> Int {
      guard let bytes = state[key], bytes.count == 8 else {
        throw CoppiceError.invalidArgument("P-GaP state: missing or malformed \(key)")
      }
      return Int(Int64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
    }
    let completed = try integer("rounds_completed")
    let worker = try integer("current_worker")
    guard (0...rounds).contains(completed), (-1..<workerCount).contains(worker) else {
      throw CoppiceError.invalidArgument(
        "P-GaP state: round \(completed) / worker \(worker) out of range")
    }
    var masks: [[UInt8]] = []
    for (t, target) in context.targets.enumerated() {
      guard let bytes = state["shared_mask.\(t)"],
        let mask = MaskPacking.unpack(bytes, count: target.count)
      else {
        throw CoppiceError.invalidArgument(
          "P-GaP state: missing or malformed shared mask of \(target.name)")
      }
      masks.append(mask)
    }
    sharedMasks = masks
    roundsCompleted = completed
    currentWorker = worker < 0 ? nil : worker
  }
}

extension ParallelGaP: ConfiguredSchedule {
  public static let method = SparsityMethod.pgap
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    throws -> (schedule: SparsitySchedule, notes: [String])
  {
    try GaPPlan.make(config, targets: targets, totalSteps: totalSteps, ParallelGaP.init)
  }
}
