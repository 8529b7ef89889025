import CoppiceEngine
import CoppiceSparsity

/// Keeps the optimizer's updates of a sparse layer's weights to the weights its mask keeps.
///
/// A pruned weight is zero, its gradient is masked to zero every step and its optimizer state
/// is zeroed when it is pruned, so SGD and AdamW would leave it at zero: updating it only moves
/// memory. At 90% sparsity that was nine tenths of the optimizer's time (the cnn's fc1 alone
/// has 1.6 M weights: three arrays read and two written per step). So before each optimizer
/// step the trainer hands the optimizer each sparse parameter's kept positions, rebuilt only
/// when the mask changed.
///
/// Not when the run keeps optimizer state across mask changes or P-GaP merges state across
/// workers: there the state of a pruned weight can be non-zero and the sparsifier re-applies
/// the masks after a full update instead (`Sparsifier.reappliesMasks`). Nor above
/// `maxDensity`, where the full update's contiguous loop is the cheaper one.
final class KeptWeightUpdates {
  /// The densest mask whose weights are updated through a position list.
  static let maxDensity = 0.5
  /// Per target, the mask version the optimizer's positions come from; nil: it updates every
  /// weight (an optimizer's initial state).
  private var versions: [Int?] = []

  /// Brings the optimizer's position lists up to date with the sparsifier's masks.
  func refresh(_ sparsifier: Sparsifier, optimizer: Optimizer) {
    let targets = sparsifier.targets
    if versions.count != targets.count { versions = Array(repeating: nil, count: targets.count) }
    for (i, t) in targets.enumerated() {
      guard let parameter = t.parameter else { continue }
      let restrict =
        !sparsifier.reappliesMasks && t.density <= Self.maxDensity && t.count <= Int(Int32.max)
      let version = restrict ? t.maskVersion : nil
      if versions[i] == version { continue }
      versions[i] = version
      optimizer.updateOnly(parameter, at: restrict ? Self.keptPositions(of: t) : nil)
    }
  }

  /// The flat positions `target`'s mask keeps, ascending.
  static func keptPositions(of target: SparseTarget) -> [Int32] {
    var positions: [Int32] = []
    positions.reserveCapacity(target.nonzeros)
    for (i, m) in target.mask.enumerated() where m != 0 { positions.append(Int32(i)) }
    return positions
  }
}
