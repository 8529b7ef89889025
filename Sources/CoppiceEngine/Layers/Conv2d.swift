import CCoppiceKernels
import CoppiceSparsity

/// 2-D convolution over NCHW input with an OIHW weight (im2col + OpenBLAS per image).
public final class Conv2d: Layer, DeferredGradientConsumer, DeferredActivationConsumer,
  InputGradientAccumulating, InputGradientObservable
{
  public let name: String
  public let inChannels: Int
  public let outChannels: Int
  public let kernelSize: Int
  public let stride: Int
  public let padding: Int
  public let weight: Parameter
  public let bias: Parameter?
  public var needsInputGradient = true
  /// The weight's mask, when sparse training manages this layer (nil: always dense).
  public weak var maskSource: MaskSource?
  /// Which kernels the last step used.
  public var execution: SparseExecutionState { products.execution }
  private let products: Conv2dProducts
  private var input: Tensor?
  /// The map the last forward applied to `input` as it read it (a deferred batch norm), if any.
  private var inputMap: DeferredActivation?
  /// A deferred input written in full (for the dense kernels).
  private var mappedInput: Tensor?
  private var output: Tensor?
  private var gradInput: Tensor?
  /// Given each finished image of the next backward's input gradient, when set (the batch norm
  /// before takes its sums there; `Sequential`). `observedInputGradient`: whether it was.
  var inputGradientObserver: UnsafePointer<ck_image_observer>?
  var observedInputGradient: Bool { products.observedInputGradient }
  /// Given each finished image of the next forward's output, when set (the batch norm after
  /// takes its statistics' sums there; `Sequential`). `observedOutput`: whether it was.
  var outputObserver: UnsafePointer<ck_image_observer>?
  var observedOutput: Bool { products.observedOutput }

  public init(
    name: String, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
    padding: Int = 0, bias: Bool = true, rng: inout SeededGenerator
  ) {
    self.name = name
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.kernelSize = kernelSize
    self.stride = stride
    self.padding = padding
    products = Conv2dProducts(
      inChannels: inChannels, outChannels: outChannels, kernelHeight: kernelSize,
      kernelWidth: kernelSize)
    let w = Tensor(shape: [outChannels, inChannels, kernelSize, kernelSize])
    Initialization.kaimingNormal(w, fanIn: inChannels * kernelSize * kernelSize, using: &rng)
    weight = Parameter(name: "\(name).weight", value: w, prunable: true, decays: true)
    self.bias =
      bias
      ? Parameter(
        name: "\(name).bias", value: Tensor(shape: [outChannels]), prunable: false, decays: false)
      : nil
  }

  public var description: String {
    "Conv2d(\(inChannels)→\(outChannels), \(kernelSize)×\(kernelSize), stride \(stride), pad \(padding))"
  }
  public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

  func convShape(batch: Int, height: Int, width: Int) -> ck_conv_shape {
    var s = ck_conv_shape(
      batch: Int32(batch), in_channels: Int32(inChannels), in_height: Int32(height),
      in_width: Int32(width), out_channels: Int32(outChannels), kernel_h: Int32(kernelSize),
      kernel_w: Int32(kernelSize), stride: Int32(stride), padding: Int32(padding),
      out_height: 0, out_width: 0)
    precondition(ck_conv_shape_finish(&s) == 0, "\(name): invalid input \(height)×\(width)")
    return s
  }

  public func outputShape(for inputShape: [Int]) -> [Int] {
    let s = convShape(batch: inputShape[0], height: inputShape[2], width: inputShape[3])
    return [inputShape[0], outChannels, Int(s.out_height), Int(s.out_width)]
  }

  public func forwardFLOPs(inputShape: [Int]) -> Double {
    let out = outputShape(for: [1] + inputShape)
    return 2 * Double(out[2] * out[3] * outChannels) * Double(inChannels * kernelSize * kernelSize)
  }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    forward(x, map: nil)
  }

  /// The training forward of a deferred input: the sparse kernels apply its map as they read
  /// it (forward and weight gradient) when both products run sparse; otherwise it is written
  /// in full first and kept for the backward, as a stored input would be.
  func forward(_ x: DeferredActivation) -> Tensor {
    let input = x.input
    precondition(input.shape.count == 4, "\(name): input \(input.shape)")
    let s = convShape(batch: input.shape[0], height: input.shape[2], width: input.shape[3])
    if products.runsSparse(shape: s, mask: maskSource) {
      return forward(input, map: x)
    }
    let full = Tensor.reuse(mappedInput, shape: input.shape)
    mappedInput = full
    x.fill(full)
    return forward(full, map: nil)
  }

  private func forward(_ x: Tensor, map: DeferredActivation?) -> Tensor {
    precondition(x.shape.count == 4 && x.shape[1] == inChannels, "\(name): input \(x.shape)")
    let s = convShape(batch: x.shape[0], height: x.shape[2], width: x.shape[3])
    let y = Tensor.reuse(
      output, shape: [x.shape[0], outChannels, Int(s.out_height), Int(s.out_width)])
    output = y
    input = x
    inputMap = map
    func run(_ xMap: UnsafePointer<ck_channel_affine>?) {
      products.forward(
        shape: s, x: x.data, xMap: xMap, weights: weight.value.data, bias: bias?.value.data,
        mask: maskSource, y: y.data, yObserver: outputObserver)
    }
    if let map { map.withMap { run($0) } } else { run(nil) }
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    backward(.stored(dy.data), adding: nil)
  }

  func backward(_ dy: Tensor, addingToInputGradient addend: Tensor?) -> Tensor {
    backward(.stored(dy.data), adding: addend)
  }

  /// The backward with dY produced plane by plane as the sparse kernels read it (stored first
  /// on the dense path).
  func backward(_ dy: DeferredGradient, addingToInputGradient addend: Tensor?) -> Tensor {
    dy.withSource { backward(.produced($0), adding: addend) }
  }

  private func backward(_ dy: Conv2dProducts.OutputGradient, adding addend: Tensor?) -> Tensor {
    guard let x = input else { preconditionFailure("\(name): backward before forward") }
    let s = convShape(batch: x.shape[0], height: x.shape[2], width: x.shape[3])
    let dx = Tensor.reuse(gradInput, shape: x.shape)
    gradInput = dx
    if let addend {
      precondition(addend.shape == x.shape, "\(name): input-gradient addend \(addend.shape)")
    }
    func run(_ xMap: UnsafePointer<ck_channel_affine>?) {
      products.backward(
        shape: s, x: x.data, xMap: xMap, dy: dy, weights: weight.value.data, mask: maskSource,
        dx: needsInputGradient ? dx.data : nil, dxAdd: addend.map { UnsafePointer($0.data) },
        dxObserver: inputGradientObserver, dw: weight.grad.data, db: bias?.grad.data)
    }
    if let inputMap { inputMap.withMap { run($0) } } else { run(nil) }
    products.execution.reportMaskedGradient(to: maskSource)
    return dx
  }
}
