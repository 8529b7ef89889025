import CCoppiceKernels

/// A layer's stored output that its readers can also recompute image by image from the layer's
/// input (`ck_image_source`): a first convolution's output, made from the small network input
/// by a few weights per channel, is cheaper to recompute in cache than to read from memory
/// again. The readers (the batch norm after it, the convolution after that) take the source
/// where they read one image at a time and read `tensor` elsewhere; both hold the same values
/// bit for bit. Valid until the producing layer's next forward (its weights and input must not
/// change while it is used). `Sequential` hands it from a `Conv2d` to a
/// `RecomputedInputTaking` layer after it.
final class RecomputedOutput {
  /// The stored output the source recomputes.
  let tensor: Tensor
  let source: UnsafeMutablePointer<ck_image_source>
  /// Keeps alive what the source reads (the producer's input and its weights' sparse form).
  private let owners: [AnyObject]

  init(
    tensor: Tensor, source: UnsafeMutablePointer<ck_image_source>, keepingAlive owners: AnyObject...
  ) {
    self.tensor = tensor
    self.source = source
    self.owners = owners
  }

  deinit { ck_sparse_conv2d_output_source_free(source) }
}

/// A layer that can read its input through a `RecomputedOutput` of the layer before it.
protocol RecomputedInputTaking: Layer {
  /// Set by `Sequential` before each training forward: the input's recomputing source, or nil.
  var recomputedInput: RecomputedOutput? { get set }
}
