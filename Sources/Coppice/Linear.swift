import CCoppiceKernels

/// Fully-connected layer: y = x·Wᵀ + b, with W of shape [out, in]. Input [N, in].
public final class Linear: Layer {
  public let name: String
  public let inFeatures: Int
  public let outFeatures: Int
  public let weight: Parameter
  public let bias: Parameter?
  public var needsInputGradient = true
  private var input: Tensor?
  private var output: Tensor?
  private var gradInput: Tensor?

  public init(
    name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true,
    rng: inout SeededGenerator
  ) {
    self.name = name
    self.inFeatures = inFeatures
    self.outFeatures = outFeatures
    let w = Tensor(shape: [outFeatures, inFeatures])
    Initialization.kaimingNormal(w, fanIn: inFeatures, using: &rng)
    weight = Parameter(name: "\(name).weight", value: w, prunable: true, decays: true)
    self.bias =
      bias
      ? Parameter(
        name: "\(name).bias", value: Tensor(shape: [outFeatures]), prunable: false, decays: false)
      : nil
  }

  public var description: String { "Linear(\(inFeatures)→\(outFeatures))" }
  public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

  public func outputShape(for inputShape: [Int]) -> [Int] { [inputShape[0], outFeatures] }

  public func forwardFLOPs(inputShape: [Int]) -> Double {
    2 * Double(inFeatures) * Double(outFeatures)
  }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    precondition(x.shape.count == 2 && x.shape[1] == inFeatures, "\(name): input \(x.shape)")
    let n = x.shape[0]
    let y = Tensor.reuse(output, shape: [n, outFeatures])
    output = y
    input = x
    ck_linear_forward(
      Int32(n), Int32(inFeatures), Int32(outFeatures), x.data, weight.value.data, bias?.value.data,
      y.data)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard let x = input else { preconditionFailure("\(name): backward before forward") }
    let n = x.shape[0]
    let dx = Tensor.reuse(gradInput, shape: x.shape)
    gradInput = dx
    ck_linear_backward(
      Int32(n), Int32(inFeatures), Int32(outFeatures), x.data, weight.value.data, dy.data,
      needsInputGradient ? dx.data : nil, weight.grad.data, bias?.grad.data)
    return dx
  }
}
