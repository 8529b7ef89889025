import Foundation

/// Wall time spent in each layer of a `Sequential`, accumulated while attached to it
/// (`Sequential.times`); for profiling only — a model without it attached is not slowed.
public final class LayerTimes {
  /// Seconds in `forward` / `backward`, per layer index of the `Sequential`.
  public private(set) var forward: [Double]
  public private(set) var backward: [Double]
  /// Forward and backward calls timed (steps profiled).
  public private(set) var forwardCalls = 0
  public private(set) var backwardCalls = 0

  public init(layerCount: Int) {
    forward = [Double](repeating: 0, count: layerCount)
    backward = forward
  }

  /// Zeroes every total (e.g. after warm-up steps).
  public func reset() {
    for i in forward.indices {
      forward[i] = 0
      backward[i] = 0
    }
    forwardCalls = 0
    backwardCalls = 0
  }

  func addForward(_ seconds: [Double]) {
    for (i, s) in seconds.enumerated() { forward[i] += s }
    forwardCalls += 1
  }

  func addBackward(_ seconds: [Double]) {
    for (i, s) in seconds.enumerated() { backward[i] += s }
    backwardCalls += 1
  }
}

/// Seconds since an arbitrary start, monotonic (for timing).
@inline(__always) public func monotonicSeconds() -> Double {
  Double(DispatchTime.now().uptimeNanoseconds) * 1e-9
}
