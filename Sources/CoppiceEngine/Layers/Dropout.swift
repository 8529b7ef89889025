import CCoppiceKernels

/// Inverted dropout with probability `p`; identity in evaluation. The mask of each call comes
/// from a counter-based generator keyed by the seed and the call count, so runs reproduce.
public final class Dropout: Layer {
  public let p: Float
  public var needsInputGradient = true
  private let seed: UInt64
  /// Training forward passes so far; each one's mask derives from (seed, count). Part of a
  /// checkpoint's state.
  public var calls: UInt64 = 0
  private var mask: Tensor?
  private var output: Tensor?
  private var gradInput: Tensor?
  private var lastWasTraining = false

  public init(p: Float, seed: UInt64) {
    precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1)")
    self.p = p
    self.seed = seed
  }

  public var description: String { "Dropout(\(p))" }
  public func outputShape(for s: [Int]) -> [Int] { s }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    let y = Tensor.reuse(output, shape: x.shape)
    output = y
    lastWasTraining = training && p > 0
    if !lastWasTraining {
      y.copy(from: x)
      return y
    }
    let m = Tensor.reuse(mask, shape: x.shape)
    mask = m
    calls += 1
    ck_dropout_forward(x.count, p, seed &+ calls &* 0x9E37_79B9, x.data, m.data, y.data)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    let dx = Tensor.reuse(gradInput, shape: dy.shape)
    gradInput = dx
    if lastWasTraining, let m = mask {
      ck_mul(dy.count, dy.data, m.data, dx.data)
    } else {
      dx.copy(from: dy)
    }
    return dx
  }
}
