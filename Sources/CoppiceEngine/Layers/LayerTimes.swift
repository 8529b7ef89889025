import Foundation

/// Wall time spent in each layer of a `Sequential`, accumulated while attached to it
/// (`Sequential.times`); for profiling only — a model without it attached is not slowed.
public final class LayerTimes {
  /// Seconds in `forward` / `backward`, per layer index of the `Sequential`.
  public private(set) var forward: [Double]
  public private(set) var backward: [Double]

  public init(layerCount: Int) {
    forward = [Double](repeating: 0, count: layerCount)
    backward = forward
  }

  func addForward(_ seconds: [Double]) {
    for (i, s) in seconds.enumerated() { forward[i] += s }
  }

  func addBackward(_ seconds: [Double]) {
    for (i, s) in seconds.enumerated() { backward[i] += s }
  }
}

/// Seconds since an arbitrary start, monotonic (for timing).
@inline(__always) public func monotonicSeconds() -> Double {
  Double(DispatchTime.now().uptimeNanoseconds) * 1e-9
}
