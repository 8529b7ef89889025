/// Flattens [N, ...] to [N, product of the rest] (no copy of the data is needed, but a view
/// tensor is used so that the input keeps its own shape).
public final class Flatten: Layer {
  public var needsInputGradient = true
  private var inputShape: [Int] = []
  private var output: Tensor?
  private var gradInput: Tensor?

  public init() {}
  public var description: String { "Flatten" }
  public func outputShape(for s: [Int]) -> [Int] { [s[0], s.dropFirst().reduce(1, *)] }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    inputShape = x.shape
    let y = Tensor.reuse(output, shape: outputShape(for: x.shape))
    output = y
    y.copy(from: x)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard needsInputGradient else { return dy }  // first layer: nobody reads it
    let dx = Tensor.reuse(gradInput, shape: inputShape)
    gradInput = dx
    dx.copy(from: dy)
    return dx
  }
}
