/// SET (Mocanu et al. 2018): from a random mask at target sparsity, every `interval` steps drop
/// a fraction of each target's kept weights by smallest magnitude and regrow as many at random
/// among the positions not kept. See `DynamicSparseTiming` for the exact rules.
public final class SparseEvolutionaryTraining: SparsitySchedule {
  public let name = "set"
  public let timing: DynamicSparseTiming

  public init(timing: DynamicSparseTiming) { self.timing = timing }

  public func start(_ context: SparsityContext) throws {
    var rng = context.rng("set.init", step: 0)
    for t in context.targets.indices { try context.randomizeMask(t, rng: &rng) }
    context.record(.start, step: 0, targets: Array(context.targets.indices))
  }

  public func update(_ context: SparsityContext, step: Int) throws {
    guard timing.isUpdateStep(step) else { return }
    var rng = context.rng("set.grow", step: step)
    try timing.update(context, step: step, method: "SET") { _, k, mask in
      RandomMask.choose(k, from: mask.indices.filter { mask[$0] == 0 }, using: &rng)
    }
  }

  public func isMaskUpdateStep(_ step: Int) -> Bool { timing.isUpdateStep(step) }
  public var lastMaskChangeStep: Int { timing.endStep - 1 }
  public func phase(afterStep step: Int) -> String { timing.phase(afterStep: step, method: "SET") }
}

extension SparseEvolutionaryTraining: ConfiguredSchedule {
  public static let method = SparsityMethod.set
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    -> (schedule: SparsitySchedule, notes: [String])
  {
    (SparseEvolutionaryTraining(timing: DynamicSparseTiming(config, totalSteps: totalSteps)), [])
  }
}
