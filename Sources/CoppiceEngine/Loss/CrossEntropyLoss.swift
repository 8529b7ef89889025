import CCoppiceKernels

/// Softmax cross-entropy over logits [N, classes] with optional label smoothing ε
/// (target = (1 − ε)·one-hot + ε/classes). Returns the mean loss; `backward` gives dlogits.
public final class CrossEntropyLoss {
  public let labelSmoothing: Float
  private var gradient: Tensor?

  public init(labelSmoothing: Float = 0) {
    precondition(labelSmoothing >= 0 && labelSmoothing < 1, "label smoothing must be in [0, 1)")
    self.labelSmoothing = labelSmoothing
  }

  /// Loss, number of correct predictions, and the gradient with respect to the logits.
  public func callAsFunction(_ logits: Tensor, labels: [Int32]) -> (
    loss: Double, correct: Int, gradient: Tensor
  ) {
    precondition(logits.shape.count == 2 && logits.shape[0] == labels.count, "logits/labels")
    let g = Tensor.reuse(gradient, shape: logits.shape)
    gradient = g
    var correct: Int32 = 0
    let loss = labels.withUnsafeBufferPointer { lab in
      ck_softmax_cross_entropy(
        Int32(logits.shape[0]), Int32(logits.shape[1]), logits.data, lab.baseAddress,
        labelSmoothing, g.data, &correct)
    }
    return (loss, Int(correct), g)
  }
}
