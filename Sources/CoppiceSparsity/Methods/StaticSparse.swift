/// Static random sparsity: a uniformly random mask at each target's sparsity, fixed for the
/// whole run.
public final class StaticSparse: SparsitySchedule {
  public let name = "static"
  public init() {}

  public func start(_ context: SparsityContext) throws {
    var rng = context.rng("static", step: 0)
    for t in context.targets.indices { try context.randomizeMask(t, rng: &rng) }
    context.log("step 0: random masks at target sparsity")
    context.record(.start, step: 0, targets: Array(context.targets.indices))
  }

  public func update(_ context: SparsityContext, step: Int) throws {}
  public var lastMaskChangeStep: Int { 0 }
  public func phase(afterStep step: Int) -> String { "static sparse" }
}

extension StaticSparse: ConfiguredSchedule {
  public static let method = SparsityMethod.staticSparse
  public static func make(_ config: SparsityConfig, targets: [SparseTarget], totalSteps: Int)
    -> (schedule: SparsitySchedule, notes: [String])
  { (StaticSparse(), []) }
}
