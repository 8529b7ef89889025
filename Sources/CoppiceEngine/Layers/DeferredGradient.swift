import CCoppiceKernels

/// An input gradient that a layer did not write but describes plane by plane
/// (`ck_plane_source`), for the layer before it to produce while its backward reads it: the
/// full-size gradient is then never written to memory and read back. `Sequential` hands one
/// over when an `InputGradientDeferring` layer follows a `DeferredGradientConsumer`.
public final class DeferredGradient {
  /// Batch × channels × height × width.
  public let shape: [Int]
  let source: ck_plane_source
  /// Keeps alive whatever the source reads (the producing layer's arrays and the gradient it
  /// was given).
  private let owners: [AnyObject]

  init(source: ck_plane_source, keepingAlive owners: AnyObject...) {
    self.source = source
    self.owners = owners
    shape = [Int(source.n), Int(source.c), Int(source.h), Int(source.w)]
  }

  /// Runs `body` with a pointer to the source (valid only inside it).
  func withSource<R>(_ body: (UnsafePointer<ck_plane_source>) -> R) -> R {
    withUnsafePointer(to: source) { body($0) }
  }

  /// Writes the gradient in full into `t` (of `shape`).
  public func fill(_ t: Tensor) {
    precondition(t.shape == shape, "DeferredGradient: fill \(t.shape), expected \(shape)")
    withSource { ck_plane_source_fill($0, ck_get_threads(), t.data) }
  }
}

/// A layer whose backward can leave its input gradient to the layer before it.
protocol InputGradientDeferring: Layer {
  /// The parameter gradients as `backward(_:)` writes them, and the input gradient as a
  /// source instead of a tensor, for `consumer` (the layer before); nil when it is not
  /// deferred (nothing written: call `backward(_:)`).
  func backwardDeferringInputGradient(_ gradOutput: Tensor, to consumer: Layer)
    -> DeferredGradient?
}

/// A layer whose backward can read its output gradient from a `DeferredGradient`.
protocol DeferredGradientConsumer: Layer {
  /// `backward(_:)` for the gradient `gradOutput` describes (and `addend` added to the input
  /// gradient, as `InputGradientAccumulating`).
  func backward(_ gradOutput: DeferredGradient, addingToInputGradient addend: Tensor?) -> Tensor
}

/// A layer whose backward takes sums over its output gradient (a batch norm's Σg and Σg·x̂):
/// the layer that produces that gradient (the convolution after it) can take them image by
/// image while each image is in cache, through `imageSumsObserver`, so the backward needs no
/// pass of its own for them.
protocol ImageSumsTaking: Layer {
  /// An observer to give every finished image of the next backward's output gradient, or nil
  /// when the last forward was not a training forward it can take sums for.
  func imageSumsObserver() -> UnsafePointer<ck_image_observer>?
  /// Set by the producer when it gave the observer every image (cleared by the backward).
  var imageSumsTaken: Bool { get set }
}

/// A layer whose backward can give each finished image (row) of its input gradient to an
/// observer (the layer before takes sums there: `ImageSumsTaking`).
protocol InputGradientObservable: Layer {
  /// Given each finished image of the next backward's input gradient, when set.
  var inputGradientObserver: UnsafePointer<ck_image_observer>? { get set }
  /// Whether the last backward gave it every image.
  var observedInputGradient: Bool { get }
}

/// A layer whose backward can add a tensor to its input gradient as it writes it (a residual
/// block's shortcut gradient added by the body's first convolution while each image's input
/// gradient is in cache, instead of in a separate pass over both).
protocol InputGradientAccumulating: Layer {
  /// `backward(_:)` with `addend` (of the input's shape) added to the input gradient, when
  /// `needsInputGradient` (else the same as `backward(_:)`).
  func backward(_ gradOutput: Tensor, addingToInputGradient addend: Tensor?) -> Tensor
}
