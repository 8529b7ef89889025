import CCoppiceKernels

/// Batch normalisation per channel of NCHW input (or per feature of [N, C] input).
/// Training uses batch statistics and updates running ones; evaluation uses running ones.
/// With `relu` the layer is a fused BN+ReLU (one pass over the data instead of two).
public final class BatchNorm2d: StatefulLayer, OutputDeferring, InputGradientDeferring,
  ImageSumsTaking, StatisticsTaking
{
  public let name: String
  public let channels: Int
  public let eps: Float
  public let momentum: Float
  public let relu: Bool
  public let gamma: Parameter
  public let beta: Parameter
  public let runningMean: Tensor
  public let runningVar: Tensor
  public var needsInputGradient = true
  let saveMean: Tensor
  let saveInvStd: Tensor
  private var input: Tensor?
  private var output: Tensor?
  private var gradInput: Tensor?
  /// The last deferred forward's map y = x·scale + shift, per channel.
  private lazy var mapScale = Tensor(shape: [channels])
  private lazy var mapShift = Tensor(shape: [channels])
  /// A deferred backward's per-channel dx coefficients and the state its planes are made from.
  private lazy var coefficients = Tensor(shape: [5 * channels])
  private let deferredState = UnsafeMutablePointer<ck_batchnorm_gradient>.allocate(capacity: 1)
  /// The backward's per-plane sums taken by the producer of the output gradient
  /// (`imageSumsObserver`), and the statistics' taken by the producer of the input
  /// (`statisticsObserver`).
  private let backwardSums = ObservedSums<ck_batchnorm_image_sums>(
    observe: ck_batchnorm_image_sums_observer)
  private let statisticsSums = ObservedSums<ck_batchnorm_image_moments>(
    observe: ck_batchnorm_image_moments_observer)
  var imageSumsTaken: Bool {
    get { backwardSums.taken }
    set { backwardSums.taken = newValue }
  }
  var statisticsTaken: Bool {
    get { statisticsSums.taken }
    set { statisticsSums.taken = newValue }
  }
  /// Whether the last backward, and the last training forward, used sums a neighbour took.
  var usedTakenSums: Bool { backwardSums.used }
  var usedTakenStatistics: Bool { statisticsSums.used }

  deinit { deferredState.deallocate() }

  public init(
    name: String, channels: Int, eps: Float = 1e-5, momentum: Float = 0.1, relu: Bool = false
  ) {
    self.name = name
    self.relu = relu
    self.channels = channels
    self.eps = eps
    self.momentum = momentum
    let g = Tensor(shape: [channels])
    g.fill(1)
    gamma = Parameter(name: "\(name).weight", value: g, prunable: false, decays: false)
    beta = Parameter(
      name: "\(name).bias", value: Tensor(shape: [channels]), prunable: false, decays: false)
    runningMean = Tensor(shape: [channels])
    runningVar = Tensor(shape: [channels])
    runningVar.fill(1)
    saveMean = Tensor(shape: [channels])
    saveInvStd = Tensor(shape: [channels])
  }

  public var description: String {
    relu ? "BatchNorm2d+ReLU(\(channels))" : "BatchNorm2d(\(channels))"
  }
  public var parameters: [Parameter] { [gamma, beta] }
  public var buffers: [(name: String, tensor: Tensor)] {
    [("\(name).running_mean", runningMean), ("\(name).running_var", runningVar)]
  }

  public func outputShape(for inputShape: [Int]) -> [Int] { inputShape }

  private func planeSize(_ shape: [Int]) -> Int { shape.dropFirst(2).reduce(1, *) }

  /// An observer for the layer that produces the next training forward's input (the
  /// convolution before this batch norm): given each finished image of it, it takes the
  /// image's statistics sums (`ck_batchnorm_image_moments_observer`), and the forward skips
  /// its own pass over the input for them. Set `statisticsTaken` when every image was given.
  func statisticsObserver(inputShape shape: [Int]) -> UnsafePointer<ck_image_observer>? {
    guard shape.count == 4, shape[1] == channels else { return nil }
    return statisticsSums.offer(count: 2 * shape[0] * channels) {
      ck_batchnorm_image_moments(
        n: Int32(shape[0]), c: Int32(channels), hw: Int32(shape[2] * shape[3]),
        running_mean: runningMean.data, moments: $0)
    }
  }

  /// The sums `statisticsObserver` took for this forward of x, or nil (clears
  /// `statisticsTaken`).
  func takenMoments(for x: Tensor) -> UnsafePointer<Float>? {
    statisticsSums.take(count: 2 * (x.shape.first ?? 0) * channels)
  }

  public func forward(_ x: Tensor, training: Bool) -> Tensor {
    precondition(x.shape.count >= 2 && x.shape[1] == channels, "\(name): input \(x.shape)")
    let y = Tensor.reuse(output, shape: x.shape)
    output = y
    input = x
    let n = Int32(x.shape[0])
    let hw = Int32(planeSize(x.shape))
    if training {
      ck_batchnorm_forward_train(
        n, Int32(channels), hw, x.data, gamma.value.data, beta.value.data, eps, momentum,
        runningMean.data, runningVar.data, saveMean.data, saveInvStd.data, takenMoments(for: x),
        y.data, relu ? 1 : 0)
    } else {
      statisticsTaken = false
      ck_batchnorm_forward_eval(
        n, Int32(channels), hw, x.data, gamma.value.data, beta.value.data, eps, runningMean.data,
        runningVar.data, y.data, relu ? 1 : 0)
    }
    return y
  }

  /// The training forward without writing the output: the batch and running statistics, and
  /// the map from the input to the output for the next layer to apply as it reads the input
  /// (`ck_batchnorm_statistics_train`). The backward needs only the input, so it is unchanged.
  func forwardDeferringOutput(_ x: Tensor) -> DeferredActivation {
    precondition(x.shape.count >= 2 && x.shape[1] == channels, "\(name): input \(x.shape)")
    input = x
    ck_batchnorm_statistics_train(
      Int32(x.shape[0]), Int32(channels), Int32(planeSize(x.shape)), x.data, takenMoments(for: x),
      gamma.value.data,
      beta.value.data, eps, momentum, runningMean.data, runningVar.data, saveMean.data,
      saveInvStd.data, mapScale.data, mapShift.data)
    return DeferredActivation(input: x, scale: mapScale, shift: mapShift, relu: relu)
  }

  /// An observer for the layer that produces the next backward's output gradient (the
  /// convolution after this batch norm): given each finished image of it, it takes that image's
  /// sums for the backward (`ck_batchnorm_image_sums_observer`), which then skips its own pass
  /// over x and dy. Set `imageSumsTaken` when the producer gave it every image. nil when the
  /// last forward was not a training forward of NCHW input.
  func imageSumsObserver() -> UnsafePointer<ck_image_observer>? {
    guard let x = input, x.shape.count == 4, x.shape[1] == channels else { return nil }
    return backwardSums.offer(count: 2 * x.shape[0] * channels) {
      ck_batchnorm_image_sums(
        n: Int32(x.shape[0]), c: Int32(channels), hw: Int32(planeSize(x.shape)), x: x.data,
        gamma: gamma.value.data, beta: relu ? UnsafePointer(beta.value.data) : nil,
        save_mean: saveMean.data, save_invstd: saveInvStd.data, sums: $0)
    }
  }

  /// The sums `imageSumsObserver` took for this backward, or nil (clears `imageSumsTaken`).
  private func takenSums() -> UnsafePointer<Float>? {
    backwardSums.take(count: 2 * (input?.shape.first ?? 0) * channels)
  }

  public func backward(_ dy: Tensor) -> Tensor {
    guard let x = input else { preconditionFailure("\(name): backward before forward") }
    let dx = Tensor.reuse(gradInput, shape: x.shape)
    gradInput = dx
    let n = Int32(x.shape[0])
    let hw = Int32(planeSize(x.shape))
    let dxData = needsInputGradient ? dx.data : nil
    imageSumsTaken = false  // the stored backward takes its own sums
    if relu {
      // The ReLU's mask recomputed from x (γ and β are still the forward's: the optimizer
      // steps after the backward), so the output is not read again.
      ck_batchnorm_relu_backward(
        n, Int32(channels), hw, x.data, gamma.value.data, beta.value.data, saveMean.data,
        saveInvStd.data, dy.data, dxData, gamma.grad.data, beta.grad.data)
    } else {
      ck_batchnorm_backward(
        n, Int32(channels), hw, x.data, gamma.value.data, saveMean.data, saveInvStd.data,
        dy.data, nil, dxData, gamma.grad.data, beta.grad.data)
    }
    return dx
  }

  /// The input gradient left to the layer before this one, its planes produced as it reads
  /// them (`ck_batchnorm_backward_deferred`): when that layer computes no input gradient of its
  /// own (a model's first convolution, which needs dx only for its weight gradient and only in
  /// the planes of output channels that keep a weight), or when the producer of dy took the
  /// batch sums (`imageSumsTaken`) — then nothing is read here, and the planes are made from x
  /// and dy as the layer reads them instead of being written and read back (ResNet-20's block
  /// convolutions). Otherwise the stored gradient costs a layer that reads every plane no more
  /// than the two reads of each plane: nil then, as for a 2-D input.
  func backwardDeferringInputGradient(_ dy: Tensor, to consumer: Layer) -> DeferredGradient? {
    guard let x = input, x.shape.count == 4, needsInputGradient,
      !consumer.needsInputGradient || imageSumsTaken
    else { return nil }
    var source = ck_plane_source()
    let deferred = ck_batchnorm_backward_deferred(
      Int32(x.shape[0]), Int32(channels), Int32(x.shape[2]), Int32(x.shape[3]), x.data,
      gamma.value.data, relu ? beta.value.data : nil, saveMean.data, saveInvStd.data,
      takenSums(), dy.data, gamma.grad.data, beta.grad.data, coefficients.data, deferredState,
      &source)
    guard deferred != 0 else { return nil }
    return DeferredGradient(source: source, keepingAlive: self, dy)
  }
}
