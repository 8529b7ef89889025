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
  /// Per-layer prunes at each merge (default), or one global ranking over every partition's
  /// layers under their total budget.
  public let pruneMode: GaPPruneMode
  /// The masks every worker starts the current round from (all targets at target sparsity).
  public private(set) var sharedMasks: [[UInt8]] = []
  public private(set) var roundsCompleted = 0
  /// The worker whose masks are installed, nil between rounds.
  public internal(set) var currentWorker: Int?
  /// Partitions imported from workers elsewhere for the current round: worker → target →
  /// weights (`Sparsifier.importPartition`).
  var imported: [Int: [Int: [Float]]] = [:]
  /// The current worker's partition weights as of its last `Sparsifier.step()` (target →
  /// weights): what finishing a round uses for that partition when the host did not import
  /// it, even if the host has since put its weights back to the round's start.
  var workerSnapshot: [Int: [Float]]?

  public init(
    partitions: [[Int]], stepLength: Int, rounds: Int, pruneMode: GaPPruneMode = .layer
  ) {
    self.partitions = partitions
    self.stepLength = max(1, stepLength)
    self.rounds = max(1, rounds)
    self.pruneMode = pruneMode
  }

  public var gapStepLength: Int? { stepLength }

  public var workerCount: Int { partitions.count }
  public var isFinished: Bool { roundsCompleted >= rounds }

  public func start(_ context: SparsityContext) throws {
    var rng = context.rng("pgap.init", step: 0)
    for t in context.targets.indices { try context.randomizeMask(t, rng: &rng) }
    sharedMasks = context.targets.map(\.mask)
    roundsCompleted = 0
    currentWorker = nil
    context.log("step 0: random masks at target sparsity for all \(workerCount) workers")
    context.record(.start, step: 0, targets: Array(context.targets.indices))
  }

  public func update(_ context: SparsityContext, step: Int) throws {}

  /// Worker `worker`'s masks: its partition all ones, every other target at the shared mask.
  public func masks(forWorker worker: Int) -> [[UInt8]] {
    var masks = sharedMasks
    for t in partitions[worker] { masks[t] = [UInt8](repeating: 1, count: masks[t].count) }
    return masks
  }

  /// Assembles a round: target t of partition i comes from `workerWeights[i][t]`, pruned to
  /// exactly `zeros[t]` zeros by top-k magnitude (`global`: all partitions' targets ranked
  /// together, keeping Σ (counts − zeros) weights). Returns masked weights and masks per
  /// target; targets in no partition get empty arrays. Pure; throws when the snapshot sizes do
  /// not match.
  public static func assemble(
    partitions: [[Int]], workerWeights: [[[Float]]], counts: [Int], zeros: [Int],
    global: Bool = false
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
        weights[t] = w
        if !global { masks[t] = TopKMagnitude.mask(keeping: counts[t] - zeros[t], of: w) }
      }
    }
    if global {
      let members = partitions.joined().sorted()
      let keep = members.reduce(0) { $0 + counts[$1] - zeros[$1] }
      let flat = members.flatMap { weights[$0] }
      let selected: [[Int]] = flat.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return members.map { _ in [] } }
        var offset = 0
        let candidates = members.map { t -> TopKMagnitude.Candidates in
          defer { offset += counts[t] }
          return TopKMagnitude.Candidates(values: base + offset, count: counts[t])
        }
        return TopKMagnitude.largest(keep, among: candidates)
      }
      for (n, t) in members.enumerated() { for i in selected[n] { masks[t][i] = 1 } }
    }
    let inPartition = Set(partitions.joined())
    for t in counts.indices {
      if inPartition.contains(t) {
        weights[t] = zip(weights[t], masks[t]).map { $1 == 0 ? 0 : $0 }
      } else {
        weights[t] = []
        masks[t] = []
      }
    }
    return (weights, masks)
  }

  func finishRound(masks: [[UInt8]]) {
    sharedMasks = masks
    roundsCompleted += 1
    currentWorker = nil
  }

  public var gapPartitions: [[Int]] { partitions }
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
    try GaPPlan.make(config, targets: targets, totalSteps: totalSteps) {
      ParallelGaP(partitions: $0, stepLength: $1, rounds: $2, pruneMode: config.gapPrune)
    }
  }
}
