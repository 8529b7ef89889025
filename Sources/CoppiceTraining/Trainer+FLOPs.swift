import CoppiceEngine
import CoppiceSparsity
import Foundation

/// FLOP accounting: conv/linear FLOPs of each step at the densities in force.
extension Trainer {
  /// Adds this step's conv/linear FLOPs at the current densities to the epoch's counters.
  func countFLOPs(batch: Int) {
    let denseGradients = sparsifier?.needsDenseGradients ?? false
    var actual = 0.0
    var dense = 0.0
    for layer in layerFLOPs {
      let d = layer.target?.density ?? 1
      let passes = layer.inputGradient ? 2.0 : 1.0
      actual += layer.flops * (d * passes + (denseGradients ? 1 : d))
      dense += layer.flops * (passes + 1)
    }
    epochFLOPs.actual += actual * Double(batch)
    epochFLOPs.dense += dense * Double(batch)
  }
}
