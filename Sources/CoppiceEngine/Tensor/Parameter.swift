/// A trainable tensor with its gradient. `prunable` marks weights that sparse-training
/// methods may mask (convolution and linear weights; not biases or normalisation).
public final class Parameter {
  public let name: String
  public let value: Tensor
  public let grad: Tensor
  public let prunable: Bool
  /// Whether weight decay applies (off for biases and normalisation parameters).
  public let decays: Bool

  public init(name: String, value: Tensor, prunable: Bool, decays: Bool) {
    self.name = name
    self.value = value
    self.grad = Tensor(shape: value.shape)
    self.prunable = prunable
    self.decays = decays
  }

  public var shape: [Int] { value.shape }
  public var count: Int { value.count }
}
