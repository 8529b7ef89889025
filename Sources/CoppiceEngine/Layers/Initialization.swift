import CoppiceSparsity

/// Weight initialisation.
public enum Initialization {
  /// Kaiming (He) normal for ReLU networks: N(0, 2 / fanIn).
  public static func kaimingNormal(_ t: Tensor, fanIn: Int, using rng: inout SeededGenerator) {
    let std = (2.0 / Float(max(fanIn, 1))).squareRoot()
    for i in 0..<t.count { t[i] = rng.nextNormal() * std }
  }

  /// Uniform in [-bound, bound].
  public static func uniform(_ t: Tensor, bound: Float, using rng: inout SeededGenerator) {
    for i in 0..<t.count { t[i] = (rng.nextUniform() * 2 - 1) * bound }
  }
}
