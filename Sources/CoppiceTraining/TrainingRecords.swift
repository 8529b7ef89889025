import Foundation

/// Progress of a running epoch, reported after every batch.
public struct BatchProgress: Sendable {
  public let epoch: Int
  public let epochs: Int
  public let batch: Int
  public let batches: Int
  /// Mean training loss over the epoch so far.
  public let loss: Double
  public let imagesPerSecond: Double
  /// Estimated seconds left in the whole run.
  public let etaSeconds: Double
  public let learningRate: Float
  /// What the sparse-training schedule is doing ("" when dense).
  public var phase: String = ""
}

/// What one epoch produced.
public struct EpochRecord: Codable, Sendable {
  public let epoch: Int
  public let loss: Double
  public let trainAccuracy: Double
  public let testAccuracy: Double
  public let testLoss: Double
  public let seconds: Double
  public let imagesPerSecond: Double
  public let learningRate: Float
  /// Global sparsity of the prunable weights at the end of the epoch (0 when dense).
  public var sparsity: Double = 0
  /// Conv/linear FLOPs this epoch actually needed (forward, input and weight gradients at the
  /// densities in force at each step) and what dense training would need.
  public var trainFLOPs: Double = 0
  public var trainFLOPsDense: Double = 0
  /// Inference FLOPs per image at the end of the epoch, actual and dense.
  public var inferenceFLOPs: Double = 0
  public var inferenceFLOPsDense: Double = 0
  /// What the sparse-training schedule was doing (e.g. "C-GaP round 1/2, partition 3 dense").
  public var phase: String = ""

  enum CodingKeys: String, CodingKey {
    case epoch, loss, seconds, sparsity, phase
    case trainFLOPs = "train_flops"
    case trainFLOPsDense = "train_flops_dense"
    case inferenceFLOPs = "inference_flops"
    case inferenceFLOPsDense = "inference_flops_dense"
    case trainAccuracy = "train_accuracy"
    case testAccuracy = "test_accuracy"
    case testLoss = "test_loss"
    case imagesPerSecond = "images_per_second"
    case learningRate = "learning_rate"
  }
}

/// Accuracy (percent) and mean loss of a model on a dataset.
public struct Evaluation: Sendable {
  public let accuracy: Double
  public let loss: Double
}
