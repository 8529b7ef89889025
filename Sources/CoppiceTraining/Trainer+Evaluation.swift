import CoppiceEngine
import CoppiceSparsity
import Foundation

extension Trainer {
  /// Test accuracy (percent) and mean loss, in evaluation mode.
  public func evaluate(on data: Dataset) -> Evaluation {
    Trainer.evaluate(model: model, on: data, batchSize: config.evalBatchSize)
  }

  public static func evaluate(model: Model, on data: Dataset, batchSize: Int = 1000) -> Evaluation {
    guard data.count > 0 else { return Evaluation(accuracy: 0, loss: 0) }
    let loss = CrossEntropyLoss()
    var rng = SeededGenerator(seed: 0)
    var correct = 0
    var lossSum = 0.0
    var start = 0
    let x = Tensor(shape: [min(batchSize, data.count)] + data.sampleShape)
    while start < data.count {
      let end = min(data.count, start + batchSize)
      let batch = end - start == x.shape[0] ? x : Tensor(shape: [end - start] + data.sampleShape)
      let labels = data.fill(batch, indices: Array(start..<end)[...], rng: &rng)
      let logits = model.forward(batch, training: false)
      let r = loss(logits, labels: labels)
      correct += r.correct
      lossSum += r.loss * Double(end - start)
      start = end
    }
    return Evaluation(
      accuracy: 100 * Double(correct) / Double(data.count), loss: lossSum / Double(data.count))
  }
}
