import CCoppiceKernels

/// A layer's output that was not written: its input and the per-channel affine map (+ ReLU)
/// that makes the output from it (`ck_channel_affine`), for the next layer to apply as it reads
/// the input. A batch norm's output in training is such a map of its input; a sparse
/// convolution after it applies the map while padding each image, so the normalised tensor is
/// never written to memory and read back. `Sequential` hands one over when an
/// `OutputDeferring` layer precedes a `DeferredActivationConsumer`.
public final class DeferredActivation {
  /// The tensor the map applies to (the deferring layer's input), NCHW.
  public let input: Tensor
  let scale: Tensor
  let shift: Tensor
  let relu: Bool

  init(input: Tensor, scale: Tensor, shift: Tensor, relu: Bool) {
    self.input = input
    self.scale = scale
    self.shift = shift
    self.relu = relu
  }

  /// Runs `body` with a pointer to the map (valid only inside it).
  func withMap<R>(_ body: (UnsafePointer<ck_channel_affine>) -> R) -> R {
    var map = ck_channel_affine(scale: scale.data, shift: shift.data, relu: relu ? 1 : 0)
    return withUnsafePointer(to: &map) { body($0) }
  }

  /// Writes the output in full into `t` (of the input's shape), bit for bit the deferring
  /// layer's own output.
  public func fill(_ t: Tensor) {
    precondition(
      t.shape == input.shape, "DeferredActivation: fill \(t.shape), expected \(input.shape)")
    let hw = input.shape.dropFirst(2).reduce(1, *)
    withMap {
      ck_channel_affine_apply(
        Int32(input.shape[0]), Int32(input.shape[1]), Int32(hw), input.data, $0,
        ck_get_threads(), t.data)
    }
  }
}

/// A layer whose training forward takes sums over its input (a batch norm's statistics): the
/// layer that produces that input (the convolution before it) can take them image by image
/// while each image is in cache, through `statisticsObserver`, so the forward needs no pass of
/// its own for them.
protocol StatisticsTaking: Layer {
  /// An observer to give every finished image of the next training forward's input (of
  /// `shape`), or nil when this layer cannot take its statistics from it.
  func statisticsObserver(inputShape shape: [Int]) -> UnsafePointer<ck_image_observer>?
  /// Set by the producer when it gave the observer every image (cleared by the forward).
  var statisticsTaken: Bool { get set }
}

/// A layer whose training forward can leave its output to the layer after it.
protocol OutputDeferring: Layer {
  /// In training: everything `forward(_:training:)` records for the backward, and the output
  /// as a `DeferredActivation` instead of a tensor.
  func forwardDeferringOutput(_ input: Tensor) -> DeferredActivation
}

/// A layer whose training forward can read its input from a `DeferredActivation`.
protocol DeferredActivationConsumer: Layer {
  /// `forward(_:training: true)` of the tensor `input` describes.
  func forward(_ input: DeferredActivation) -> Tensor
}
