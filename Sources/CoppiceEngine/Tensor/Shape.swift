/// Flattens [N, ...] to [N, product of the rest] (no copy of the data is needed, but a view
/// tensor is used so that the input keeps its own shape).
public final class Flatten: Layer {
  public var needsInputGradient = true
  private var inputShape: [Int] = []

  public init() {}
  public var description: String { "Flatten" }
  public func outputShape(for s: [Int]) -> [Int] { [s[0], s.dropFirst().reduce(1, *)] }

  /// The input viewed as [N, rest] (no copy).
  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    inputShape = x.shape
    return x.view(as: outputShape(for: x.shape))
  }

  /// The output gradient viewed in the input's shape (no copy).
  public func backward(_ dy: Tensor) -> Tensor {
    guard needsInputGradient else { return dy }  // first layer: nobody reads it
    return dy.view(as: inputShape)
  }
}
