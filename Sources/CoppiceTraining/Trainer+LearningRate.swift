import CoppiceEngine
import CoppiceSparsity
import Foundation

extension Trainer {
  /// The learning rate at a step: one continuous schedule, or — with
  /// `restartLearningRatePerStep` — restarted at every GaP step (of the schedule's step length)
  /// and again for the fine-tune, each restart with the warm-up when `restartWarmupPerStep`.
  func learningRate(atStep step: Int, totalSteps: Int, batchesPerEpoch: Int) -> Float {
    let warmup = batchesPerEpoch * config.warmupEpochs
    if let sparsity, sparsity.restartLearningRatePerStep, let s = sparsifier {
      let restartWarmup = sparsity.restartWarmupPerStep ? warmup : 0
      if let length = s.schedule.gapStepLength ?? sparsity.gapStepLength, !s.masksFrozen {
        return config.schedule.rate(
          base: config.learningRate, step: step % length, totalSteps: length,
          warmupSteps: restartWarmup)
      }
      if s.schedule.lastMaskChangeStep > 0, s.masksFrozen {
        let begin = s.schedule.lastMaskChangeStep
        return config.schedule.rate(
          base: config.learningRate, step: step - begin, totalSteps: max(1, totalSteps - begin),
          warmupSteps: restartWarmup)
      }
    }
    return config.schedule.rate(
      base: config.learningRate, step: step, totalSteps: totalSteps, warmupSteps: warmup)
  }
}
