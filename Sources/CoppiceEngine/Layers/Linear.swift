import CCoppiceKernels
import CoppiceSparsity

/// Fully-connected layer: y = x·Wᵀ + b, with W of shape [out, in]. Input [N, in].
public final class Linear: Layer {
  public let name: String
  public let inFeatures: Int
  public let outFeatures: Int
  public let weight: Parameter
  public let bias: Parameter?
  public var needsInputGradient = true
  /// The weight's mask, when sparse training manages this layer (nil: always dense).
  public weak var maskSource: MaskSource?
  /// Which kernels the last step used.
  public private(set) var execution = SparseExecutionState()
  private lazy var sparseFormat = SparseWeightFormat(rows: outFeatures, cols: inFeatures)
  // Feature-major copies for the sparse kernels, which want the batch as the contiguous
  // dimension: xᵀ (in × N), yᵀ / dyᵀ (out × N), dxᵀ (in × N).
  private var inputT: Tensor?
  private var outputT: Tensor?
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
    sparseFormat.fresh = false
    execution.forwardSparse = false
    if let source = maskSource, prefersSparse(.forward, batch: n, source) {
      sparseFormat.refresh(weights: weight.value.data, source: source)
      let xt = Tensor.reuse(inputT, shape: [inFeatures, n])
      let yt = Tensor.reuse(outputT, shape: [outFeatures, n])
      inputT = xt
      outputT = yt
      ck_transpose(Int32(n), Int32(inFeatures), x.data, xt.data)
      ck_sparse_spmm(
        sparseFormat.handle, Int32(n), xt.data, Int32(n), bias?.value.data, 0, yt.data, Int32(n))
      ck_transpose(Int32(outFeatures), Int32(n), yt.data, y.data)
      execution.forwardSparse = true
      return y
    }
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
    execution.backwardSparse = false
    if let source = maskSource, !source.needsDenseGradient,
      prefersSparse(.inputGradient, batch: n, source),
      prefersSparse(.weightGradient, batch: n, source)
    {
      sparseBackward(x: x, dy: dy, dx: dx, batch: n, source: source)
      execution.backwardSparse = true
      return dx
    }
    ck_linear_backward(
      Int32(n), Int32(inFeatures), Int32(outFeatures), x.data, weight.value.data, dy.data,
      needsInputGradient ? dx.data : nil, weight.grad.data, bias?.grad.data)
    return dx
  }

  private func sparseBackward(x: Tensor, dy: Tensor, dx: Tensor, batch n: Int, source: MaskSource) {
    sparseFormat.refresh(weights: weight.value.data, source: source)
    // xᵀ is still current when the forward pass was sparse too.
    let xt = Tensor.reuse(inputT, shape: [inFeatures, n])
    if !execution.forwardSparse || xt !== inputT {
      ck_transpose(Int32(n), Int32(inFeatures), x.data, xt.data)
    }
    inputT = xt
    let dyt = Tensor.reuse(outputT, shape: [outFeatures, n])
    outputT = dyt
    ck_transpose(Int32(n), Int32(outFeatures), dy.data, dyt.data)
    let values = sparseFormat.gradientValues()
    ck_sparse_sddmm(sparseFormat.handle, Int32(n), dyt.data, Int32(n), xt.data, Int32(n), 0, values)
    ck_sparse_scatter(sparseFormat.handle, values, weight.grad.data)
    if let b = bias {
      // Row sums of dyᵀ.
      for o in 0..<outFeatures {
        var sum: Float = 0
        let row = dyt.data + o * n
        for j in 0..<n { sum += row[j] }
        b.grad[o] = sum
      }
    }
    if needsInputGradient {
      let dxt = Tensor.reuse(gradInputT, shape: [inFeatures, n])
      gradInputT = dxt
      ck_sparse_spmm_t(sparseFormat.handle, Int32(n), dyt.data, Int32(n), 0, dxt.data, Int32(n))
      ck_transpose(Int32(inFeatures), Int32(n), dxt.data, dx.data)
    }
  }

  private var gradInputT: Tensor?

  private func prefersSparse(_ op: SparseOp, batch: Int, _ source: MaskSource) -> Bool {
    SparseWeightFormat.prefers(
      op.kernelOp, m: outFeatures, k: inFeatures, n: batch, density: source.density)
  }
}
