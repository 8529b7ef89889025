import CoppiceEngine
import CoppiceSparsity
import Foundation

extension Trainer {
  /// The learning rate at a step: one continuous schedule, or — with
  /// `restartLearningRatePerStep` — restarted at every GaP step and again for the fine-tune.
  func learningRate(atStep step: Int, totalSteps: Int, batchesPerEpoch: Int) -> Float {
    let warmup = batchesPerEpoch * config.warmupEpochs
    if let sparsity, sparsity.restartLearningRatePerStep,
      let length = sparsity.gapStepLength, let s = sparsifier, !s.masksFrozen
    {
      return config.schedule.rate(
        base: config.learningRate, step: step % length, totalSteps: length)
    }
    if let sparsity, sparsity.restartLearningRatePerStep, let s = sparsifier,
      s.schedule.lastMaskChangeStep > 0, s.masksFrozen
    {
      let begin = s.schedule.lastMaskChangeStep
      return config.schedule.rate(
        base: config.learningRate, step: step - begin, totalSteps: max(1, totalSteps - begin))
    }
    return config.schedule.rate(
      base: config.learningRate, step: step, totalSteps: totalSteps, warmupSteps: warmup)
  }
}
