import CCoppiceKernels

/// A batch norm with ReLU followed by a 2×2, stride-2 max pooling, run as one layer: in
/// training the fused kernels never store the full-size normalised output nor its gradient
/// (`ck_batchnorm_relu_maxpool2_*`), so the pair reads and writes far less memory. The two
/// layers keep their own parameters, buffers and names; evaluation runs them one after the
/// other.
public final class BatchNormReLUMaxPool: StatefulLayer, InputGradientDeferring, ImageSumsTaking,
  StatisticsTaking
{
  public let norm: BatchNorm2d
  public let pool: MaxPool2d
  public var needsInputGradient: Bool {
    get { norm.needsInputGradient }
    set { norm.needsInputGradient = newValue }
  }
  private var input: Tensor?
  private var output: Tensor?
  private var gradInput: Tensor?
  /// Each pooling window's winning cell (the forward's), at a fixed address: a deferred
  /// gradient reads it after `backwardDeferringInputGradient` returns.
  private var winnerBuffer = UnsafeMutableBufferPointer<UInt8>(start: nil, count: 0)
  var winners: [UInt8] { Array(winnerBuffer) }
  /// Whether the last forward ran fused (training) or as the two layers (evaluation).
  private var ranFused = false
  /// A deferred backward's per-channel dx coefficients and the state its planes are made from.
  private var coefficients: Tensor?
  private let deferredState = UnsafeMutablePointer<ck_norm_pool_gradient>.allocate(capacity: 1)
  /// Each image's backward sums, taken by the producer of the output gradient
  /// (`imageSumsObserver`).
  private let backwardSums = ObservedSums<ck_norm_pool_image_sums>(
    observe: ck_norm_pool_image_sums_observer)
  var imageSumsTaken: Bool {
    get { backwardSums.taken }
    set { backwardSums.taken = newValue }
  }
  /// Whether the last backward used sums the producer took (for tests and profiles).
  var usedTakenSums: Bool { backwardSums.used }
  /// The statistics' moments and the pooling, taken by the producer of the input
  /// (`statisticsObserver`): the pooled values go into the output, the cells into the winners.
  private let forwardWindows = ObservedSums<ck_norm_pool_image_windows>(
    observe: ck_norm_pool_image_windows_observer)
  /// The input shape the windows were offered for.
  private var windowsShape: [Int] = []
  /// Whether the last training forward used the pooling its producer took.
  var usedTakenPooling: Bool { forwardWindows.used }

  deinit {
    deferredState.deallocate()
    winnerBuffer.deallocate()
  }

  /// `norm` must have its ReLU fused and `pool` be a 2×2 window with stride 2 and no padding.
  public init(norm: BatchNorm2d, pool: MaxPool2d) {
    precondition(norm.relu, "BatchNormReLUMaxPool: the batch norm must have relu: true")
    precondition(
      pool.kernelSize == 2 && pool.stride == 2 && pool.padding == 0,
      "BatchNormReLUMaxPool: the pooling must be 2×2 with stride 2 and no padding")
    self.norm = norm
    self.pool = pool
  }

  public var description: String { "\(norm.description)+\(pool.description)" }
  public var parameters: [Parameter] { norm.parameters }
  public var buffers: [(name: String, tensor: Tensor)] { norm.buffers }

  public func outputShape(for inputShape: [Int]) -> [Int] { pool.outputShape(for: inputShape) }

  /// Takes the batch norm's statistics' moments and the pooling itself from each image of the
  /// next training forward's input as its producer writes it (`ck_norm_pool_image_windows`):
  /// the window extremes go straight into the output, the cells into the winners, and the
  /// forward then only normalises the pooled values — it never reads the full-size input.
  func statisticsObserver(inputShape shape: [Int]) -> UnsafePointer<ck_image_observer>? {
    guard shape.count == 4, shape[1] == norm.channels else { return nil }
    let y = Tensor.reuse(output, shape: outputShape(for: shape))
    output = y
    reserveWinners(y.count)
    windowsShape = shape
    let w = winnerBuffer
    return forwardWindows.offer(count: 2 * shape[0] * norm.channels) {
      ck_norm_pool_image_windows(
        n: Int32(shape[0]), c: Int32(shape[1]), h: Int32(shape[2]), w: Int32(shape[3]),
        running_mean: norm.runningMean.data, gamma: norm.gamma.value.data, moments: $0,
        pooled: y.data, winner: w.baseAddress)
    }
  }
  var statisticsTaken: Bool {
    get { forwardWindows.taken }
    set { forwardWindows.taken = newValue }
  }

  /// Makes the winner buffer `count` cells long (keeping it when it is).
  private func reserveWinners(_ count: Int) {
    guard winnerBuffer.count != count else { return }
    winnerBuffer.deallocate()
    winnerBuffer = .allocate(capacity: count)
    winnerBuffer.initialize(repeating: 0)
  }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    ranFused = training
    guard training else {
      statisticsTaken = false
      return pool.forward(norm.forward(x, training: false), training: false)
    }
    precondition(
      x.shape.count == 4 && x.shape[1] == norm.channels, "\(norm.name): input \(x.shape)")
    let y = Tensor.reuse(output, shape: outputShape(for: x.shape))
    output = y
    input = x
    reserveWinners(y.count)
    let offered = windowsShape == x.shape
    if let moments = forwardWindows.take(count: 2 * x.shape[0] * norm.channels), offered {
      ck_batchnorm_relu_maxpool2_forward_pooled(
        Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), x.data,
        norm.gamma.value.data, norm.beta.value.data, norm.eps, norm.momentum,
        norm.runningMean.data, norm.runningVar.data, norm.saveMean.data, norm.saveInvStd.data,
        moments, y.data)
      return y
    }
    do {
      let w = winnerBuffer
      ck_batchnorm_relu_maxpool2_forward_train(
        Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), x.data,
        norm.gamma.value.data, norm.beta.value.data, norm.eps, norm.momentum,
        norm.runningMean.data, norm.runningVar.data, norm.saveMean.data, norm.saveInvStd.data,
        y.data, w.baseAddress)
    }
    return y
  }

  public func backward(_ dy: Tensor) -> Tensor {
    imageSumsTaken = false  // the stored backward takes its own sums
    guard ranFused else { return norm.backward(pool.backward(dy)) }
    guard let x = input, let y = output else {
      preconditionFailure("\(norm.name): backward before forward")
    }
    let dx = Tensor.reuse(gradInput, shape: x.shape)
    gradInput = dx
    do {
      let w = winnerBuffer
      ck_batchnorm_relu_maxpool2_backward(
        Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), x.data,
        norm.gamma.value.data, norm.beta.value.data, norm.saveMean.data, norm.saveInvStd.data,
        y.data, w.baseAddress, dy.data, needsInputGradient ? dx.data : nil, norm.gamma.grad.data,
        norm.beta.grad.data)
    }
    return dx
  }

  /// Takes the sums of the backward by image (`ck_norm_pool_image_sums_observer`) from each
  /// image of the output gradient its producer (the convolution after this layer, which reads
  /// this layer's output as its input) gives it; used by `backwardDeferringInputGradient`. nil
  /// after an evaluation forward.
  func imageSumsObserver() -> UnsafePointer<ck_image_observer>? {
    guard ranFused, let x = input, let y = output else { return nil }
    return backwardSums.offer(count: 2 * x.shape[0] * norm.channels) {
      ck_norm_pool_image_sums(
        n: Int32(x.shape[0]), c: Int32(x.shape[1]), h: Int32(x.shape[2]), w: Int32(x.shape[3]),
        y: y.data, beta: norm.beta.value.data, sums: $0)
    }
  }

  /// The sums `imageSumsObserver` took for this backward, or nil (clears `imageSumsTaken`).
  private func takenSums() -> UnsafePointer<Float>? {
    backwardSums.take(count: 2 * (input?.shape.first ?? 0) * norm.channels)
  }

  /// With the forward's β the input gradient is made image by image from the pooled arrays,
  /// so it can be produced plane by plane by the convolution before this layer
  /// (`ck_batchnorm_relu_maxpool2_backward_deferred`): the full-size gradient is never
  /// stored. Nil when the backward runs channel by channel (a γ tiny against its β),
  /// in evaluation mode, or when no input gradient is wanted.
  func backwardDeferringInputGradient(_ dy: Tensor, to consumer: Layer) -> DeferredGradient? {
    let sums = takenSums()
    guard ranFused, needsInputGradient, let x = input, let y = output else { return nil }
    let k = Tensor.reuse(coefficients, shape: [3 * norm.channels])
    coefficients = k
    var source = ck_plane_source()
    let w = winnerBuffer
    let deferred =
      ck_batchnorm_relu_maxpool2_backward_deferred(
        Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]), x.data,
        norm.gamma.value.data, norm.beta.value.data, norm.saveMean.data, norm.saveInvStd.data,
        y.data, w.baseAddress, sums, dy.data, norm.gamma.grad.data, norm.beta.grad.data, k.data,
        deferredState, &source)
    guard deferred != 0 else { return nil }
    return DeferredGradient(source: source, keepingAlive: self, dy)
  }
}
