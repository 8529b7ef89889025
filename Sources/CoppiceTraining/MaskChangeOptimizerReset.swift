import CoppiceEngine
import CoppiceSparsity

/// The optimizer's side of a mask change: the sparsifier reports which positions were grown
/// and pruned; the training layer zeroes the optimizer state (momentum, Adam moments) there,
/// so a regrown weight starts afresh.
extension Optimizer {
  /// Zeroes the state of the weights in `sparsifier.lastChanges`, for targets backed by engine
  /// parameters. No-op when the sparsity configuration keeps optimizer state
  /// (`resetOptimizerState` false).
  public func resetState(afterMaskChangesOf sparsifier: Sparsifier) {
    guard sparsifier.config.resetOptimizerState else { return }
    for (t, change) in zip(sparsifier.targets, sparsifier.lastChanges) where !change.isEmpty {
      if let p = t.parameter { resetState(of: p, at: change.all) }
    }
  }
}

extension Optimizer {
  /// A fresh optimizer: every state tensor zero and the step count 0 (GaP's
  /// `restartOptimizerPerStep`).
  public func resetAllState() {
    for (_, tensor) in state { tensor.zero() }
    stepCount = 0
  }
}
