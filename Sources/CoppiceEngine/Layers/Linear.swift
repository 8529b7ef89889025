import CCoppiceKernels
import CoppiceSparsity

/// Fully-connected layer: y = x·Wᵀ + b, with W of shape [out, in]. Input [N, in].
public final class Linear: Layer, InputGradientObservable {
  public let name: String
  public let inFeatures: Int
  public let outFeatures: Int
  public let weight: Parameter
  public let bias: Parameter?
  public var needsInputGradient = true
  /// The weight's mask, when sparse training manages this layer (nil: always dense).
  public weak var maskSource: MaskSource?
  /// Which kernels the last step used.
  public var execution: SparseExecutionState { products.execution }
  private let products: LinearProducts
  private var input: Tensor?
  private var output: Tensor?
  private var gradInput: Tensor?
  /// Given each finished row of the next backward's input gradient, when set (`Sequential`).
  var inputGradientObserver: UnsafePointer<ck_image_observer>?
  var observedInputGradient: Bool { products.observedInputGradient }

  public init(
    name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true,
    rng: inout SeededGenerator
  ) {
    self.name = name
    self.inFeatures = inFeatures
    self.outFeatures = outFeatures
    products = LinearProducts(inFeatures: inFeatures, outFeatures: outFeatures)
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
    let y = Tensor.reuse(output, shape: [x.shape[0], outFeatures])
    output = y
    input = x
    products.forward(
      x: x.data, batch: x.shape[0], weights: weight.value.data, bias: bias?.value.data,
      mask: maskSource, y: y.data)
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard let x = input else { preconditionFailure("\(name): backward before forward") }
    let dx = Tensor.reuse(gradInput, shape: x.shape)
    gradInput = dx
    products.backward(
      x: x.data, dy: dy.data, batch: x.shape[0], weights: weight.value.data, mask: maskSource,
      dx: needsInputGradient ? dx.data : nil, dw: weight.grad.data, db: bias?.grad.data,
      dxObserver: inputGradientObserver)
    products.execution.reportMaskedGradient(to: maskSource)
    return dx
  }
}
