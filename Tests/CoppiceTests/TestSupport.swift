import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

/// Random tensor with values in [-1, 1).
func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
  var rng = SeededGenerator(seed: seed)
  let t = Tensor(shape: shape)
  for i in 0..<t.count { t[i] = rng.nextUniform() * 2 - 1 }
  return t
}

/// Checks a layer's backward against central finite differences of L = Σ y·r (r random),
/// for its input (when it propagates one) and every parameter, at up to `samples` coordinates.
func checkGradients(
  _ layer: Layer, inputShape: [Int], seed: UInt64 = 1, samples: Int = 40, eps: Float = 1e-2,
  tolerance: Double = 2e-2, file: StaticString = #filePath, line: UInt = #line
) {
  let x = randomTensor(inputShape, seed: seed)
  let outShape = layer.outputShape(for: inputShape)
  let r = randomTensor(outShape, seed: seed + 100)

  func lossValue() -> Double {
    let y = layer.forward(x, training: true)
    XCTAssertEqual(y.shape, outShape, file: file, line: line)
    var s = 0.0
    for i in 0..<y.count { s += Double(y[i]) * Double(r[i]) }
    return s
  }

  _ = lossValue()
  let dx = layer.backward(r).clone()
  let analyticParams = layer.parameters.map { $0.grad.clone() }

  func compare(_ target: Tensor, analytic: Tensor, what: String) {
    var rng = SeededGenerator(seed: seed + 7)
    let indices =
      target.count <= samples
      ? Array(0..<target.count) : (0..<samples).map { _ in Int(rng.next() % UInt64(target.count)) }
    for i in indices {
      let saved = target[i]
      target[i] = saved + eps
      let plus = lossValue()
      target[i] = saved - eps
      let minus = lossValue()
      target[i] = saved
      let numeric = (plus - minus) / Double(2 * eps)
      let a = Double(analytic[i])
      let error = abs(numeric - a) / max(1, abs(numeric), abs(a))
      XCTAssertLessThan(
        error, tolerance, "\(layer.description) d\(what)[\(i)]: numeric \(numeric) analytic \(a)",
        file: file, line: line)
    }
  }

  if layer.needsInputGradient { compare(x, analytic: dx, what: "input") }
  for (p, g) in zip(layer.parameters, analyticParams) {
    compare(p.value, analytic: g, what: p.name)
  }
}
